"""A process kept inside a running container's namespaces that forks what ``exec`` starts there.

Why (measured in bench/RESULTS.md "Engine, session 3: exec"): in a process that serves many
execs (the engine's monitor), a direct exec (runtime.enter) copies the caller with fork, joins
six namespaces and loads the seccomp filter (~1.5-2 ms here: the kernel checks ~1,000 BPF
instructions) on every exec. The kept process has done the last two once, for a container.

It enters the container's pid namespace for its children only (so it is not itself a process of
the container: not in its ``ps``, ``top`` or pids count, nor in its cgroups), every other
namespace that differs from the caller's, and loads the container's seccomp filter, which every
process it makes inherits. For each exec it clones with CLONE_PARENT (the new process is the
caller's child, which the caller places in the cgroups) and sends the new pid on the exec's sync
socket. Two kinds:

* ``native/pallet-entered`` (C, ~100 KB; ``binary``): posix_spawn'd by the caller, so no copy
  of it; its clone execs ``native/pallet-init`` at once, which gets the process from the caller
  as a prepared container's init does ("2", then "G" + runtime.prepared's encoding + the stdio)
  and does process.finalize's steps in C (``exec_native``). Used when both binaries exist.
* a fork of the caller (``_serve``): its clone either execs pallet-init the same way, or (no
  pallet-init) does ``process.exec_child`` without loading the filter again (``enter._via_entered``).

It exits after ``keep`` seconds without a request, when the container's init exits (a pidfd),
when the caller closes its end, and when the caller dies (PR_SET_PDEATHSIG); whatever fails in
it (a profile that refuses one of its syscalls, a clone that fails) ends it too, and the caller
then does a direct exec: nothing was started. The caller reaps it (the monitor is a subreaper
that reaps every child). Not for ``noNewPrivileges`` processes: for them the filter is loaded
after the uid change (process.finalize), which a profile may rely on.
"""
from __future__ import annotations

import _signal
import _socket
import gc
import os
import select

from pallet.runtime import jsonlite, process
from pallet.runtime.linux import syscalls as sc
from pallet.runtime.linux.caps import CapPlan
from pallet.runtime.sealed import exec_stub, native, sealed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Entered:
    """The caller's handle: the process's pid, the caller's end of its socket, the container's
    cgroup.procs files (opened by the caller on the host's cgroupfs), how many execs it served,
    whether its children exec native/pallet-init (``helper``)."""

    def __init__(self, pid: int, sock: _socket.socket, key: tuple[Any, ...], procs: list[int],
                 helper: bool, native: bool = False) -> None:
        self.pid, self.sock, self.key, self.procs, self.helper = pid, sock, key, procs, helper
        self.native = native  # native/pallet-entered: exec_native requests only
        self.served = 0

    def alive(self) -> bool:
        p = select.poll()
        p.register(self.sock.fileno(), select.POLLIN)
        return not p.poll(0)  # readable only when it has gone (it never writes to this socket)

    def close(self) -> None:
        self.sock.close()
        while self.procs:
            os.close(self.procs.pop())

    def request(self, req: dict[str, Any], fds: list[int]) -> bool:
        """Hand a request over; False when this process has gone (then nothing was started)."""
        anc = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, b"".join(fd.to_bytes(4, "little") for fd in fds))]
        try:
            self.sock.sendmsg([jsonlite.dumps(req).encode()], anc, _socket.MSG_NOSIGNAL)
        except OSError:
            return False
        return True


def exec_native(z: Entered, cid: str, proc: dict[str, Any], stdio: tuple[int, int, int],
                bounding: int) -> tuple[int, int | None] | None:
    """An exec whose process, cloned by ``z``, execs native/pallet-init at once (its Python copy of
    the caller is torn down while the caller places it in the cgroups) and gets the process from
    the caller as a prepared container's does (runtime.prepared: "2", then "G" + the encoded
    process + its stdio); it does process.finalize's steps in C and execs the command. (pid, None),
    or None when ``z`` had gone before it forked anything."""
    from pallet.errors import Unavailable
    from pallet.runtime.prepared import SYNC_GO, _encode

    go = SYNC_GO + _encode(proc, bounding)
    psock, csock = process.socketpair()
    psock.settimeout(30)
    try:
        sent = z.request({"helper": True}, [csock.fileno()])
    finally:
        csock.close()
    if not sent:
        psock.close()
        return None
    z.served += 1
    pid, ready, gone, err = 0, False, False, b""
    try:
        while not gone:
            tag, payload, _ = process.recv(psock)
            if tag == process.SYNC_PID:
                pid = int(payload)
                for pfd in z.procs:  # in the cgroups (while it execs pallet-init) before it gets its process
                    os.write(pfd, payload)
                process._t("exec: cgroup joined")
            elif tag == process.SYNC_READY:
                ready = True
            elif tag == process.SYNC_ERROR:
                err = err or payload
            else:
                break
            if err and pid:
                break
            if pid and ready:
                psock.sendmsg([go], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                      b"".join(fd.to_bytes(4, "little") for fd in stdio))], _socket.MSG_NOSIGNAL)
                gone = True  # from here, EOF = it exec'd the command
        while gone and not err:
            tag, payload, _ = process.recv(psock)
            if tag == process.SYNC_ERROR:
                err = payload
            elif tag == b"":
                break
    except TimeoutError:
        err = process.error_payload(Unavailable(f"exec into {cid}: no answer"))
    except OSError as e:
        if gone:  # (after the hand-over: the command may run, it is never started twice)
            err = process.error_payload(e)
        # else a cgroup write or the hand-over failed: it (or the container) is gone; a direct
        # exec (nothing of the command ran) says why, or does it
    finally:
        psock.close()
    if pid and (err or not gone):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    if err:
        process.raise_error(err)
    if not gone:
        return None  # it (or its child) went away before the command was handed over
    return pid, None


_ENTERED: dict[str, Entered] = {}  # by container state dir
_FAILED: set[tuple[Any, ...]] = set()  # containers (state dir, init pid, start time) where it died early


def get(cdir: str, key: tuple[Any, ...]) -> Entered | None:
    """The live process for this container (``key``: its init's pid and start time, its config's
    stat), dropping handles of processes that have gone."""
    for d, e in list(_ENTERED.items()):
        if not e.alive() or (d == cdir and e.key != key):
            e.close()
            del _ENTERED[d]
    return _ENTERED.get(cdir)


def drop(cdir: str, failed: bool = False) -> None:
    e = _ENTERED.pop(cdir, None)
    if e is not None:
        if failed:
            _FAILED.add(e.key)
        e.close()


def wanted(key: tuple[Any, ...]) -> bool:
    return key not in _FAILED


def start(cdir: str, key: tuple[Any, ...], *, init_pid: int, pidns: int, nsfds: list[tuple[str, int]],
          bpf: bytes | None, bounding: int, procs: list[int], keep: float, helper: str | None = None) -> None:
    """Fork the process for this container (not waited for: requests queue on its socket); it
    takes ``procs``. ``helper``: native/pallet-init, for ``exec_native``. Best effort: nothing
    happens when it cannot be made."""
    try:
        initfd = os.pidfd_open(init_pid)
    except OSError:
        for fd in procs:
            os.close(fd)
        return
    mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    parent = os.getpid()
    zbin = binary() if helper else None
    try:
        hsealed = sealed(helper) if helper else -1
        stub = exec_stub()  # (here, on the host: the Python kept process's children exec through it)
        pid = _spawn(zbin, theirs, initfd, parent, pidns, nsfds, bpf, keep, helper) if zbin and helper else os.fork()
    except OSError:
        for so in (mine, theirs):
            so.close()
        for fd in [initfd, *procs]:
            os.close(fd)
        return
    if pid == 0:
        code = 1
        try:
            mine.close()
            _serve(theirs, initfd, parent, pidns, nsfds, bpf, bounding, keep, hsealed, stub)
            code = 0
        except BaseException:  # noqa: B036 - it must never return into the caller
            pass
        os._exit(code)
    theirs.close()
    os.close(initfd)
    old = _ENTERED.pop(cdir, None)
    if old is not None:
        old.close()
    _ENTERED[cdir] = Entered(pid, mine, key, procs, helper is not None, zbin is not None)


def binary() -> str | None:
    """native/pallet-entered (scripts/setup.sh builds it next to the venv's python;
    ``PALLET_ENTERED_BIN`` names another, ``0`` none: the kept process is then a fork of the caller)."""
    return native("pallet-entered", "PALLET_ENTERED_BIN")


def _spawn(zbin: str, sock: _socket.socket, initfd: int, parent: int, pidns: int, nsfds: list[tuple[str, int]],
           bpf: bytes | None, keep: float, helper: str) -> int:
    """Start native/pallet-entered with posix_spawn (no copy of the caller): the same process in
    ~100 KB, whose clones are that small too. Its descriptors are passed by number (made
    inheritable for the spawn only); it closes every other one."""
    hfd = os.dup(sealed(helper))  # (CLOEXEC off on a dup: closed below, after the spawn)
    r = w = -1
    try:
        if bpf is not None:
            r, w = os.pipe2(os.O_CLOEXEC)
            os.write(w, bpf)  # (a filter is well under a pipe's 64 KiB)
            os.close(w)
            w = -1
        ns = [fd for _, fd in nsfds]
        fds = [sock.fileno(), initfd, hfd, r, pidns, *ns]
        for fd in fds:
            if fd >= 0:
                os.set_inheritable(fd, True)
        try:
            return os.posix_spawn(zbin, ["pallet-entered", str(parent), str(sock.fileno()), str(initfd),
                                         str(int(keep * 1000)), str(hfd), str(r), str(pidns), *(str(fd) for fd in ns)],
                                  {})
        finally:
            for fd in fds:
                if fd >= 0:
                    os.set_inheritable(fd, False)
    finally:
        for fd in (hfd, r, w):
            if fd >= 0:
                os.close(fd)


def _serve(sock: _socket.socket, initfd: int, parent: int, pidns: int, nsfds: list[tuple[str, int]],
           bpf: bytes | None, bounding: int, keep: float, hfd: int, stub: int) -> None:
    sc.prctl(sc.PR_SET_DUMPABLE, 0)
    sc.prctl(sc.PR_SET_PDEATHSIG, 9)
    if os.getppid() != parent:
        return
    _signal.set_wakeup_fd(-1)  # the caller's handlers and wake-up pipe are not ours
    for s in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGCHLD):
        _signal.signal(s, _signal.SIG_DFL)
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)  # a caller that gave up: EPIPE (its children reset it)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    keep_fds = sorted({0, 1, 2, sock.fileno(), initfd, pidns, hfd, stub, *(fd for _, fd in nsfds)} - {-1})
    lo = 0
    for fd in keep_fds:  # nothing of the caller's (its clients, listeners, database) stays open here
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)
    if pidns >= 0:
        sc.setns(pidns, sc.CLONE_NEWPID, "pid (for children)")
        os.close(pidns)
    for name, fd in nsfds:  # user first: the rest is permitted by it
        sc.setns(fd, 0, name)
        os.close(fd)
    if bpf is not None:
        sc.seccomp_load(bpf)
    gc.disable()  # no collection walking (and copying) the caller's objects here or in a child
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN)
    poll.register(initfd, select.POLLIN)
    while True:
        events = poll.poll(int(keep * 1000))
        if not events or any(fd == initfd for fd, _ in events):
            return  # idle, or the container's init has exited
        data, anc, _flags, _addr = sock.recvmsg(1 << 16, _socket.CMSG_SPACE(4 * 5))
        fds: list[int] = []
        for level, kind, raw in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw) - len(raw) % 4, 4)]
        if not data:
            return
        req = jsonlite.loads(data, "entered request")
        native = bool(req.get("helper"))
        if len(fds) != (1 if native else 2) + (0 if native or req.get("tty") else 3) or (native and hfd < 0):
            return
        process._t("entered: request")
        pid = sc.clone(sc.CLONE_PARENT)  # single-threaded here: a raw clone is safe
        if pid == 0:
            if native:
                _native_child(fds[0], sock, initfd, hfd)
            _child(req, fds, sock, initfd, bounding, stub)
        process._t("entered: cloned")
        sync = fds[0] if native else fds[-2]
        csock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, sync)
        try:
            process.send(csock, process.SYNC_PID, str(pid).encode())
        finally:
            csock.close()
            for fd in fds:
                if fd != sync:
                    os.close(fd)


def _native_child(sync: int, sock: _socket.socket, initfd: int, hfd: int) -> None:
    """The new process for exec_native (never returns): native/pallet-init on the sync socket."""
    try:
        sock.close()
        os.close(initfd)
        os.set_inheritable(sync, True)
        os.execve(hfd, ["pallet-init", str(sync)], {})
    finally:
        os._exit(1)


def _child(req: dict[str, Any], fds: list[int], sock: _socket.socket, initfd: int, bounding: int,
           stub: int) -> None:
    """The new process (never returns): process.exec_child with the filter already loaded."""
    try:
        sock.close()
        os.close(initfd)
        proc = req["process"]
        stdio = (fds[0], fds[1], fds[2]) if len(fds) == 5 else None
        plan = process.Plan({"process": proc}, "/", "", caps=CapPlan(proc.get("capabilities"), bounding),
                            bpf=None, stdio=stdio, stub=stub)
        csock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, fds[-2])
        process._t("entered: child")
    except BaseException:  # noqa: B036
        os._exit(1)
    process.exec_child(plan, csock, bool(req.get("tty")), fds[-1])
