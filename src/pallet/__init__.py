"""pallet: a container engine (runtime, layered image store, registry client and server)."""
from __future__ import annotations

__version__ = "0.1.0"
