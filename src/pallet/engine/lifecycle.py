"""Stop, kill, remove, pause, wait, and what happens after an exit (restart policy, ``--rm``).

Callers: the CLI verbs (through ``session``), the monitor and foreground ``run`` (``after_exit``).
Waiting for a process that is not our child uses a pidfd (``pidfd_open`` + poll), bounded.
"""
from __future__ import annotations

import _signal as signal  # not `signal`: its enums import enum (~3 ms); same functions, int handlers
import os
import select
import time

from pallet.engine import containers, rt, state, units
from pallet.engine.containers import Container, Dirs
from pallet.errors import Conflict

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    import sqlite3
    from collections.abc import Callable
    from typing import Any

DEFAULT_STOP_TIMEOUT = 10


def wait_pid_gone(c: Container, timeout: float) -> bool:
    """True when the container's init is gone (or was never there) within ``timeout`` seconds."""
    if not state.alive(c.pid, int(c.rt.get("start_time", 0) or 0)):
        return True
    try:
        fd = os.pidfd_open(c.pid)
    except OSError:
        return True
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return not state.alive(c.pid, int(c.rt.get("start_time", 0) or 0))
            r, _, _ = select.select([fd], [], [], left)
            if r or not state.alive(c.pid, int(c.rt.get("start_time", 0) or 0)):
                return True
    finally:
        os.close(fd)


def wait_recorded(conn: sqlite3.Connection, c: Container, timeout: float = 10) -> Container:
    """After the init died: wait (bounded) until its waiter recorded the exit; reconcile if the waiter is gone."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        cur = containers.reload(conn, c.id)
        if cur is None or cur.status not in ("running", "paused"):
            return cur or c
        if state.reconcile(conn, cur) or time.monotonic() > deadline:
            return containers.reload(conn, c.id) or cur
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def stop(store: Any, conn: sqlite3.Connection, c: Container, timeout: int | None = None,
         sig: str | None = None) -> Container:
    state.reconcile(conn, c)
    if c.status not in ("running", "paused", "restarting"):
        return c
    state.mark_stopped_by_user(conn, c)
    if c.status == "restarting":  # the monitor sees the mark and leaves it exited (bounded wait)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            cur = containers.reload(conn, c.id)
            if cur is None or cur.status != "restarting":
                break
            time.sleep(0.02)
        cur = containers.reload(conn, c.id)
        if cur is None or cur.status != "running":
            return cur or c
        c = cur
    if timeout is None:
        timeout = c.cfg.get("StopTimeout", DEFAULT_STOP_TIMEOUT)
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT
    signum = units.parse_signal("--signal", sig or c.cfg.get("StopSignal") or "SIGTERM")
    rt.kill(c, signum)
    if c.status == "paused":
        rt.resume(store, c)
    if timeout < 0 or not wait_pid_gone(c, float(timeout)):
        if timeout >= 0:
            rt.kill(c, signal.SIGKILL)
        wait_pid_gone(c, 30)
    return wait_recorded(conn, c)


def kill(store: Any, conn: sqlite3.Connection, c: Container, sig: str = "SIGKILL") -> None:
    state.reconcile(conn, c)
    signum = units.parse_signal("--signal", sig)
    if c.status not in ("running", "paused"):
        raise Conflict(f"Cannot kill container: {c.id}: Container {c.id} is not running")
    if signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        state.mark_stopped_by_user(conn, c)
    rt.kill(c, signum)
    if c.status == "paused" and signum == signal.SIGKILL:
        rt.resume(store, c)
    if signum == signal.SIGKILL:
        wait_pid_gone(c, 10)
        wait_recorded(conn, c, 5)


def pause(store: Any, conn: sqlite3.Connection, c: Container, on: bool) -> None:
    state.reconcile(conn, c)
    if on and c.status != "running":
        raise Conflict(f"Container {c.id} is not running" if c.status != "paused"
                       else f"Container {c.id} is already paused")
    if not on and c.status != "paused":
        raise Conflict(f"Container {c.id} is not paused")
    (rt.pause if on else rt.resume)(store, c)
    state.set_paused(conn, c, on)


def remove(store: Any, conn: sqlite3.Connection, c: Container, *, force: bool = False,
           volumes: bool = False) -> None:
    state.reconcile(conn, c)
    if c.status in ("running", "paused", "restarting"):
        if not force:
            what = "paused" if c.status == "paused" else "running"
            raise Conflict(f"You cannot remove a {what} container {c.id}. Stop the container before "
                           "attempting removal or force remove")
        state.mark_stopped_by_user(conn, c)
        try:
            state.set_removing(conn, c)
        except Conflict:
            pass
        if c.pid > 0:
            rt.kill(c, signal.SIGKILL)
            if c.rt:
                try:
                    rt.resume(store, c)
                except Exception:  # noqa: BLE001 - not frozen
                    pass
            wait_pid_gone(c, 10)
    else:
        try:
            state.set_removing(conn, c)
        except Conflict:
            pass
    discard(store, conn, c, volumes=volumes)


def discard(store: Any, conn: sqlite3.Connection, c: Container, *, volumes: bool = False,
            later: list[str] | None = None) -> None:
    """The end of a container whose process is gone: runtime state, network, dirs, row, and its
    anonymous volumes with ``volumes`` or ``--rm``. (A foreground ``run --rm`` comes here directly.)
    ``later``: its directory is moved out of the layout (``Dirs.move_out``) and its new path
    added there, for the caller to remove (``containers.remove_tree``) after answering."""
    rt.cleanup(c, store)
    dirs = Dirs(store.paths.root, store.paths.runroot, c.id)
    if later is None:
        dirs.remove()
    else:
        later += dirs.move_out(str(store.paths.root / "tmp"))
    containers.delete_row(conn, c.id)
    anon = [m for m in c.mounts if m.get("Type") == "volume" and m.get("Anonymous")]
    if anon and (volumes or c.host.get("AutoRemove")):
        from pallet.engine import volumes as vol

        for m in anon:
            try:
                vol.remove(conn, store.paths.root, m["Name"])
            except Exception:  # noqa: BLE001 - shared with another container: kept
                pass


def should_restart(c: Container, code: int) -> bool:
    if c.stopped_by_user or c.status == "removing":
        return False
    pol = c.host.get("RestartPolicy") or {}
    name = pol.get("Name", "no")
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure" and code != 0:
        n = int(pol.get("MaximumRetryCount") or 0)
        return n == 0 or c.restart_count < n
    return False


def after_exit(store: Any, conn: sqlite3.Connection, c: Container, code: int,
               on_restart: Callable[[str], None]) -> None:
    """Record an exit seen by the waiter: OOM, runtime cleanup, restart policy or ``--rm``."""
    oom = rt.oom_killed(store, c)
    rt.cleanup(c, store)
    if should_restart(c, code):
        try:
            state.set_exited(conn, c, code, oom=oom, restarting=True)
        except Conflict:
            return
        on_restart(c.id)
        return
    try:
        state.set_exited(conn, c, code, oom=oom)
    except Conflict:
        pass
    if c.host.get("AutoRemove"):
        cur = containers.reload(conn, c.id)
        if cur is not None:
            remove(store, conn, cur, force=True)
