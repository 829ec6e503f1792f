"""pallet.distribution.server (see ARCHITECTURE.md)."""
from __future__ import annotations
