"""pallet.distribution (see ARCHITECTURE.md)."""
from __future__ import annotations
