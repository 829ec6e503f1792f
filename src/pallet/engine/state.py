"""The one place container state transitions happen (docker's state machine).

    created -> running <-> paused
    running|paused -> exited | restarting        (the waiter records the exit)
    restarting -> running | exited
    exited|created -> running                     (start, restart)
    any -> removing -> (row deleted)

Every write checks the current status in the same UPDATE (``WHERE status IN (...)``), so two
processes racing on one container (the monitor recording an exit, a CLI stopping it) cannot
both win. ``reconcile`` repairs rows whose waiter died (monitor killed, CLI SIGKILLed).
"""
from __future__ import annotations

import os

from pallet.engine.containers import Container, now
from pallet.errors import Conflict
from pallet.runtime import jsonlite as json  # not `json`: it imports re and enum (~3 ms)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    import sqlite3

ALLOWED: dict[str, tuple[str, ...]] = {
    "running": ("created", "exited", "restarting", "running"),
    "paused": ("running",),
    "unpaused": ("paused",),
    "exited": ("running", "paused", "restarting", "created"),
    "restarting": ("running", "exited"),
    "removing": ("created", "exited", "dead", "running", "paused", "restarting"),
    "dead": ("created", "exited", "running", "paused", "restarting", "removing"),
}


def _update(conn: sqlite3.Connection, c: Container, to: str, sets: dict[str, object], extra: str = "") -> None:
    allowed = ALLOWED[to]
    status = "running" if to == "unpaused" else to
    cols = ", ".join(f"{k}=?" for k in ("status", *sets))
    q = f"UPDATE containers SET {cols} WHERE id=? AND status IN ({','.join('?' * len(allowed))}){extra}"
    with conn:
        cur = conn.execute(q, (status, *sets.values(), c.id, *allowed))
    if cur.rowcount != 1:
        row = conn.execute("SELECT status FROM containers WHERE id=?", (c.id,)).fetchone()
        cur_status = row[0] if row else "removed"
        raise Conflict(f"container {c.id[:12]} is {cur_status}, cannot become {status}")
    c.status = status
    for k, v in sets.items():
        setattr(c, k, json.loads(v) if k == "rt" and isinstance(v, str) else v)


def set_running(conn: sqlite3.Connection, c: Container, pid: int, rt: dict[str, object], waiter: int,
                *, restart: bool = False) -> None:
    sets: dict[str, object] = {"pid": pid, "rt": json.dumps(rt), "waiter": waiter, "started_at": now(),
                               "exit_code": 0, "oom_killed": 0, "error": "", "stopped_by_user": 0,
                               "finished_at": "0001-01-01T00:00:00Z"}
    if restart:  # an automatic restart loses against a stop/kill/rm that marked the container
        sets["restart_count"] = c.restart_count + 1
        _update(conn, c, "running", sets, " AND stopped_by_user=0")
        return
    _update(conn, c, "running", sets)


def set_exited(conn: sqlite3.Connection, c: Container, code: int, *, oom: bool = False, error: str = "",
               restarting: bool = False) -> None:
    _update(conn, c, "restarting" if restarting else "exited",
            {"pid": 0, "exit_code": code, "oom_killed": int(oom), "finished_at": now(), "error": error})


def set_failed(conn: sqlite3.Connection, c: Container, code: int, error: str) -> None:
    """A start that failed (command not found, runtime error): docker keeps it 'created' with an error
    when it never ran; we record the exit code as docker's inspect does."""
    with conn:
        conn.execute("UPDATE containers SET exit_code=?, error=?, pid=0 WHERE id=?", (code, error, c.id))
    c.exit_code, c.error = code, error


def set_paused(conn: sqlite3.Connection, c: Container, paused: bool) -> None:
    _update(conn, c, "paused" if paused else "unpaused", {})


def mark_stopped_by_user(conn: sqlite3.Connection, c: Container) -> None:
    with conn:
        conn.execute("UPDATE containers SET stopped_by_user=1 WHERE id=?", (c.id,))
    c.stopped_by_user = True


def set_removing(conn: sqlite3.Connection, c: Container) -> None:
    _update(conn, c, "removing", {})


# --- liveness and reconciliation -------------------------------------------------------------

def proc_start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (clock ticks since boot), 0 when the process is gone: guards pid reuse."""
    if pid <= 0:
        return 0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    fields = data[data.rfind(b")") + 2:].split()
    if fields and fields[0] == b"Z":
        return 0  # a zombie has finished; its waiter will reap it
    return int(fields[19]) if len(fields) > 19 else 0


def alive(pid: int, start: int | None) -> bool:
    st = proc_start_time(pid)
    return st != 0 and (not start or st == start)


def reconcile(conn: sqlite3.Connection, c: Container) -> bool:
    """If the process waiting for ``c`` is gone and so is the container, record an unknown exit
    (255, like docker after losing its shim) and free runtime resources. True when it changed ``c``."""
    if c.status not in ("running", "paused", "restarting"):
        return False
    waiter_ok = alive(c.waiter, int(c.rt.get("waiter_start", 0) or 0))
    if waiter_ok:
        return False
    if c.status != "restarting" and alive(c.pid, int(c.rt.get("start_time", 0) or 0)):
        return False  # orphaned but running: stop/kill still reach it; the next command reconciles
    from pallet.engine import rt as rtmod

    try:
        rtmod.cleanup(c)
    except Exception:  # noqa: BLE001 - best effort: the row must still leave 'running'
        pass
    try:
        set_exited(conn, c, 255, error="the process waiting for this container is gone")
    except Conflict:
        return False
    return True


def self_start_time() -> int:
    return proc_start_time(os.getpid())
