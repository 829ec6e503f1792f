"""``attach`` and ``start -a``: the client side of the monitor's attach stream, and ``exec``.

Window size (as docker's attach): with a tty container whose caller has a terminal on stdout
(else stdin), its size goes with the attach request, and each SIGWINCH the client gets sends a
``{"op": "resize"}`` request on a connection of its own (the attach stream carries raw stdin
bytes); the monitor sets it on the pty master (TIOCSWINSZ) and the kernel signals SIGWINCH to
the container's foreground process group."""
from __future__ import annotations

import os
import struct

from pallet.engine.containers import Container
from pallet.errors import Conflict, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing imports re: not on exec's path
    from typing import Any


def attach(s: Any, c: Container, *, stdin: bool, start: bool = False) -> int:
    from pallet.engine import monitor
    from pallet.engine.pump import Forwarder
    from pallet.engine.stdio import RawTerminal

    if not start and c.status not in ("running", "paused"):
        raise Conflict("You cannot attach to a stopped container, start it first")
    if start and c.status in ("running", "paused"):
        start = False
    msg: dict[str, Any] = {"op": "attach", "id": c.id, "stdin": stdin, "start": start}
    size = term_size() if c.cfg.get("Tty") else None
    if size is not None:
        msg["rows"], msg["cols"] = size
    sock, reply = monitor.request(s.runroot, s.root, msg)
    monitor.raise_for(reply)
    tty = bool(reply.get("tty"))
    cur = s.get(c.id)
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "sock")
    if stdin:
        try:
            sel.register(0, selectors.EVENT_READ, "stdin")
        except PermissionError:  # epoll refuses regular files and /dev/null: always readable, send it all now
            _send_all_then_eof(sock)

    def kill(sig: int) -> None:
        if cur.pid > 0:
            os.kill(cur.pid, sig)

    # SIGWINCH: the handler only writes a byte to a pipe; the loop sends the resize (a handler that
    # did it could run while the loop is half-way through a frame, and would block the loop)
    winch_r = winch_w = -1
    if tty and (os.isatty(1) or os.isatty(0)):
        winch_r, winch_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        sel.register(winch_r, selectors.EVENT_READ, "winch")

    def winch() -> None:
        try:
            os.write(winch_w, b"w")
        except OSError:  # the pipe is full: a resize is pending anyway
            pass

    try:
        with sock, Forwarder(kill, winch=winch if winch_w >= 0 else None), \
                RawTerminal(0) if (tty and stdin) else _Null():
            code = _loop(s, c.id, sock, sel, winch_r, detach_keys=DETACH_KEYS if (tty and stdin) else b"")
    finally:
        for fd in (winch_r, winch_w):
            if fd >= 0:
                os.close(fd)
    if code == DETACHED:  # the terminal is restored: docker's line and status
        os.write(2, b"read escape sequence\n")
        return 1
    return code


DETACH_KEYS = b"\x10\x11"  # docker's default --detach-keys ctrl-p,ctrl-q
DETACHED = -1


def escape(data: bytes, held: bytes, keys: bytes) -> tuple[bytes, bytes, bool]:
    """docker's escape proxy over stdin: (bytes to send, bytes held back, detach?). A prefix of
    ``keys`` at the end of a read is held until the next read says whether the sequence goes on;
    bytes before a full sequence are sent, the sequence never is."""
    buf = held + data
    if not keys:
        return buf, b"", False
    i = buf.find(keys)
    if i >= 0:
        return buf[:i], b"", True
    for k in range(min(len(keys) - 1, len(buf)), 0, -1):
        if buf.endswith(keys[:k]):
            return buf[:-k], buf[-k:], False
    return buf, b"", False


def _loop(s: Any, cid: str, sock: Any, sel: Any, winch_r: int, *, detach_keys: bytes) -> int:
    """Copy stdin to the attach stream and its frames to stdout/stderr until the exit frame (its
    exit code), the end of the stream (0), or the detach keys typed on a tty (``DETACHED``)."""
    buf = b""
    held = b""
    code = 0
    done = False
    while not done:
        for key, _ in sel.select():
            if key.data == "winch":
                try:
                    while os.read(winch_r, 64):
                        pass
                except BlockingIOError:
                    pass
                size = term_size()
                if size is not None:
                    resize(s.runroot, s.root, cid, *size)
                continue
            if key.data == "stdin":
                data = os.read(0, 65536)
                if not data:
                    if held:  # a lone ctrl-p at the end of the input
                        sock.sendall(held)
                        held = b""
                    sel.unregister(0)
                    import socket

                    sock.shutdown(socket.SHUT_WR)
                else:
                    data, held, detach = escape(data, held, detach_keys)
                    if data:
                        sock.sendall(data)
                    if detach:
                        return DETACHED
                continue
            data = sock.recv(65536)
            if not data:
                done = True
                break
            buf += data
            while len(buf) >= 5:
                kind, n = struct.unpack(">BI", buf[:5])
                if len(buf) < 5 + n:
                    break
                payload, buf = buf[5:5 + n], buf[5 + n:]
                if kind == 3:
                    from pallet.runtime import jsonlite

                    code = int(jsonlite.loads(payload).get("exit_code", 0))
                    done = True
                else:
                    os.write(1 if kind == 1 else 2, payload)
    return code


def term_size() -> tuple[int, int] | None:
    """(rows, cols) of the caller's terminal: stdout's, else stdin's (docker's attach asks its
    output stream); None without a terminal or for a 0x0 one (docker sends no resize then)."""
    import fcntl
    import termios

    for fd in (1, 0):
        if not os.isatty(fd):
            continue
        try:
            rows, cols = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))[:2]
        except OSError:
            continue
        return (rows, cols) if rows or cols else None
    return None


def resize(runroot: str, root: str, cid: str, rows: int, cols: int, *, timeout: float = 2.0) -> bool:
    """Ask the monitor to set the window size of container ``cid``'s tty; False when it could not
    (no monitor, not a tty, gone). Bounded: the monitor answers between two loop rounds."""
    from pallet.engine import monitor
    from pallet.runtime import jsonlite

    try:
        sock = monitor.connect(runroot, root, spawn=False)
    except OSError:
        return False
    with sock:
        try:
            sock.settimeout(timeout)
            sock.sendall(jsonlite.dumps({"op": "resize", "id": cid, "rows": rows, "cols": cols}).encode() + b"\n")
            line = monitor.read_line(sock, 256)
        except OSError:  # socket.timeout included
            return False
    try:
        return bool(jsonlite.loads(line).get("ok"))
    except (ValueError, InvalidArgument):
        return False


def _send_all_then_eof(sock: Any) -> None:
    import socket

    while True:
        data = os.read(0, 65536)
        if not data:
            break
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def exec_(s: Any, c: Container, args: list[str], *, interactive: bool, tty: bool, detach: bool,
          env: list[str], user: str | None, workdir: str | None, privileged: bool = False) -> int:
    from pallet.engine import rt
    from pallet.engine.pump import Forwarder, pump, winch_to
    from pallet.engine.stdio import RawTerminal, Stdio

    if workdir is not None and not workdir.startswith("/"):
        from pallet.errors import InvalidArgument

        raise InvalidArgument(f"the working directory '{workdir}' is invalid, it needs to be an absolute path")
    stdin = "inherit" if (interactive and not detach) else "null"
    io = Stdio.make(tty=tty and not detach, stdin=stdin)
    try:
        pid = rt.exec_(s.store, c, args, env=env, cwd=workdir, user=user, io=io, privileged=privileged)
    except BaseException:
        io.close()
        raise
    io.close_child_ends()
    if detach:
        io.close()
        return 0
    try:
        with Forwarder(lambda sig: os.kill(pid, sig), winch=winch_to(io.master) if io.tty else None), \
                RawTerminal(0) if (io.tty and interactive) else _Null():
            return pump(pid, io, stdin_fd=0 if (io.tty and interactive) else None)
    finally:
        io.close()
