"""Layer (de)compression streams: gzip through isal (igzip, ~2x zlib; level-1 compression ~5x
stdlib), zstd through zstandard."""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

from pallet.errors import DataCorruption, InvalidArgument, PalletError
from pallet.oci.digest import Digest

CHUNK = 1 << 20


def decompressor(stream: BinaryIO, compression: str) -> BinaryIO:
    """Wrap ``stream`` (the caller keeps it open until done) in a decompressing reader."""
    if compression == "":
        return stream
    if compression == "gzip":
        from isal import igzip

        return igzip.IGzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(stream, read_size=CHUNK)  # type: ignore[return-value]
    raise InvalidArgument(f"unsupported layer compression {compression!r}")


class _Closing:
    """A decompressed stream that also closes the underlying compressed one."""

    def __init__(self, inner: BinaryIO, outer: BinaryIO, what: str) -> None:
        self._inner = inner
        self._outer = outer
        self._what = what

    def read(self, n: int = -1) -> bytes:
        try:
            return self._outer.read(n)
        except PalletError:
            raise
        except Exception as e:  # zlib.error, IsalError, ZstdError, EOFError share no base
            # a corrupt stream fails in the decompressor before the digest check at EOF
            raise DataCorruption(f"{self._what} is corrupt: {e}") from None

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        try:
            self._outer.close()
        finally:
            self._inner.close()

    def __enter__(self) -> _Closing:
        return self

    def __exit__(self, *a: object) -> None:
        self.close()


def open_uncompressed(stream: BinaryIO, compression: str, what: str = "layer") -> BinaryIO:
    if compression == "":
        return stream
    return _Closing(stream, decompressor(stream, compression), what)  # type: ignore[return-value]


class GzipStream:
    """Compress ``src`` with isal gzip in a producer thread; iterate to get the compressed chunks
    (for a streamed PATCH upload, so compression overlaps the upload and nothing touches disk).
    After the iteration ends, ``digest`` and ``size`` describe the compressed bytes. ``progress``
    is called with counts of uncompressed bytes consumed. Closing stops the producer."""

    def __init__(self, src: BinaryIO, level: int = 1, progress: Callable[[int], None] | None = None,
                 depth: int = 8) -> None:
        import queue
        import threading

        self._src = src
        self._level = level
        self._progress = progress
        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._hash = hashlib.sha256()
        self.size = 0
        self.digest: Digest | None = None
        self._thread = threading.Thread(target=self._run, name="push-gzip", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException | None) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        from isal import isal_zlib

        try:
            comp = isal_zlib.compressobj(self._level, isal_zlib.DEFLATED, 31)
            while not self._stop.is_set():
                buf = self._src.read(CHUNK)
                if not buf:
                    break
                if self._progress:
                    self._progress(len(buf))
                data = comp.compress(buf)
                if data and not self._put(data):
                    return
            self._put(comp.flush())
            self._put(None)
        except BaseException as e:  # handed to the consumer thread
            self._put(e)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._q.get()
            if item is None:
                self.digest = Digest("sha256", self._hash.hexdigest())
                return
            if isinstance(item, BaseException):
                raise item
            self._hash.update(item)
            self.size += len(item)
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
