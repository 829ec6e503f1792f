"""Multi-process locks: flock(2) on files under ROOT/locks (see paths.py).

* ``store.lock``: writers (put_blob, add_layer, write_image) hold it SHARED for the whole write;
  whatever removes content (delete_image, check --repair, cleaning tmp/) holds it EXCLUSIVE. So a
  layer or blob an in-flight write relies on is never removed under it, and tmp/ is only cleaned
  when no writer can own anything in it.
* ``layer-<hex>.lock``: EXCLUSIVE (``lock_file``) from the moment one process starts extracting that
  layer until it is published (possibly released by the publishing thread); a second process
  adding the same layer waits, then finds it present.

flock locks belong to the open file description, so they vanish when a process dies (SIGKILL
included): a crash never leaves a lock held.
"""
from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class FileLock:
    """A re-entrant (per object) shared/exclusive flock on one file. Thread-safe: pull adds
    layers from several threads through one Store (the depth count must not lose updates)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._depth = 0
        self._mode = 0
        self._mu = threading.Lock()

    def _open(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def acquire(self, exclusive: bool, blocking: bool = True) -> bool:
        with self._mu:
            return self._acquire(exclusive, blocking)

    def _acquire(self, exclusive: bool, blocking: bool) -> bool:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if self._depth and (self._mode == fcntl.LOCK_EX or mode == self._mode):
            self._depth += 1
            return True
        if self._depth:
            raise RuntimeError(f"cannot upgrade a held shared lock on {self.path} to exclusive")
        fd = self._open()
        try:
            fcntl.flock(fd, mode | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        self._mode = mode
        self._depth = 1
        return True

    def release(self) -> None:
        with self._mu:
            self._depth -= 1
            if self._depth == 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                self._mode = 0

    @property
    def held(self) -> bool:
        return self._depth > 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        self.acquire(False)
        try:
            yield
        finally:
            self.release()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        self.acquire(True)
        try:
            yield
        finally:
            self.release()

    def close(self) -> None:
        with self._mu:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                self._depth = 0


def lock_file(path: Path) -> int:
    """Take an exclusive flock on ``path`` and return the fd; ``os.close(fd)`` releases it (from
    any thread: flock belongs to the open file, not to a thread)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd
