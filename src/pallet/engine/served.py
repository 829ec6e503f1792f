"""Foreground ``run`` and ``exec`` served by the runroot's monitor, when one is listening.

Why (measured in bench/RESULTS.md "Engine: served"): an in-process ``run``/``exec`` pays, in
every invocation, the imports of the engine and the runtime, opening SQLite and building the
spec (~25-40 ms of CPU on this machine). The monitor (``pallet.engine.monitor``) already has all
of that loaded and open; the CLI then only parses its flags and asks it, handing over its own
stdio with SCM_RIGHTS. No monitor listening (or an older one that does not know the op, or a
case it does not serve): the caller falls back to the in-process path, which behaves the same.

What stays in the CLI, so the behaviour is the in-process one:
- ``exec``: the command gets the CLI's own stdout/stderr (and stdin with ``-i``); signals the
  CLI receives are sent to it; the exit code comes back when the monitor reaps it.
- ``run`` (no tty, no ``-d``): the monitor creates and starts the container with the CLI's stdin
  (``-i``) or /dev/null and hands back the read ends of its stdout/stderr pipes and a pidfd; the
  CLI copies the output to its terminal and the json-file log (flow control stays between the
  container and the terminal, as in-process), forwards signals, and gets the exit code once the
  monitor has recorded it (a ``--rm`` container is removed by then).

Here only cheap imports: ``_socket`` (not ``socket``: enum, selectors), jsonlite, errors.
"""
from __future__ import annotations

import _socket
import os
import sys

from pallet.runtime import jsonlite as json  # not `json`: it imports re and enum (~3 ms)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re): not on the run path
    from typing import Any


def prewarm() -> None:
    """On a cgroup v1 host, start paying the kernel's attach wait (an RCU grace period, ~10 ms
    here) now, on a thread, so it overlaps this process's start-up and the monitor's work: the
    monitor's own ``cgroup.procs`` writes then find it paid (runtime.linux.cgroupfs.prewarm_attach)."""
    from pallet.runtime.linux import cgroupfs

    if not os.path.exists(cgroupfs.CGROUP_ROOT + "/cgroup.controllers"):
        cgroupfs.prewarm_attach()


class _Forward:
    """The signals a foreground ``exec`` gets, sent to its process (engine.pump.Forwarder without
    pump's imports). Installed before the request: the command writes straight to our stdout,
    so a caller may see it run (and signal us) before the monitor's answer names its pid; a
    signal that arrives before is held and sent then."""

    def __init__(self) -> None:
        self.pid = 0
        self.held: list[int] = []
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> _Forward:
        import _signal

        # units.FORWARDED_SIGNALS (docker's sig-proxy set), spelled out: units is not on exec's path
        for s in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2):
            self.saved[s] = _signal.signal(s, self._handle)
        return self

    def to(self, pid: int) -> None:
        self.pid = pid
        while self.held:
            self._handle(self.held.pop(0), None)

    def _handle(self, signum: int, _frame: object) -> None:
        if not self.pid:
            self.held.append(signum)
            return
        try:
            os.kill(self.pid, signum)
        except OSError:
            pass

    def __exit__(self, *exc: object) -> None:
        import _signal

        for s, h in self.saved.items():
            _signal.signal(s, h)


_absent = False  # no monitor listened to the last request (see warm)


def monitor_argv(root: str, runroot: str, ready_fd: int, resume: str = "") -> list[str]:
    """The command line of the monitor of ``runroot`` (engine.monitor.main): a fresh ``python -I``
    with this source tree on its path. The one spelling for its three starters: the first detached
    start (monitor._spawn), a run/exec done in-process (warm), a wake-up from idle (engine.idle)."""
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    extra = f", resume={resume!r}" if resume else ""
    code = (f"import sys; sys.path.insert(0, {src!r}); from pallet.engine.monitor import main; "
            f"main({root!r}, {runroot!r}, {ready_fd}{extra})")
    return [sys.executable, "-I", "-c", code]


def _connect(runroot: str) -> Any:
    global _absent
    if os.environ.get("PALLET_SERVED") == "0":  # always in-process (comparisons, debugging)
        return None
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        s.connect(os.path.join(runroot, "monitor.sock"))
    except OSError:
        s.close()
        _absent = True
        return None
    if os.path.exists(os.path.join(runroot, "monitor.idle")):
        # an idle monitor (engine.idle) needs ~80 ms to be back in Python: this connection wakes
        # it for the next request, and this one is done in-process (~20-40 ms sooner)
        s.close()
        return None
    return s


def warm(root: str, runroot: str) -> None:
    """After a run/exec done in-process because no monitor listened: start one in the background
    (not waited for), so the next run/exec is served; it exits after ``PALLET_MONITOR_LINGER``
    seconds with nothing to do (engine.monitor). Best effort, ~1 ms here."""
    if not _absent or os.environ.get("PALLET_SERVED") == "0":
        return
    argv = monitor_argv(root, runroot, -1)
    # fork + exec, not posix_spawn: glibc's posix_spawn leaves its internal signals 32 and 33
    # ignored in the child, and every container would inherit that
    try:
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    try:
        pid = os.fork()
    except OSError:
        os.close(null)
        return
    if pid == 0:
        try:
            os.setsid()
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(null)


class _Conn:
    """One request, then reply lines (JSON), possibly with descriptors."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []

    def send(self, msg: dict[str, Any], fds: list[int]) -> None:
        data = json.dumps(msg).encode() + b"\n"
        anc = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))]
        n = self.sock.sendmsg([data], anc if fds else [])
        if n < len(data):
            self.sock.sendall(data[n:])

    def line(self) -> dict[str, Any] | None:
        while b"\n" not in self.buf:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(4096, _socket.CMSG_SPACE(4 * 4))
            except InterruptedError:
                continue
            for level, kind, raw in anc:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                    self.fds += [int.from_bytes(raw[i:i + 4], sys.byteorder) for i in range(0, len(raw) - len(raw) % 4, 4)]
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []
        self.sock.close()


def _ask(runroot: str, msg: dict[str, Any], fds: list[int],
         meanwhile: Any = None) -> tuple[_Conn, dict[str, Any]] | None:
    """Send the request; None when nobody serves it here (the caller runs it in-process).
    ``meanwhile``: called once the request is sent, while the monitor works on it."""
    sock = _connect(runroot)
    if sock is None:
        return None
    conn = _Conn(sock)
    try:
        conn.send(msg, fds)
        if meanwhile is not None:
            meanwhile()
        reply = conn.line()
    except OSError:
        reply = None
    if reply is None or reply.get("fallback") or str(reply.get("error", "")).startswith("unknown op"):
        conn.close()
        return None
    if "error" in reply:
        conn.close()
        raise_for(reply)
    return conn, reply


def raise_for(reply: dict[str, Any]) -> None:
    """The monitor's error reply as the PalletError the in-process path would raise."""
    if "error" not in reply:
        return
    from pallet import errors

    cls = {127: errors.CommandNotFound, 126: errors.CommandNotExecutable}.get(reply.get("exit_code", 125))
    kind = getattr(errors, str(reply.get("kind", "")), None)
    if cls is None:
        cls = kind if isinstance(kind, type) and issubclass(kind, errors.PalletError) else errors.PalletError
    raise cls(reply["error"])


def _exit_code(conn: _Conn) -> int:
    try:
        last = conn.line()
    except OSError:
        last = None
    if last is None:  # the monitor went away before telling: as docker does when it loses the daemon
        from pallet.errors import Unavailable

        raise Unavailable("the container monitor closed the connection before the container's exit")
    return int(last.get("exit_code", 0))


def exec_(runroot: str, ref: str, args: list[str], *, env: list[str], user: str | None, workdir: str | None,
          interactive: bool, detach: bool, privileged: bool) -> int | None:
    """``pallet exec`` without a tty; None: not served here (run it in-process)."""
    fds = [] if detach else ([0, 1, 2] if interactive else [1, 2])
    with _Forward() as fwd:
        got = _ask(runroot, {"op": "exec", "ref": ref, "args": args, "env": env, "user": user, "workdir": workdir,
                             "stdin": interactive, "detach": detach, "privileged": privileged}, fds)
        if got is not None:
            conn, reply = got
            try:
                if detach:
                    return 0
                fwd.to(int(reply["pid"]))
                return _exit_code(conn)
            finally:
                conn.close()
    for sig in fwd.held:  # signalled before anything ran: this process's own handling, now restored
        os.kill(os.getpid(), sig)
    return None


def _import_pump() -> None:
    import pallet.engine.logs
    import pallet.engine.pump  # noqa: F401


def run(runroot: str, opts: dict[str, Any]) -> int | None:
    """A foreground ``pallet run`` without a tty; None: not served here (run it in-process).
    ``opts``: CreateOptions' keywords, environment already resolved (``-e K``, ``--env-file``)."""
    interactive = bool(opts.get("interactive"))
    got = _ask(runroot, {"op": "run", "opts": opts, "cwd": os.getcwd()}, [0] if interactive else [],
               meanwhile=_import_pump)  # imported while the monitor starts the container
    if got is None:
        return None
    conn, reply = got
    try:
        if len(conn.fds) != 4:
            from pallet.errors import Unavailable

            raise Unavailable("the container monitor sent no output pipes")
        out_r, err_r, pidfd, logfd = conn.fds
        conn.fds = []
        from pallet.engine.logs import LogWriter
        from pallet.engine.pump import Forwarder, pump
        from pallet.engine.stdio import Stdio

        pid = int(reply["pid"])
        io = Stdio(False, (-1, -1, -1), out_r=out_r, err_r=err_r)
        log = LogWriter("")
        log.fd = logfd  # opened by the monitor (the directory of a --rm container may be gone soon)
        try:
            with Forwarder(lambda sig: os.kill(pid, sig)):
                pump(pid, io, log=log, reap=False, pidfd=pidfd)
        finally:
            log.close()
            io.close()
        return _exit_code(conn)
    finally:
        conn.close()
