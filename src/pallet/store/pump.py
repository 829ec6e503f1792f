"""Read ahead in a thread: the layer stream's own work (read, sha256 of the blob, write the blob,
decompress, sha256 of the tar) runs beside the extraction (tar parsing, file creation).

hashlib, os.write, isal and zstandard all release the GIL on large buffers, so on two cores the
producer costs the extractor little. ``read()`` returns whole chunks (any size), ``b""`` at EOF,
and re-raises the producer's exception. ``close()`` stops the producer and JOINS it, so the caller
may then close/abort whatever the producer writes to (no write can land after close returns).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable

DEPTH = 4


class Pump:
    def __init__(self, produce: Callable[[], bytes]) -> None:
        self._q: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=DEPTH)
        self._stop = False
        self._eof = False
        self._t = threading.Thread(target=self._run, args=(produce,), name="pallet-layer-pump", daemon=True)
        self._t.start()

    def _run(self, produce: Callable[[], bytes]) -> None:
        try:
            while not self._stop:
                b = produce()
                self._put(b)
                if not b:
                    return
        except BaseException as e:  # handed to the consumer, raised there
            self._put(e)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop:
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1) -> bytes:
        if self._eof:
            return b""
        item = self._q.get()
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        if not item:
            self._eof = True
        return item

    def close(self) -> None:
        self._stop = True
        while self._t.is_alive():
            try:
                self._q.get(timeout=0.1)
            except queue.Empty:
                pass
        self._t.join()
