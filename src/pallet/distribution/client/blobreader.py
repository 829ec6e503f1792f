"""A blob body as a verified, resumable stream.

Digest and size are checked while reading: more bytes than the descriptor says, or a digest
mismatch at EOF, raises DataCorruption (OCI distribution spec: clients MUST verify). A connection
dropped mid-body is resumed with ``Range: bytes=N-`` (a bounded number of times); a registry that
ignores Range (200) has the first N bytes skipped.
"""
from __future__ import annotations

import http.client
import io
import logging
from collections.abc import Callable

from pallet.errors import DataCorruption, Unavailable
from pallet.oci.digest import Digest

from .transport import NET_ERRORS, Response

log = logging.getLogger("pallet.distribution.client")

MAX_RESUMES = 3
CHUNK = 1 << 20
STEP = 1 << 18  # 256 KiB


class BlobReader(io.RawIOBase):
    """``open_at(offset)`` returns a response whose body starts at ``offset`` (206) or at 0
    (200). ``progress(n)`` is called with each count of bytes read. ``verify=False`` skips the
    digest (the size is still enforced): only for a consumer that hashes the bytes itself."""

    def __init__(self, open_at: Callable[[int], Response], digest: Digest, size: int, what: str,
                 progress: Callable[[int], None] | None = None, verify: bool = True) -> None:
        super().__init__()
        self._verify = verify
        self._open_at = open_at
        self._digest = digest
        self._size = size
        self._what = what
        self._progress = progress
        self._hash = digest.hasher()
        self._off = 0
        self._resumes = 0
        self._resp: Response | None = None
        self._verified = False

    def readable(self) -> bool:
        return True

    def _open(self) -> Response:
        resp = self._open_at(self._off)
        if self._off and resp.status == 200:
            skip = self._off  # registry ignored Range: discard what we already have
            while skip:
                got = resp.raw.read(min(skip, CHUNK))
                if not got:
                    raise DataCorruption(f"{self._what}: truncated on retry")
                skip -= len(got)
        length = resp.raw.length
        if length is not None and resp.status == 200 and self._off == 0 and length != self._size:
            resp.close(reuse=False)
            raise DataCorruption(f"{self._what}: registry sent {length} bytes, the descriptor says {self._size}")
        return resp

    def read(self, n: int = -1) -> bytes:
        """Up to ``min(n, STEP)`` bytes (``b""`` at the verified end). Returns the response's
        own buffer: no intermediate bytearray or copy, which matters at 270 MB per layer."""
        if n is None or n < 0:
            return self.readall()
        if self._verified or n == 0:
            return b""
        while True:
            if self._resp is None:
                self._resp = self._open()
            try:
                # at most STEP bytes per call (a read blocks until its whole amount arrived):
                # progress and cancellation see the bytes as they come from a slow registry
                data = self._resp.raw.read(min(n, STEP))
            except (http.client.IncompleteRead, *NET_ERRORS) as e:
                self._drop()
                self._resume(e)
                continue
            if not data:
                if self._off < self._size:
                    self._drop()
                    self._resume(None)
                    continue
                self._resp.close()
                self._resp = None
                self._finish()
                return b""
            if self._off + len(data) > self._size:
                self._drop()
                raise DataCorruption(f"{self._what}: more data than the descriptor's {self._size} bytes")
            if self._verify:
                self._hash.update(data)
            self._off += len(data)
            if self._progress:
                self._progress(len(data))
            if self._off == self._size:
                self._finish()
            return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        n = len(data)
        memoryview(b)[:n] = data
        return n

    def _finish(self) -> None:
        if self._verified:
            return
        got = self._hash.hexdigest() if self._verify else self._digest.encoded
        if got != self._digest.encoded:
            self._drop()
            raise DataCorruption(f"{self._what}: digest mismatch (got {self._digest.algorithm}:{got})")
        self._verified = True
        if self._resp is not None:
            self._resp.drain()
            self._resp = None

    def _resume(self, err: BaseException | None) -> None:
        self._resumes += 1
        if self._resumes > MAX_RESUMES:
            why = "connection dropped" if err is not None else "truncated"
            raise Unavailable(f"{self._what}: {why} after {self._off} of {self._size} bytes "
                              f"({MAX_RESUMES} retries)")
        log.info("%s: resuming at byte %d", self._what, self._off)

    def _drop(self) -> None:
        if self._resp is not None:
            self._resp.close(reuse=False)
            self._resp = None

    def readall(self) -> bytes:
        out = bytearray()
        while True:
            data = self.read(CHUNK)
            if not data:
                return bytes(out)
            out += data

    def close(self) -> None:
        self._drop()
        super().close()
