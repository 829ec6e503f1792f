"""pallet.runtime.linux (see ARCHITECTURE.md)."""
from __future__ import annotations
