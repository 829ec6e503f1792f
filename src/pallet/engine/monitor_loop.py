"""The monitor's event loop (see ``pallet.engine.monitor`` for the why and the protocol).

Single-threaded: a selector over the listening socket, client sockets, every container's output
fds and a SIGCHLD wake-up pipe. Children (container inits, and orphans it adopts as a
subreaper) are reaped with ``waitpid(-1, WNOHANG)`` after every wake-up.
"""
from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import socket
import time
from typing import Any

from pallet.engine import containers, db, lifecycle, rt, state
from pallet.engine.containers import Dirs
from pallet.engine.logs import LogWriter
from pallet.engine.monitor import LINGER, frame
from pallet.engine.pump import exit_code
from pallet.engine.stdio import Stdio
from pallet.errors import PalletError

PR_SET_CHILD_SUBREAPER = 36


class Watched:
    def __init__(self, cid: str, pid: int, io: Stdio, log: LogWriter) -> None:
        self.cid, self.pid, self.io, self.log = cid, pid, io, log
        self.clients: list[socket.socket] = []
        self.started = time.monotonic()


class Monitor:
    def __init__(self, root: str, runroot: str) -> None:
        from pallet.engine.lightstore import LightStore

        self.root, self.runroot = root, runroot
        self.store = LightStore(root, runroot)
        self.conn = db.connection(self.store)
        self.sel = selectors.DefaultSelector()
        self.by_pid: dict[int, Watched] = {}
        self.by_id: dict[str, Watched] = {}
        self.pending: dict[str, float] = {}
        self.backoff: dict[str, float] = {}
        self.clients = 0
        self.stopping = False
        self.idle_since = time.monotonic()
        self.listener: socket.socket | None = None
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_r = r
        signal.set_wakeup_fd(w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._term)
        self.sel.register(r, selectors.EVENT_READ, ("wake", None))
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def _term(self, *_: object) -> None:
        self.stopping = True

    def listen(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.bind(path)
        os.chmod(path, 0o600)
        s.listen(128)
        s.setblocking(False)
        self.listener = s
        self.sel.register(s, selectors.EVENT_READ, ("accept", None))

    def close(self) -> None:
        if self.listener is not None:
            try:
                os.unlink(self.listener.getsockname())
            except OSError:
                pass
            self.listener.close()

    # -- loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        while not self.stopping:
            now = time.monotonic()
            busy = self.by_pid or self.pending or self.clients
            if busy:
                self.idle_since = now
            elif now - self.idle_since > LINGER:
                return
            timeout = LINGER
            if self.pending:
                timeout = max(0.0, min(self.pending.values()) - now)
            for key, _ in self.sel.select(timeout):
                kind, obj = key.data
                try:
                    getattr(self, "_on_" + kind)(key.fileobj, obj)
                except Exception:  # noqa: BLE001 - one bad event must not kill every container's waiter
                    pass
            self._reap()
            self._due_restarts()

    def _on_wake(self, fd: Any, _obj: Any) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _on_accept(self, s: socket.socket, _obj: Any) -> None:
        try:
            c, _ = s.accept()
        except BlockingIOError:
            return
        c.setblocking(True)
        c.settimeout(5)
        self.clients += 1
        self.sel.register(c, selectors.EVENT_READ, ("request", bytearray()))

    def _drop_client(self, c: socket.socket) -> None:
        try:
            self.sel.unregister(c)
        except (KeyError, ValueError):
            pass
        c.close()
        self.clients -= 1

    def _on_request(self, c: socket.socket, buf: bytearray) -> None:
        try:
            data = c.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._drop_client(c)
            return
        buf += data
        if b"\n" not in buf:
            return
        line, _, rest = bytes(buf).partition(b"\n")
        try:
            msg = json.loads(line)
            reply, keep = self._handle(c, msg)
        except PalletError as e:
            reply, keep = {"error": str(e), "exit_code": e.exit_code, "kind": type(e).__name__}, False
        except Exception as e:  # noqa: BLE001
            reply, keep = {"error": f"monitor: {e}", "exit_code": 125}, False
        try:
            c.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            keep = False
        if not keep:
            self._drop_client(c)
            return
        w = self.by_id[msg["id"]]
        self.sel.modify(c, selectors.EVENT_READ, ("stdin", w))
        if rest:
            self._on_stdin_data(w, rest)

    def _handle(self, c: socket.socket, msg: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        op, cid = msg.get("op"), msg.get("id", "")
        if op == "start":
            w = self.start(cid, restart=bool(msg.get("restart")))
            return {"ok": True, "pid": w.pid}, False
        if op == "attach":
            w = self.by_id.get(cid) or self._start_for_attach(cid, msg)
            w.clients.append(c)
            return {"ok": True, "tty": w.io.tty}, True
        return {"error": f"unknown op {op!r}", "exit_code": 125}, False

    def _start_for_attach(self, cid: str, msg: dict[str, Any]) -> Watched:
        if not msg.get("start"):
            from pallet.errors import Conflict

            raise Conflict("You cannot attach to a stopped container, start it first")
        return self.start(cid)

    def _on_stdin(self, c: socket.socket, w: Watched) -> None:
        try:
            data = c.recv(65536)
        except OSError:
            data = b""
        if not data:
            if not w.io.tty and w.io.in_w >= 0:
                os.close(w.io.in_w)
                w.io.in_w = -1
            # the client's stdin ended (a half-close): it still gets the output and the exit code,
            # as docker's attach does; a client that went away is dropped when a send to it fails
            self.sel.unregister(c)
            return
        self._on_stdin_data(w, data)

    def _on_stdin_data(self, w: Watched, data: bytes) -> None:
        fd = w.io.master if w.io.tty else w.io.in_w
        if fd >= 0:
            try:
                os.write(fd, data)
            except OSError:
                pass

    def _on_output(self, fd: int, arg: tuple[Watched, str]) -> None:
        w, stream = arg
        if not self._copy(w, fd, stream):
            self.sel.unregister(fd)

    def _copy(self, w: Watched, fd: int, stream: str) -> bool:
        try:
            data = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return False
        if not data:
            return False
        w.log.write(stream, data)
        if w.clients:
            f = frame(1 if stream == "stdout" else 2, data)
            for c in list(w.clients):
                try:
                    c.sendall(f)
                except OSError:
                    w.clients.remove(c)
                    self._drop_client(c)
        return True

    # -- containers -----------------------------------------------------------------------------
    def start(self, cid: str, *, restart: bool = False) -> Watched:
        c = containers.get(self.conn, cid)
        if c.id in self.by_id:
            return self.by_id[c.id]
        io = Stdio.make(tty=bool(c.cfg.get("Tty")), stdin="pipe" if c.cfg.get("OpenStdin") else "null")
        try:
            info = rt.start(self.store, c, io, self.conn)
        except BaseException as e:
            io.close()
            if isinstance(e, PalletError):
                if c.status == "restarting":
                    state.set_exited(self.conn, c, e.exit_code, error=str(e))
                else:
                    state.set_failed(self.conn, c, e.exit_code, str(e))
            raise
        io.close_child_ends()
        info["waiter_start"] = state.self_start_time()
        try:
            state.set_running(self.conn, c, info["pid"], info, os.getpid(), restart=restart)
        except PalletError:  # stopped or removed meanwhile: undo this start
            os.kill(info["pid"], 9)
            os.waitpid(info["pid"], 0)
            c.rt = info
            rt.cleanup(c, self.store)
            io.close()
            cur = containers.reload(self.conn, c.id)
            if cur is not None and cur.status == "restarting":
                state.set_exited(self.conn, cur, cur.exit_code)
            raise
        w = Watched(c.id, info["pid"], io, LogWriter(Dirs(self.root, self.runroot, c.id).log))
        self.by_pid[w.pid] = w
        self.by_id[c.id] = w
        if io.tty:
            os.set_blocking(io.master, False)
            self.sel.register(io.master, selectors.EVENT_READ, ("output", (w, "stdout")))
        else:
            for fd, name in ((io.out_r, "stdout"), (io.err_r, "stderr")):
                os.set_blocking(fd, False)
                self.sel.register(fd, selectors.EVENT_READ, ("output", (w, name)))
        return w

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.by_pid.pop(pid, None)
            if w is not None:
                self._exited(w, exit_code(status))

    def _exited(self, w: Watched, code: int) -> None:
        del self.by_id[w.cid]
        fds = [w.io.master] if w.io.tty else [w.io.out_r, w.io.err_r]
        for fd in fds:
            while self._copy(w, fd, "stdout" if fd in (w.io.master, w.io.out_r) else "stderr"):
                pass
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
        w.log.close()
        w.io.close()
        c = containers.reload(self.conn, w.cid)
        for cl in w.clients:
            try:
                cl.sendall(frame(3, json.dumps({"exit_code": code}).encode()))
            except OSError:
                pass
            self._drop_client(cl)
        if c is None:
            return
        lifecycle.after_exit(self.store, self.conn, c, code, on_restart=self._schedule)

    def _schedule(self, cid: str, ran_for: float | None = None) -> None:
        delay = self.backoff.get(cid, 0.05) * 2
        self.backoff[cid] = min(delay, 1.6)
        self.pending[cid] = time.monotonic() + delay

    def _due_restarts(self) -> None:
        now = time.monotonic()
        for cid, when in list(self.pending.items()):
            if when > now:
                continue
            del self.pending[cid]
            c = containers.reload(self.conn, cid)
            if c is None or c.status != "restarting" or c.stopped_by_user:
                if c is not None and c.status == "restarting":
                    state.set_exited(self.conn, c, c.exit_code)
                continue
            try:
                self.start(cid, restart=True)
            except Exception:  # noqa: BLE001 - recorded in the row by start()
                pass
