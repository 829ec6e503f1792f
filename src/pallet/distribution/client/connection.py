"""HTTP plumbing under the transport: pooled keep-alive connections, a response that returns
its connection to the pool once read, and the translation of registry error bodies
(``{"errors":[{code,message}]}``, distribution spec "Error Codes") into pallet's error tree."""
from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

from pallet.errors import (
    DataCorruption,
    Forbidden,
    InvalidArgument,
    NotFound,
    NotImplementedFeature,
    PalletError,
    Unauthorized,
    Unavailable,
)

TIMEOUT = 60.0  # socket timeout per read
ERROR_BODY_CAP = 64 * 1024
NET_ERRORS = (ConnectionError, http.client.HTTPException, socket.timeout, TimeoutError, OSError)
BLOCK = 1 << 20


class Response:
    """A response whose connection returns to the pool once the body has been read or closed."""

    def __init__(self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection,
                 pool: Pool, key: tuple[str, str], url: str) -> None:
        self.raw = resp
        self.status = resp.status
        self.headers = resp.headers
        self.url = url
        self._conn: http.client.HTTPConnection | None = conn
        self._pool = pool
        self._key = key

    def header(self, name: str) -> str:
        return self.headers.get(name, "") or ""

    def read(self, cap: int) -> bytes:
        """The whole body, at most ``cap`` bytes (more raises InvalidArgument)."""
        length = self.raw.length
        if length is not None and length > cap:
            self.close(reuse=False)
            raise InvalidArgument(f"response from {self.url} is {length} bytes, over the {cap}-byte limit")
        data = self.raw.read(cap + 1)
        if len(data) > cap:
            self.close(reuse=False)
            raise InvalidArgument(f"response from {self.url} is over the {cap}-byte limit")
        if length is not None and len(data) < length:
            self.close(reuse=False)
            raise DataCorruption(f"response from {self.url} was truncated")
        self.close()
        return data

    def drain(self) -> None:
        try:
            if not self.raw.isclosed():
                self.raw.read(ERROR_BODY_CAP)
        except NET_ERRORS:
            self.close(reuse=False)
            return
        self.close()

    def close(self, reuse: bool = True) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if reuse and self.raw.isclosed() and not self.raw.will_close:
            self._pool.put(self._key, conn)
        else:
            self.raw.close()
            conn.close()


class Pool:
    """Idle keep-alive connections per (scheme, host)."""

    def __init__(self, max_idle: int = 8) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._max = max_idle

    def get(self, key: tuple[str, str], ctx_factory: Callable[[], Any]) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            lst = self._idle.get(key)
            if lst:
                return lst.pop(), True
        scheme, host = key
        if scheme == "https":
            return http.client.HTTPSConnection(host, timeout=TIMEOUT, context=ctx_factory(),
                                               blocksize=BLOCK), False
        return http.client.HTTPConnection(host, timeout=TIMEOUT, blocksize=BLOCK), False

    def put(self, key: tuple[str, str], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            lst = self._idle.setdefault(key, [])
            if len(lst) < self._max:
                lst.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            for lst in self._idle.values():
                for c in lst:
                    c.close()
            self._idle.clear()


def registry_error(status: int, body: bytes, what: str) -> PalletError:
    """Translate a registry error response into pallet's error tree."""
    detail = ""
    codes: list[str] = []
    try:
        obj = json.loads(body or b"{}")
        errs = obj.get("errors") if isinstance(obj, dict) else None
        if isinstance(errs, list):
            parts = []
            for e in errs[:3]:
                if isinstance(e, dict):
                    codes.append(str(e.get("code", "")))
                    parts.append(f"{str(e.get('code', '')).lower()}: {e.get('message', '')}".strip(": "))
            detail = "; ".join(parts)
    except ValueError:
        pass
    if not detail:
        detail = http.client.responses.get(status, f"HTTP {status}").lower()
    msg = f"{what}: {detail}"
    if status == 401:
        return Unauthorized(msg)
    if status == 403:
        return Forbidden(msg)
    if status == 404 or any(c in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN") for c in codes):
        return NotFound(msg)
    if status == 405:
        return NotImplementedFeature(msg)
    if status in (400, 409, 413, 415, 416):
        return InvalidArgument(msg)
    return Unavailable(msg)


def _reason(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(e, http.client.RemoteDisconnected):
        return "connection closed by the registry"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__
