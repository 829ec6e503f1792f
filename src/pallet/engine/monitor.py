"""One shared monitor per runroot: the waiter of every detached container.

Why one process for all (measured in bench/RESULTS.md): a Python waiter per container costs
~8-10 MB PSS each; one subreaper multiplexing every container's pipes with ``selectors`` costs
that once. It is started on demand by the first detached start (a fresh ``python -I`` running
this module, so it carries no CLI state and no inherited database connection), and exits after
``LINGER`` seconds with nothing to watch.

Protocol (``<runroot>/monitor.sock``, SOCK_STREAM): the client sends one JSON line
``{"op": "start", "id": ID}`` or ``{"op": "attach", "id": ID, "stdin": bool}`` and reads one
JSON line back (``{"ok": true, ...}`` or ``{"error": "...", "exit_code": N}``). After a
successful attach the monitor sends frames ``kind(1) len(4, big endian) data``: kind 1 stdout,
2 stderr, 3 the exit (JSON ``{"exit_code": N}``); bytes the client sends are the container's stdin.

The monitor records exits (state.set_exited, OOM from the cgroup), writes json-file logs,
applies the restart policy (100 ms doubling back-off, capped at 1.6 s) and removes ``--rm``
containers. If it is killed, the next command reconciles (``state.reconcile``).
"""
from __future__ import annotations

import fcntl
import os
import selectors
import signal
import socket
import struct
import time
from typing import Any

from pallet.engine.served import monitor_argv, raise_for  # raise_for: re-exported
from pallet.runtime import jsonlite as json  # not `json` (re, enum): `run -d` imports this

LINGER = float(os.environ.get("PALLET_MONITOR_LINGER", "2.0"))


def sock_path(runroot: str) -> str:
    return os.path.join(runroot, "monitor.sock")


# --- client side ---------------------------------------------------------------------------------

def connect(runroot: str, root: str, *, spawn: bool = True) -> socket.socket:
    """A connection to the monitor of ``runroot``, starting one when none listens (bounded: 10 s).
    A monitor that is exiting (idle) may still hold the lock: spawning is retried."""
    path = sock_path(runroot)
    deadline = time.monotonic() + 10
    next_spawn = 0.0
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            s.connect(path)
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if not spawn:
                raise
            now = time.monotonic()
            if now > deadline:
                from pallet.errors import Unavailable

                raise Unavailable(f"the container monitor did not start ({path})") from None
            if now >= next_spawn:
                _spawn(root, runroot)
                next_spawn = now + 0.5
            else:
                time.sleep(0.01)


def _spawn(root: str, runroot: str) -> None:
    """Start ``python -I -m pallet.engine.monitor`` detached (setsid, stdio on /dev/null) and wait
    until it listens (it writes one byte to a pipe) or fails."""
    import subprocess

    r, w = os.pipe()
    p = subprocess.Popen(monitor_argv(root, runroot, w), pass_fds=(w,), start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         close_fds=True)
    os.close(w)
    try:
        os.read(r, 1)  # EOF without a byte: it exited (another monitor won the lock): connect anyway
    finally:
        os.close(r)
    p.wait()  # the session leader forked the monitor and exited: the monitor is init's (no zombie)


def request(runroot: str, root: str, msg: dict[str, Any]) -> tuple[socket.socket, dict[str, Any]]:
    """Send one request; retried on a monitor that closed without answering (it was exiting)."""
    for _attempt in range(5):
        s = connect(runroot, root)
        try:
            s.sendall(json.dumps(msg).encode() + b"\n")
            line = read_line(s)
        except (ConnectionResetError, BrokenPipeError):
            line = b""  # it exited (its linger) with this connection not yet accepted: not handled
        if line:
            return s, json.loads(line)
        s.close()
        time.sleep(0.05)
    from pallet.errors import Unavailable

    raise Unavailable("the container monitor closed the connection")


def read_line(s: socket.socket, chunk: int = 1) -> bytes:
    """The monitor's one-line reply (b"" if it closed first). ``chunk`` 1 reads nothing past the
    line (an attach stream follows it); a larger one for a reply that ends the exchange."""
    line = b""
    while not line.endswith(b"\n"):
        ch = s.recv(chunk)
        if not ch:
            break
        line += ch
    return line


def start(runroot: str, root: str, cid: str, *, restart: bool = False) -> dict[str, Any]:
    s, reply = request(runroot, root, {"op": "start", "id": cid, "restart": restart})
    s.close()
    raise_for(reply)
    return reply


def main(root: str, runroot: str, ready_fd: int, *, resume: str = "") -> None:
    """The monitor process. ``resume``: the state file of an idle spell (engine.idle) this
    process, still holding the lock, socket and children, wakes up from."""
    if not resume and os.fork():
        os._exit(0)
    from pallet.engine import idle
    from pallet.engine.monitor_loop import Monitor

    pidfile = os.path.join(runroot, "monitor.pid")
    if not resume:
        os.makedirs(runroot, exist_ok=True)
        lock = os.open(os.path.join(runroot, "monitor.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if ready_fd >= 0:
                os.close(ready_fd)
            return
        try:
            os.unlink(os.path.join(runroot, idle.FILE))  # a killed idle monitor's
        except FileNotFoundError:
            pass
    # not SIG_IGN: an ignored disposition would be inherited by every container
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGHUP, lambda *_: None)
    m = Monitor(root, runroot)
    if resume:
        idle.restore(m, resume)
        lock = m.lock_fd
        idle.unblock()  # what arrived while idle reaches the handlers now set
    else:
        m.lock_fd = lock
        m.listen(sock_path(runroot))
        with open(pidfile, "w") as f:
            f.write(str(os.getpid()))
        if ready_fd >= 0:  # (-1: started in the background by a foreground run, engine.served.warm)
            os.write(ready_fd, b"1")
            os.close(ready_fd)
    try:
        m.run()
    finally:
        m.close()
        try:
            os.unlink(pidfile)
        except OSError:
            pass
        os.close(lock)


def frame(kind: int, data: bytes) -> bytes:
    return struct.pack(">BI", kind, len(data)) + data


__all__ = ["connect", "request", "start", "main", "frame", "raise_for", "selectors"]
