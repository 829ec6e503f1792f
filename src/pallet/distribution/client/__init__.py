"""pallet.distribution.client (see ARCHITECTURE.md)."""
from __future__ import annotations
