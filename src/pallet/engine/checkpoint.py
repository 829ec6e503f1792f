"""The monitor's WAL checkpoints, off its loop (engine.monitor_loop)."""
from __future__ import annotations

import os
import time
from typing import Any


class Checkpointer:
    """Checkpoints the database's WAL off the loop: a short-lived thread with its own connection
    (sqlite3 releases the GIL while it syncs), started when the WAL has grown past ``PAGES``
    pages (the CLI's connections use 64: see engine.lightstore) and the loop was idle, or past
    16 times that whatever the load; once more at ``stop``. PASSIVE: it never waits for, nor
    blocks, a writer. Not a permanent thread: a raw clone needs a single-threaded process, else
    the runtime goes through a helper process (runtime.linux.syscalls.clone_via_helper)."""

    PAGES = 64

    def __init__(self, dbpath: str) -> None:
        self.dbpath = dbpath
        self.thread: Any = None
        self.next_check = 0.0

    def maybe(self, idle: bool) -> None:
        now = time.monotonic()
        if now < self.next_check or self.busy():
            return
        self.next_check = now + 0.5
        try:
            size = os.stat(self.dbpath + "-wal").st_size
        except OSError:
            return
        if size > self.PAGES * 4096 * (1 if idle else 16):
            import threading

            self.thread = threading.Thread(target=self.once, name="checkpoint", daemon=True)
            self.thread.start()

    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def once(self) -> None:
        import _sqlite3

        try:
            conn = _sqlite3.connect(self.dbpath, timeout=5, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                conn.close()
        except Exception:  # noqa: BLE001 - busy or gone: the next round, or a CLI, does it
            pass

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.once()
