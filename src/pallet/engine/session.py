"""The engine as the CLI (and the API server) sees it: one store, one connection, the verbs.

``with session.open(g) as s:`` opens the store (cheap) and the engine's tables. Lookups
reconcile the rows they return (a waiter that died is noticed by the next command).
"""
from __future__ import annotations

import os

from pallet.engine import containers, db, lifecycle, rt, state
from pallet.engine.containers import Container, Dirs
from pallet.errors import PalletError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    import sqlite3
    from typing import Any


class Session:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.conn: sqlite3.Connection = db.connection(store)
        self.root = str(store.paths.root)
        self.runroot = str(store.paths.runroot)

    # -- lookup --------------------------------------------------------------------------------
    def get(self, ref: str) -> Container:
        c = containers.get(self.conn, ref)
        if state.reconcile(self.conn, c):
            c = containers.reload(self.conn, c.id) or c
        return c

    def list(self) -> list[Container]:
        out = []
        for c in containers.list_all(self.conn):
            if state.reconcile(self.conn, c):
                cur = containers.reload(self.conn, c.id)
                if cur is None:
                    continue
                c = cur
            out.append(c)
        return out

    def dirs(self, c: Container) -> Dirs:
        return Dirs(self.root, self.runroot, c.id)

    # -- create/start ----------------------------------------------------------------------------
    def create(self, opts: Any) -> Container:
        from pallet.engine.create import create

        return create(self.store, self.conn, opts)

    def start_detached(self, c: Container, *, restart: bool = False) -> None:
        from pallet.engine import monitor

        try:
            monitor.start(self.runroot, self.root, c.id, restart=restart)
        except PalletError:
            self._failed_start(c)
            raise

    def _failed_start(self, c: Container) -> None:
        cur = containers.reload(self.conn, c.id)
        if cur is not None and cur.host.get("AutoRemove") and cur.status in ("created", "exited"):
            lifecycle.remove(self.store, self.conn, cur, force=True)

    def run_attached(self, c: Container, *, stdin: bool) -> int:
        """Foreground ``run``: this process is the waiter (pump output to the terminal and the log)."""
        from pallet.engine.logs import LogWriter
        from pallet.engine.pump import Forwarder, pump, winch_to
        from pallet.engine.stdio import RawTerminal, Stdio

        tty = bool(c.cfg.get("Tty"))
        io = Stdio.make(tty=tty, stdin="inherit" if stdin else "null")
        try:
            info = rt.start(self.store, c, io, self.conn)
        except BaseException as e:
            io.close()
            if isinstance(e, PalletError):
                state.set_failed(self.conn, c, e.exit_code, str(e))
            self._failed_start(c)
            raise
        io.close_child_ends()
        pid = info["pid"]
        info["waiter_start"] = state.self_start_time()
        state.set_running(self.conn, c, pid, info, os.getpid())
        log = LogWriter(self.dirs(c).log)
        try:
            with Forwarder(lambda s: os.kill(pid, s), winch=winch_to(io.master) if tty else None), \
                    RawTerminal(0) if (tty and stdin) else _null():
                code = pump(pid, io, log=log, stdin_fd=0 if (tty and stdin) else None)
        finally:
            log.close()
            io.close()
        cur = containers.reload(self.conn, c.id)
        if cur is not None and cur.host.get("AutoRemove") and cur.status == "running":
            lifecycle.discard(self.store, self.conn, cur)  # --rm: nothing to record, nobody to tell
        elif cur is not None:
            lifecycle.after_exit(self.store, self.conn, cur, code, on_restart=self._restart_later)
        return code

    def _restart_later(self, cid: str) -> None:
        from pallet.engine import monitor

        try:
            monitor.start(self.runroot, self.root, cid, restart=True)
        except PalletError:
            pass

    def attach(self, c: Container, *, stdin: bool, start: bool = False) -> int:
        from pallet.engine import attach

        return attach.attach(self, c, stdin=stdin, start=start)

    # -- the rest ----------------------------------------------------------------------------------
    def stop(self, c: Container, timeout: int | None = None, sig: str | None = None) -> Container:
        return lifecycle.stop(self.store, self.conn, c, timeout, sig)

    def kill(self, c: Container, sig: str = "SIGKILL") -> None:
        lifecycle.kill(self.store, self.conn, c, sig)

    def remove(self, c: Container, *, force: bool = False, volumes: bool = False) -> None:
        lifecycle.remove(self.store, self.conn, c, force=force, volumes=volumes)

    def pause(self, c: Container, on: bool) -> None:
        lifecycle.pause(self.store, self.conn, c, on)

    def restart(self, c: Container, timeout: int | None = None) -> None:
        c = self.stop(c, timeout)
        self.start_detached(containers.reload(self.conn, c.id) or c)

    def wait(self, c: Container) -> int:
        import time

        while True:
            c = containers.reload(self.conn, c.id) or c
            if c.status in ("running", "paused"):
                lifecycle.wait_pid_gone(c, 3600)
                c = lifecycle.wait_recorded(self.conn, c)
                if c.status not in ("running", "paused", "restarting"):
                    return c.exit_code
            elif c.status == "restarting":
                time.sleep(0.05)
            else:
                return c.exit_code


class _null:  # noqa: N801 - a do-nothing context manager (contextlib imports collections, functools: ~4 ms)
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class open:  # noqa: N801, A001 - the module's verb: ``with session.open(g) as s:`` (a class, not contextlib)
    """The store (cheap) and a Session on it; the store is closed on the way out."""

    def __init__(self, g: Any) -> None:
        self.g = g
        self.st: Any = None

    def __enter__(self) -> Session:
        from pallet.engine.lightstore import LightStore

        self.st = LightStore(self.g.root, self.g.runroot)
        try:
            return Session(self.st)
        except BaseException:
            self.st.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.st.close()
