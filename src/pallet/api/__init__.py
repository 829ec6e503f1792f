"""pallet.api (see ARCHITECTURE.md)."""
from __future__ import annotations
