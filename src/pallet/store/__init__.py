"""pallet.store: the local store (see STORE_API contract in store/store.py and paths.py)."""
from __future__ import annotations

from pallet.store.store import ImageRecord, Store

__all__ = ["ImageRecord", "Store"]
