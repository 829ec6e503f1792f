"""A background thread that finishes small regular files during layer extraction.

Why: extraction is Python parsing (user time, holds the GIL) plus write/utime/close (kernel time,
GIL released). Handing the second half to one thread overlaps the two on a second core, so
pallet's extractor runs at about GNU tar's pace instead of the sum of both.

Contract: the applier creates each file itself (so names, replacements and hard links keep tar
order) and submits (fd, data, owner, mode, mtime_ns, xattrs, name); the writer writes the data,
sets owner/mode/xattrs/mtime and ALWAYS closes the fd. Data is a memoryview of the reader's
buffer (the reader never mutates a buffer it has handed out). At most ``MAX_BATCHES`` batches are
in flight, so memory stays bounded. ``finish()`` waits for everything and raises the first error;
``abort()`` waits and swallows errors (the caller is already failing and removes the tree).
"""
from __future__ import annotations

import os
import threading
from queue import SimpleQueue
from typing import Any

from pallet.errors import InvalidArgument, OSFailure, PalletError

BATCH = 64
MAX_BATCHES = 8
MAX_FILE = 256 << 10   # larger files are written inline (their write dominates anyway)

Item = tuple[int, Any, "tuple[int, int] | None", "int | None", int, "dict[str, bytes] | None", str]


class FileWriter:
    def __init__(self) -> None:
        self._q: SimpleQueue[list[Item] | None] = SimpleQueue()
        self._slots = threading.BoundedSemaphore(MAX_BATCHES)
        self._errors: list[BaseException] = []
        self.batch: list[Item] = []
        self._t = threading.Thread(target=self._run, name="pallet-extract-writer", daemon=True)
        self._t.start()

    def submit(self) -> None:
        if self._errors:
            raise self._errors[0]
        self._slots.acquire()
        self._q.put(self.batch)
        self.batch = []

    def _run(self) -> None:
        from pallet.image.apply import _setxattrs

        write, close, utime, fchown, fchmod = os.write, os.close, os.utime, os.fchown, os.fchmod
        while True:
            batch = self._q.get()
            if batch is None:
                return
            for fd, data, owner, mode, mtime_ns, xattrs, name in batch:
                try:
                    if self._errors:
                        continue
                    if data is not None:
                        n = write(fd, data)
                        while n < len(data):
                            n += write(fd, data[n:])
                    if owner is not None:
                        fchown(fd, owner[0], owner[1])
                    if mode is not None:
                        fchmod(fd, mode)
                    if xattrs:
                        _setxattrs(fd, xattrs, name)
                    utime(fd, ns=(mtime_ns, mtime_ns))
                except OSError as ex:
                    self._errors.append(OSFailure.from_oserror(ex, "extract", name))
                except PalletError as ex:
                    self._errors.append(ex)
                except ValueError as ex:  # os.* refuse embedded NULs (xattr names)
                    self._errors.append(InvalidArgument(f"tar entry {name!r}: {ex}"))
                except Exception as ex:  # never die silently: the applier must see every failure
                    self._errors.append(PalletError(f"extract {name}: {type(ex).__name__}: {ex}"))
                finally:
                    close(fd)
            self._slots.release()

    def _stop(self) -> None:
        if self.batch:
            self._slots.acquire()
            self._q.put(self.batch)
            self.batch = []
        self._q.put(None)
        self._t.join()

    def finish(self) -> None:
        self._stop()
        if self._errors:
            raise self._errors[0]

    def abort(self) -> None:
        self._stop()
