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
import sys
import time
from typing import Any

from pallet.engine import containers, db, idle, lifecycle, prestart, rt, state
from pallet.engine.checkpoint import Checkpointer
from pallet.engine.containers import Dirs
from pallet.engine.logs import LogWriter
from pallet.engine.monitor import LINGER, frame
from pallet.engine.pump import exit_code
from pallet.engine.stdio import Stdio
from pallet.engine.warmlock import WarmLock
from pallet.errors import PalletError

PR_SET_CHILD_SUBREAPER = 36


class Watched:
    def __init__(self, cid: str, pid: int, io: Stdio, log: LogWriter | None) -> None:
        self.cid, self.pid, self.io, self.log = cid, pid, io, log  # log None: a served run's client pumps
        self.clients: list[socket.socket] = []
        self.started = time.monotonic()


class Monitor:
    ahead: Any = None  # the next served run's container, prepared (engine.prestart)
    ahead_until = 0.0
    last_run: dict[str, Any] | None = None
    swept_gone = False

    def __init__(self, root: str, runroot: str) -> None:
        from pallet.engine.lightstore import LightStore

        self.root, self.runroot = root, runroot
        self.store = LightStore(root, runroot)
        self.conn = db.connection(self.store)
        self.sel = selectors.DefaultSelector()
        self.by_pid: dict[int, Watched] = {}
        self.by_id: dict[str, Watched] = {}
        self.pending: dict[str, float] = {}
        self.execs: dict[int, socket.socket] = {}  # served exec: pid -> the client waiting for its exit
        self.backoff: dict[str, float] = {}
        self.clients = 0
        self.stopping = False
        self.idle_since = self.last_event = time.monotonic()
        self.idle_bin = idle.binary()  # (engine.idle: the idle spell's program, "" for none)
        self.lock_fd = -1
        self.listener: socket.socket | None = None
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_r = r
        signal.set_wakeup_fd(w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._term)
        self.sel.register(r, selectors.EVENT_READ, ("wake", None))
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        # The WAL checkpoint (an fdatasync: 0.5 ms to 200 ms under I/O load, measured) is not done
        # by the monitor's commits, which serve run/exec/start, but by a thread with its own
        # connection, off the loop (sqlite3 releases the GIL while it syncs).
        self.conn.execute("PRAGMA wal_autocheckpoint=0")
        self.checkpointer = Checkpointer(str(self.store.paths.root / "db.sqlite"))
        # cgroup v1: keep a spare container cgroup set ready (runtime.linux.cgroupfs.SPARE), made
        # while nothing served is in flight, named with the id the next served run gets (so
        # nothing is renamed while a client's attach wait may hold the cgroup lock), taken by a
        # detached start with a rename. Recorded in <runroot>/monitor.spare for the sweep of a
        # killed monitor's (engine.spare).
        self.cg_parent = ""
        self.next_cid = ""
        from pallet.runtime.linux import cgroupfs

        if not os.path.exists(cgroupfs.CGROUP_ROOT + "/cgroup.controllers"):
            from pallet.engine import spare
            from pallet.engine.specgen import cgroup_parent

            self.cg_parent = cgroup_parent()
            spare.sweep(runroot)  # a killed monitor's
        self.want_spare = bool(self.cg_parent)
        self.warm = WarmLock(bool(self.cg_parent))

    def _make_spare(self) -> None:
        from pallet.engine import names, spare

        self.want_spare = False
        if self.next_cid and not spare.exists(self.cg_parent, self.next_cid):
            self.next_cid = ""  # taken by a start
        if not self.next_cid:
            self.next_cid = names.new_id()
        spare.make(self.runroot, self.cg_parent, self.next_cid)
        prestart.tick(self)

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
        self.checkpointer.stop()
        self.warm.close()
        prestart.release(self)
        if self.cg_parent and self.next_cid:
            from pallet.engine import spare

            spare.drop(self.runroot, self.cg_parent, self.next_cid)
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
            if self.want_spare and not any(w.log is None for w in self.by_id.values()):
                self._make_spare()
            timeout = self.warm.tick(now, timeout)
            if self.idle_bin and self.by_pid and not (self.pending or self.clients or self.execs):
                if now - self.last_event >= idle.IDLE and self._quiet(now):
                    idle.enter(self, self.idle_bin)  # execs: back in main(resume=...) on a wake-up
                timeout = min(timeout, max(0.01, self.last_event + idle.IDLE - now))
            events = self.sel.select(timeout)
            if events:
                self.last_event = time.monotonic()
            for key, _ in events:
                kind, obj = key.data
                try:
                    getattr(self, "_on_" + kind)(key.fileobj, obj)
                except Exception:  # noqa: BLE001 - one bad event must not kill every container's waiter
                    pass
            self._reap()
            self._due_restarts()
            self.checkpointer.maybe(idle=not events)

    def _quiet(self, now: float) -> bool:
        """Nothing in flight that the idle program could not wait for (engine.idle)."""
        # (a served run or an attach holds a client: the caller's ``not self.clients`` covers them)
        return not self.want_spare and now >= self.warm.until and not self.checkpointer.busy() and self.ahead is None

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
        self.sel.register(c, selectors.EVENT_READ, ("request", (bytearray(), [])))

    def _drop_client(self, c: socket.socket) -> None:
        try:
            self.sel.unregister(c)
        except (KeyError, ValueError):
            pass
        c.close()
        self.clients -= 1

    def _on_request(self, c: socket.socket, pending: tuple[bytearray, list[int]]) -> None:
        buf, fds = pending
        try:
            data, anc, _flags, _addr = c.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
        except OSError:
            data, anc = b"", []
        for level, kind, raw in anc:  # descriptors a served run/exec hands over (its stdio)
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(int.from_bytes(raw[i:i + 4], sys.byteorder) for i in range(0, len(raw) - len(raw) % 4, 4))
        if not data:
            _close_fds(fds)
            self._drop_client(c)
            return
        buf += data
        if b"\n" not in buf:
            return
        line, _, rest = bytes(buf).partition(b"\n")
        send: list[int] = []
        try:
            msg = json.loads(line)
            reply, keep, send = self._handle(c, msg, fds)
        except PalletError as e:
            reply, keep = {"error": str(e), "exit_code": e.exit_code, "kind": type(e).__name__}, ""
        except Exception as e:  # noqa: BLE001
            reply, keep = {"error": f"monitor: {e}", "exit_code": 125}, ""
        finally:
            _close_fds(fds)  # what a handler kept, it dup'ed or took (and emptied the list)
        try:
            out = json.dumps(reply).encode() + b"\n"
            if send:
                c.sendmsg([out], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                   b"".join(fd.to_bytes(4, sys.byteorder) for fd in send))])
            else:
                c.sendall(out)
        except OSError:
            keep = "" if keep != "hold" else keep  # a held client is dropped when its process ends
        finally:
            _close_fds(send)
        if not keep:
            self._drop_client(c)
            return
        if keep == "hold":  # a served run/exec: nothing more to read; answered when its process exits
            self.sel.unregister(c)
            return
        w = self.by_id[msg["id"]]
        self.sel.modify(c, selectors.EVENT_READ, ("stdin", w))
        if rest:
            self._on_stdin_data(w, rest)

    def _handle(self, c: socket.socket, msg: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], str, list[int]]:
        """(reply, what to do with the client: "" drop, "attach" stream, "hold" until the exit, fds to send)."""
        op, cid = msg.get("op"), msg.get("id", "")
        if op in ("start", "exec", "run"):
            self.warm.extend()  # (engine.warmlock)
        if op == "start":
            w = self.start(cid, restart=bool(msg.get("restart")))
            return {"ok": True, "pid": w.pid}, "", []
        if op == "attach":
            w = self.by_id.get(cid) or self._start_for_attach(cid, msg)
            if "rows" in msg and w.io.tty:  # the attaching terminal's size (docker resizes on attach)
                self._resize(cid, msg)
            w.clients.append(c)
            return {"ok": True, "tty": w.io.tty}, "attach", []
        if op == "resize":
            return self._resize(cid, msg), "", []
        if op == "exec":
            return self._served_exec(c, msg, fds)
        if op == "run":
            return self._served_run(c, msg, fds)
        return {"error": f"unknown op {op!r}", "exit_code": 125}, "", []

    # -- served exec and run (pallet.engine.served is the client) -----------------------------------
    def _served_exec(self, c: socket.socket, msg: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], str, list[int]]:
        """Run a command in a container with the client's own stdio (docker exec does not log)."""
        ct = self._get(msg["ref"])
        stdio = _take_stdio(fds, bool(msg.get("stdin")), bool(msg.get("detach")))
        io = Stdio(False, stdio, _close_after_start=list(stdio))
        try:
            pid = rt.exec_(self.store, ct, list(msg["args"]), env=list(msg.get("env") or []), cwd=msg.get("workdir"),
                           user=msg.get("user"), io=io, privileged=bool(msg.get("privileged")),
                           keep=rt.EXEC_KEEP)  # this loop reaps every child (runtime.entered)
        finally:
            io.close()
        if msg.get("detach"):
            return {"ok": True, "pid": pid}, "", []
        self.execs[pid] = c
        return {"ok": True, "pid": pid}, "hold", []

    def _served_run(self, c: socket.socket, msg: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], str, list[int]]:
        """Create and start a container for a foreground ``run`` (no tty): its stdin is the client's
        (``-i``) or /dev/null; the read ends of its stdout/stderr pipes and a pidfd go back to the
        client, which copies them to its terminal and the json-file log (as an in-process run does:
        flow control stays between the container and the terminal). The exit code is sent after
        the exit is recorded (and a ``--rm`` container removed)."""
        from pallet.engine.create import CreateOptions, create
        from pallet.errors import NotFound

        kw = dict(msg["opts"])
        try:
            opts = CreateOptions(**kw)
        except TypeError:
            return {"fallback": True}, "", []  # a client of another version: in-process
        try:
            self.store.resolve_image(kw["image"])
        except NotFound:
            return {"fallback": True}, "", []  # the client pulls it, with its progress lines
        try:
            os.chdir(msg.get("cwd") or "/")  # relative bind-mount sources are the client's
        except OSError:
            return {"fallback": True}, "", []  # (a working directory we cannot enter: in-process)
        cid = prestart.served(self, kw)  # the next id (its cgroups are ready, maybe more: engine.prestart) or None
        try:
            ct = create(self.store, self.conn, opts, cid=cid)
        except BaseException:
            if cid:
                prestart.release(self, cid)
            raise
        finally:
            os.chdir("/")
        reserved = bool(self.next_cid) and ct.id == self.next_cid
        if reserved:  # the spare is this container's now: no start may rename it away
            from pallet.runtime.linux import cgroupfs

            self.next_cid = cgroupfs.SPARE = ""
        stdin = fds.pop(0) if (kw.get("interactive") and fds) else os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        io = Stdio(False, (stdin, out_w, err_w), out_r=out_r, err_r=err_r, _close_after_start=[stdin, out_w, err_w])
        try:
            w = self.start(ct.id, io=io)
        except BaseException:
            io.close()
            prestart.release(self, ct.id)  # (one the runtime did not take: before its cgroups go)
            if reserved:  # a start that failed before the runtime made them its own
                from pallet.engine import spare

                spare.destroy_if_empty(self.cg_parent, ct.id)
            cur = containers.reload(self.conn, ct.id)
            if cur is not None and cur.host.get("AutoRemove") and cur.status in ("created", "exited"):
                lifecycle.remove(self.store, self.conn, cur, force=True)
            raise
        prestart.release(self, ct.id)  # taken by the runtime, or not matching and discarded by it
        # opened here: a `--rm` container may be gone (its directory too) before the client writes
        logfd = os.open(Dirs(self.root, self.runroot, ct.id).log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                        0o640)
        send = [io.out_r, io.err_r, os.pidfd_open(w.pid), logfd]
        io.out_r = io.err_r = -1  # the client's now (closed here once sent)
        w.clients.append(c)
        return {"ok": True, "pid": w.pid, "id": ct.id}, "hold", send

    def _get(self, ref: str) -> Any:
        ct = containers.get(self.conn, ref)
        if state.reconcile(self.conn, ct):
            ct = containers.reload(self.conn, ct.id) or ct
        return ct

    def _start_for_attach(self, cid: str, msg: dict[str, Any]) -> Watched:
        if not msg.get("start"):
            from pallet.errors import Conflict

            raise Conflict("You cannot attach to a stopped container, start it first")
        return self.start(cid)

    def _resize(self, cid: str, msg: dict[str, Any]) -> dict[str, Any]:
        """Set a watched tty container's window size (an attach client's terminal, on attach and on
        its SIGWINCH); the kernel signals SIGWINCH to the container's foreground process group."""
        from pallet.engine.stdio import set_winsize
        from pallet.errors import Conflict, InvalidArgument

        w = self.by_id.get(cid)
        if w is None:
            raise Conflict(f"Container {cid} is not running")
        if not w.io.tty or w.io.master < 0:
            raise Conflict(f"Container {cid} has no tty to resize")
        rows, cols = msg.get("rows"), msg.get("cols")
        if not (isinstance(rows, int) and isinstance(cols, int) and 0 <= rows <= 0xFFFF and 0 <= cols <= 0xFFFF):
            raise InvalidArgument(f"invalid window size {rows!r}x{cols!r}")
        set_winsize(w.io.master, rows, cols)
        return {"ok": True}

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
        if not data or w.log is None:
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
    def start(self, cid: str, *, restart: bool = False, io: Stdio | None = None) -> Watched:
        """Start a container and watch it. ``io``: a served run's stdio (its client copies the
        output: nothing is registered here for it)."""
        c = containers.get(self.conn, cid)
        if c.id in self.by_id:
            return self.by_id[c.id]
        served = io is not None
        if io is None:
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
        self.want_spare = bool(self.cg_parent)  # (this start may have taken it)
        w = Watched(c.id, info["pid"], io, None if served else LogWriter(Dirs(self.root, self.runroot, c.id).log))
        self.by_pid[w.pid] = w
        self.by_id[c.id] = w
        if served:
            return w
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
                return prestart.expire(self)
            if pid == 0:
                return prestart.expire(self)
            prestart.expire(self, pid)
            w = self.by_pid.pop(pid, None)
            if w is not None:
                self._exited(w, exit_code(status))
            cl = self.execs.pop(pid, None)
            if cl is not None:
                try:
                    cl.sendall(json.dumps({"exit_code": exit_code(status)}).encode() + b"\n")
                except OSError:
                    pass
                self._drop_client(cl)

    def _exited(self, w: Watched, code: int) -> None:
        del self.by_id[w.cid]
        if w.log is not None:
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
        later: list[str] = []  # a served `run --rm`'s directory, moved out: removed once its client knows
        try:
            c = containers.reload(self.conn, w.cid)
            if c is not None and w.log is None and c.host.get("AutoRemove") and not lifecycle.should_restart(c, code):
                lifecycle.discard(self.store, self.conn, c, later=later)  # as in-process: nothing to record
            elif c is not None:
                # before the clients hear of the exit: a `run --rm` returns with the container gone
                lifecycle.after_exit(self.store, self.conn, c, code, on_restart=self._schedule)
        finally:
            for cl in w.clients:
                try:
                    if w.log is None:  # a served run: one JSON line
                        cl.sendall(json.dumps({"exit_code": code}).encode() + b"\n")
                    else:
                        cl.sendall(frame(3, json.dumps({"exit_code": code}).encode()))
                except OSError:
                    pass
                self._drop_client(cl)
            prestart.exited(w.cid, later)  # its held namespaces and its directory: after the next is prepared
            if later and not self.swept_gone:  # (once: what a killed monitor left there)
                self.swept_gone = True
                containers.sweep_gone(os.path.dirname(later[0]))

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


def _close_fds(fds: list[int]) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass


def _take_stdio(fds: list[int], stdin: bool, detach: bool) -> tuple[int, int, int]:
    """The container-side stdio of a served exec from the descriptors its client sent, in order
    ``[stdin (with -i),] stdout, stderr``; /dev/null for what was not sent, and for all three with
    ``-d``. Takes them out of ``fds``."""
    got = list(fds)
    fds.clear()
    if detach:
        _close_fds(got)
    std = [got.pop(0) if (stdin and got) else -1]
    std += [got.pop(0) if got else -1, got.pop(0) if got else -1]
    _close_fds(got)
    in_fd, out_fd, err_fd = (fd if fd >= 0 else os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC) for fd in std)
    return in_fd, out_fd, err_fd
