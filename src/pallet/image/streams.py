"""Byte streams for layers: a window on a seekable file (a tar member read in place), a reader
that verifies digest and size at EOF, and decompression by name.

Contract: every class here is a read-only, forward-only ``BinaryIO``-like object (``read``,
``readinto``, ``close``, context manager). Nothing reads a whole layer into memory.
"""
from __future__ import annotations

import hashlib
import io
import os
from typing import Any, BinaryIO, cast

from pallet.errors import DataCorruption, InvalidArgument
from pallet.oci.digest import Digest

CHUNK = 1 << 20


class Section(io.RawIOBase):
    """``size`` bytes of ``path`` starting at ``offset``, read with ``os.pread`` (so several
    Sections on the same file never disturb one another). Truncation raises DataCorruption."""

    def __init__(self, path: str | os.PathLike[str], offset: int, size: int, what: str = "") -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._start = offset
        self._pos = 0
        self._size = size
        self._what = what or str(path)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, min(self._size, base + pos))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def fileno(self) -> int:
        return self._fd

    @property
    def offset(self) -> int:
        """Absolute offset in the file of the next byte (for copy_file_range/sendfile users)."""
        return self._start + self._pos

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._size - self._pos)
        if n <= 0:
            return 0
        data = os.pread(self._fd, n, self._start + self._pos)
        if not data:
            raise DataCorruption(f"{self._what}: truncated ({self._pos} of {self._size} bytes)")
        got = len(data)
        b[:got] = data
        self._pos += got
        return got

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self._pos
        n = min(n, self._size - self._pos)
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._start + self._pos)
        if not data:
            raise DataCorruption(f"{self._what}: truncated ({self._pos} of {self._size} bytes)")
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()


class Verifying(io.RawIOBase):
    """Hashes what passes through; at EOF checks ``expected`` digest (and ``size`` when given)
    and raises DataCorruption naming ``what`` on mismatch."""

    def __init__(self, inner: BinaryIO, expected: Digest | None, size: int | None = None,
                 what: str = "blob") -> None:
        super().__init__()
        self._inner = inner
        self._expected = expected
        self._size = size
        self._what = what
        self._h = hashlib.new(expected.algorithm if expected else "sha256")
        self._n = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def _feed(self, data: bytes | memoryview) -> None:
        if data:
            self._h.update(data)
            self._n += len(data)
            if self._size is not None and self._n > self._size:
                raise DataCorruption(f"{self._what}: more than the expected {self._size} bytes")
        elif not self._done:
            self._done = True
            self.check()

    def check(self) -> None:
        if self._size is not None and self._n != self._size:
            raise DataCorruption(f"{self._what}: size {self._n}, expected {self._size}")
        if self._expected is not None and self._h.hexdigest() != self._expected.encoded:
            raise DataCorruption(
                f"{self._what}: digest mismatch (got {self._expected.algorithm}:{self._h.hexdigest()}, "
                f"expected {self._expected})")

    @property
    def digest(self) -> Digest:
        """The digest of what was read so far (complete once EOF was reached)."""
        return Digest(self._h.name, self._h.hexdigest())

    @property
    def count(self) -> int:
        return self._n

    def readinto(self, b: Any) -> int:
        mv = memoryview(b)
        if hasattr(self._inner, "readinto"):
            n = self._inner.readinto(mv)
        else:
            data = self._inner.read(len(mv))
            n = len(data)
            mv[:n] = data
        self._feed(mv[:n] if n else b"")
        return n or 0

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n if n is not None and n >= 0 else -1)
        if n is None or n < 0:
            self._feed(data)
            if data:
                self._feed(b"")
        else:
            self._feed(data)
            if not data and n == 0:
                return data
        return data

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                super().close()


def decompress(stream: BinaryIO, compression: str) -> BinaryIO:
    """A reader of the decompressed bytes of ``stream`` ("gzip", "zstd" or "" for none).
    Closing the result closes ``stream``."""
    if not compression:
        return stream
    if compression == "gzip":
        from isal import igzip

        return cast(BinaryIO, _Closing(igzip.IGzipFile(fileobj=stream, mode="rb"), stream, "gzip"))
    if compression == "zstd":
        import zstandard

        r = zstandard.ZstdDecompressor().stream_reader(stream, read_size=CHUNK, closefd=True)
        return cast(BinaryIO, _Closing(r, stream, "zstd"))
    raise InvalidArgument(f"unsupported compression {compression!r}")


class _Closing(io.RawIOBase):
    """Wraps a decompressor: closes the underlying stream too, and turns decoder errors into
    DataCorruption (a corrupt layer is bad input, not a crash)."""

    def __init__(self, dec: Any, raw: BinaryIO, kind: str) -> None:
        super().__init__()
        self._dec = dec
        self._raw = raw
        self._kind = kind

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            data = self._dec.read(len(b))
        except (OSError, EOFError, ValueError) as e:
            if isinstance(e, DataCorruption):
                raise
            raise DataCorruption(f"corrupt {self._kind} stream: {e}") from None
        except Exception as e:  # zstandard.ZstdError is not an OSError
            if type(e).__name__ == "ZstdError":
                raise DataCorruption(f"corrupt zstd stream: {e}") from None
            raise
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                self._dec.close()
            finally:
                try:
                    self._raw.close()
                finally:
                    super().close()


def sniff(stream: BinaryIO) -> str:
    """Compression of a seekable stream by magic bytes; leaves the position unchanged."""
    from pallet.oci.mediatypes import sniff_compression

    pos = stream.tell()
    head = stream.read(4)
    stream.seek(pos)
    return sniff_compression(head)


def hash_stream(stream: BinaryIO, algorithm: str = "sha256") -> tuple[Digest, int]:
    """Digest and length of everything left in ``stream``."""
    h = hashlib.new(algorithm)
    n = 0
    while True:
        data = stream.read(CHUNK)
        if not data:
            break
        h.update(data)
        n += len(data)
    return Digest(algorithm, h.hexdigest()), n
