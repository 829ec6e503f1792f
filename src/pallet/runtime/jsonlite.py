"""JSON for the runtime's hot path without importing :mod:`json`.

``import json`` pulls in ``re`` and ``enum`` (~15 ms on this machine, as much as the rest of a
container start). The C accelerator ``_json`` does the real work in both directions; this
module only gives it the context objects ``json`` would.
"""
from __future__ import annotations

import _json

from pallet.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing imports re, collections, functools: not on the run path
    from typing import Any

_WS = " \t\n\r"


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict = {}


_scan = _json.make_scanner(_Ctx())  # type: ignore[arg-type]


def _default(o: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


_enc = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None, ": ", ", ", True, False, True)


def loads(s: str | bytes, what: str = "JSON") -> Any:
    """Parse one JSON document; InvalidArgument names ``what`` on malformed input."""
    if isinstance(s, bytes):
        s = s.decode("utf-8")
    i = len(s) - len(s.lstrip(_WS))
    try:
        obj, end = _scan(s, i)
    except (StopIteration, ValueError, SystemError):
        # the accelerator builds its error from json.decoder, which we did not import (it then
        # fails with SystemError): let the real parser say what is wrong (error path only)
        import json

        try:
            json.loads(s)
        except ValueError as e:
            raise InvalidArgument(f"{what}: invalid JSON: {e}") from None
        raise InvalidArgument(f"{what}: invalid JSON") from None
    if s[end:].strip(_WS):
        raise InvalidArgument(f"{what}: extra data at offset {end}")
    return obj


def dumps(obj: Any) -> str:
    """Compact-ish, key-sorted, ASCII-only JSON (stable, so it can be hashed)."""
    return "".join(_enc(obj, 0))


def load_file(path: str, what: str | None = None) -> Any:
    with open(path, "rb") as f:
        return loads(f.read(), what or path)
