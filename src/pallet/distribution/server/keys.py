"""Typed per-request storage keys (aiohttp warns on string keys)."""
from __future__ import annotations

from aiohttp import web

USER = web.RequestKey("pallet_registry_user", str)
ERROR_CODE = web.RequestKey("pallet_registry_error_code", str)
BYTES_IN = web.RequestKey("pallet_registry_bytes_in", int)
BYTES_SENT = web.RequestKey("pallet_registry_bytes_sent", int)  # body bytes sent past aiohttp's writer (sendfile)
