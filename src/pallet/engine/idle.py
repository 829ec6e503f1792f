"""The monitor's idle mode: its Python steps aside while nothing happens (engine.monitor_loop).

A Python monitor is ~10 MB PSS: a lone detached container would cost that. After ``IDLE``
seconds with containers to watch and nothing else to do (no client connected, no request, no
output, no exit, no restart due, no checkpoint or warm cgroup lock running), the monitor writes
its state to ``<runroot>/monitor.idle`` and execs ``pallet-idle`` (native/pallet-idle.c, ~0.3 MB),
keeping its pid, its children, its subreaper flag and the descriptors listed in the state. That
program only polls the listening socket and the containers' output descriptors and waits for a
child's exit, then execs this monitor again (``monitor.main(..., resume=STATE)``), which reads
the state back and handles what woke it. Nothing is accepted, read or reaped meanwhile.

The price: the first request after an idle spell waits for the monitor's Python to start again
(measured in bench/RESULTS.md). ``PALLET_MONITOR_IDLE=0`` keeps the monitor in Python; so does a
machine without the ``pallet-idle`` binary (scripts/setup.sh builds it with cc into the venv's
bin; ``PALLET_IDLE_BIN`` names another).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

IDLE = float(os.environ.get("PALLET_MONITOR_IDLE", "5"))
FILE = "monitor.idle"
SIGNALS = (17, 15, 2, 1)  # SIGCHLD, SIGTERM, SIGINT, SIGHUP: blocked across the idle spell


def binary() -> str:
    """The idle program's path, or "" when there is none (or idle mode is off)."""
    from pallet.runtime.sealed import native

    return (native("pallet-idle", "PALLET_IDLE_BIN") or "") if IDLE > 0 else ""


class FdKeep:
    """Descriptors a container's stdio keeps open (its port reservation), after a resume: the
    same ``close``/``fds`` as network.ports.Reservation, which it stands for."""

    def __init__(self, fds: list[int]) -> None:
        self._fds = fds

    def fds(self) -> list[int]:
        return list(self._fds)

    def close(self) -> None:
        while self._fds:
            try:
                os.close(self._fds.pop())
            except OSError:
                pass


STDIO_FDS = ("master", "out_r", "err_r", "in_w")  # the Stdio fields that cross an idle spell


def enter(m: Any, path: str) -> None:
    """Save ``m``'s state and exec the idle program ``path``; never returns. Should that exec
    fail, this process execs the monitor's Python straight away, as a wake-up does."""
    out_fds = [fd for fd, key in m.sel.get_map().items() if key.data[0] == "output"]
    watched = []
    for w in m.by_id.values():
        io = w.io
        watched.append({"id": w.cid, "pid": w.pid, "tty": io.tty, **{k: getattr(io, k) for k in STDIO_FDS},
                        "keep": [fd for obj in io.keep for fd in obj.fds()],
                        "partial": {k: v.decode("latin-1") for k, v in w.log.partial.items()}})
        w.log.close_fd()  # reopened by the first line after the resume
    assert m.listener is not None
    keep = [m.lock_fd, m.listener.fileno(), *out_fds]
    for w in watched:
        keep += [w[k] for k in STDIO_FDS if w[k] >= 0] + w["keep"]
    st = {"lock": m.lock_fd, "listener": m.listener.fileno(), "output": out_fds, "watched": watched,
          "next_cid": m.next_cid, "backoff": m.backoff, "fds": keep}
    m.checkpointer.stop()  # joins its thread: exec would end it mid-checkpoint
    m.warm.close()
    m.conn.close()
    # last: a client that sees this file connects only to wake the monitor (engine.served)
    state_path = os.path.join(m.runroot, FILE)
    tmp = state_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(st, f)
    os.replace(tmp, state_path)
    for fd in keep:
        os.set_inheritable(fd, True)
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)  # pallet-idle blocks them too; resume unblocks
    from pallet.engine.served import monitor_argv

    argv = [path, ",".join(str(fd) for fd in [m.listener.fileno(), *out_fds]),
            *monitor_argv(m.root, m.runroot, -1, resume=state_path)]
    try:
        os.execv(path, argv)
    except OSError:
        # nothing was given up but the database connection and the checkpoint thread: take the
        # same way back as a wake-up does, straight into the monitor's Python
        os.execv(sys.executable, argv[2:])


def restore(m: Any, path: str) -> None:
    """Give ``m`` (a fresh Monitor after a wake-up) the state ``enter`` saved at ``path`` (removed
    once read): its lock, socket, watched containers with their stdio, log writers (and a line
    not yet ended) and restart back-offs. Their descriptors become close-on-exec again."""
    import selectors
    import socket

    from pallet.engine.containers import Dirs
    from pallet.engine.logs import LogWriter
    from pallet.engine.monitor_loop import Watched
    from pallet.engine.stdio import Stdio

    with open(path) as f:
        st: dict[str, Any] = json.load(f)
    os.unlink(path)
    m.lock_fd = st["lock"]
    listener = socket.socket(fileno=st["listener"])
    listener.setblocking(False)
    m.listener = listener
    m.sel.register(listener, selectors.EVENT_READ, ("accept", None))
    m.backoff = dict(st["backoff"])
    if st["next_cid"]:
        from pallet.runtime.linux import cgroupfs

        m.next_cid = cgroupfs.SPARE = st["next_cid"]
    streams: dict[int, tuple[Any, str]] = {}
    for d in st["watched"]:
        io = Stdio(bool(d["tty"]), (-1, -1, -1), **{k: d[k] for k in STDIO_FDS})
        if d["keep"]:
            io.keep.append(FdKeep(list(d["keep"])))
        log = LogWriter(Dirs(m.root, m.runroot, d["id"]).log)
        log.partial = {k: v.encode("latin-1") for k, v in d["partial"].items()}
        w = Watched(d["id"], d["pid"], io, log)
        m.by_pid[w.pid] = w
        m.by_id[w.cid] = w
        streams[io.master] = streams[io.out_r] = (w, "stdout")
        streams[io.err_r] = (w, "stderr")
    for fd in st["output"]:
        if fd in streams:
            m.sel.register(fd, selectors.EVENT_READ, ("output", streams[fd]))
    for fd in st["fds"]:  # (what enter made inheritable)
        try:
            os.set_inheritable(fd, False)  # not into the containers started from now on
        except OSError:
            pass


def unblock() -> None:
    """Deliver what arrived during the idle spell (SIGTERM, SIGCHLD) to the handlers now set."""
    import signal

    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
