"""``attach`` and ``start -a``: the client side of the monitor's attach stream, and ``exec``."""
from __future__ import annotations

import os
import struct

from pallet.engine.containers import Container
from pallet.errors import Conflict

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
    sock, reply = monitor.request(s.runroot, s.root, {"op": "attach", "id": c.id, "stdin": stdin, "start": start})
    monitor.raise_for(reply)
    tty = bool(reply.get("tty"))
    cur = s.get(c.id)
    code = 0
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "sock")
    if stdin:
        try:
            sel.register(0, selectors.EVENT_READ, "stdin")
        except PermissionError:  # epoll refuses regular files and /dev/null: always readable, send it all now
            _send_all_then_eof(sock)
    buf = b""
    done = False

    def kill(sig: int) -> None:
        if cur.pid > 0:
            os.kill(cur.pid, sig)

    with sock, Forwarder(kill), RawTerminal(0) if (tty and stdin) else _Null():
        while not done:
            for key, _ in sel.select():
                if key.data == "stdin":
                    data = os.read(0, 65536)
                    if not data:
                        sel.unregister(0)
                        import socket

                        sock.shutdown(socket.SHUT_WR)
                    else:
                        sock.sendall(data)
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
