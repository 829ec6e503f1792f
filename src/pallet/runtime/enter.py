"""``exec`` into a running container (runtime.md "exec" as runc does it).

One fork: the caller enters the container's pid namespace for its children only (setns
CLONE_NEWPID moves pid_for_children), forks, and goes back, so the new process is in that pid
namespace *and* the caller's child. It joins the other namespaces that differ from ours with
``setns`` (user first, so the rest is permitted) while the caller places it in the container's
cgroups (cgroup.procs opened on the host's cgroupfs before the fork); it waits on a pipe for
that before ``execve``. It gets the container's capabilities, seccomp filter, user, env and cwd
unless ``proc`` overrides them. (Until session 3 a forked helper joined the namespaces and
cloned the process with CLONE_PARENT: a second copy of the caller's address space per exec.)

The container's spec and seccomp BPF are kept per container while its config.json is unchanged,
and the caller's bounding set is read once: a long-lived caller (the engine's monitor) does
neither again on each exec.
"""
from __future__ import annotations

import _socket
import os

from pallet.errors import Conflict, Unavailable
from pallet.runtime import entered, jsonlite, process, seccomp
from pallet.runtime.container import _exit_code
from pallet.runtime.linux import syscalls as sc
from pallet.runtime.linux.caps import CapPlan, host_bounding

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing imports re, collections, functools: not on the run path
    from typing import Any

    from pallet.runtime.container import Container

_EXEC_NS = ("user", "ipc", "uts", "net", "pid", "mnt", "cgroup")  # setns order (user first)


class ExecProcess:
    """A process started by :meth:`Container.exec`: a child of the caller, which must
    ``wait()`` for it (until it is reaped the container's pid namespace cannot finish dying)."""

    def __init__(self, pid: int, console_fd: int | None) -> None:
        self.pid = pid
        self.console_fd = console_fd

    def wait(self) -> int:
        return _exit_code(os.waitpid(self.pid, 0)[1])


def exec_in(self: Container, proc: dict[str, Any], *, stdio: tuple[int, int, int] | None = None,
            tty: bool | None = None, seccomp_cache: str | None = None, keep: float = 0.0,
            helper: str | None = None) -> ExecProcess:
    """Run ``proc`` (runtime-spec ``process`` fields overriding the container's) inside it:
    every namespace, its cgroup, its capabilities, seccomp, user, env and cwd. ``keep`` > 0: the
    caller serves many execs and reaps every child (the engine's monitor): a process entered in
    the container (runtime.entered) is kept that long after the last exec and forks the next;
    ``helper`` (native/pallet-init): with stdio given, that process execs it at once and it does
    the last steps (entered.exec_native)."""
    if self.cgroup.name == "v1":  # the attach's grace period overlaps the set-up below (cgroupfs)
        from pallet.runtime.linux.cgroupfs import prewarm_attach

        prewarm_attach()
    st = self.status()
    if st != "running":
        raise Conflict(f"container {self.id} is {st}: cannot exec")
    spec, bpf, cfg = _prepared(self, seccomp_cache)
    merged = dict(spec.get("process") or {})
    merged.update(proc)
    if tty is not None:
        merged["terminal"] = tty
    key = (self.pid, self._starttime, cfg)
    if keep <= 0 or merged.get("noNewPrivileges") or not (stdio is not None or merged.get("terminal")):
        keep = 0.0
    z = entered.get(self.dir, key) if keep else None
    if z is None and keep and stdio is not None and helper and entered.wanted(key) and entered.binary():
        z = _start_entered(self, key, bpf, keep, helper)  # native: cheap to start, used at once
    if z is not None and (stdio is not None or not z.native):
        if z.helper and stdio is not None:
            native = entered.exec_native(z, self.id, merged, stdio, host_bounding())
            got = None if native is None else ExecProcess(*native)
        else:
            got = _via_entered(self, z, merged, stdio)
        if got is not None:
            return got
        entered.drop(self.dir, failed=z.served <= 1)  # gone before it forked anything: direct, below
    plan = process.Plan(dict(spec, process=merged), "/", self.bundle, bpf=bpf, stdio=stdio,
                        caps=CapPlan(merged.get("capabilities"), host_bounding()))
    pidns, procs = -1, []
    nsfds: list[tuple[str, int]] = []
    try:
        pidns, nsfds = _open_ns(self)
        procs = _open_procs(self)
    except OSError as e:
        _close([pidns] + [fd for _, fd in nsfds] + procs)
        raise Conflict(f"container {self.id} is not running ({e.strerror})") from None
    psock, csock = process.socketpair()
    psock.settimeout(30)
    # "placed in the cgroups": a socket, not a pipe, so the write can be MSG_NOSIGNAL (the caller runs
    # this with SIGPIPE at its default, for the child's sake, and the child may be gone already)
    jw, jsock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    jr = jsock.detach()
    process._t("exec: fork")
    try:
        pid = _fork_in(pidns)
    except BaseException:
        _close([pidns, jr] + [fd for _, fd in nsfds] + procs)
        for so in (psock, csock, jw):
            so.close()
        raise
    if pid == 0:  # the new process: in the pid namespace already; the others, then the command
        try:
            sc.prctl(sc.PR_SET_DUMPABLE, 0)  # at once: it is visible in the container's pid ns (process.init)
            psock.close()
            jw.close()
            for name, nsfd in nsfds:  # user first: the rest is permitted by it
                sc.setns(nsfd, 0, f"{name} of {self.id}")
            process._t("exec: joined namespaces")
        except BaseException as e:  # noqa: B036 - the child must never return
            try:
                process.send(csock, process.SYNC_ERROR, process.error_payload(e))
            finally:
                os._exit(1)
        process.exec_child(plan, csock, bool(merged.get("terminal")), jr)  # never returns
    os.close(jr)
    csock.close()
    kept = bool(keep) and entered.wanted(key) and entered.get(self.dir, key) is None  # start one for the next exec
    # the cgroup attach (an RCU grace period on v1) overlaps the child's set-up; the cgroup.procs
    # descriptors go on to the kept process, if one is started
    joined = _place(pid, procs, jw, close=not kept)
    if kept:
        _entered_start(self, key, pidns, nsfds, bpf, keep, helper, procs)
    else:
        _close([pidns] + [fd for _, fd in nsfds])
    got = _settle(self, psock, pid, joined)
    assert got is not None  # (None only for a kept process's exec that never forked)
    return got


def _entered_start(self: Container, key: tuple[Any, ...], pidns: int, nsfds: list[tuple[str, int]],
                   bpf: bytes | None, keep: float, helper: str | None, procs: list[int]) -> None:
    """Start the kept process (runtime.entered) with these namespace descriptors, which this
    closes, and cgroup.procs descriptors, which it takes; best effort (an exec without one is a
    direct exec)."""
    try:
        entered.start(self.dir, key, init_pid=self.pid, pidns=pidns, nsfds=nsfds, bpf=bpf,
                      bounding=host_bounding(), procs=procs, keep=keep, helper=helper)
    except OSError:
        pass
    finally:
        _close([pidns] + [fd for _, fd in nsfds])


def _open_ns(self: Container) -> tuple[int, list[tuple[str, int]]]:
    """The container's namespaces that differ from ours: (its pid namespace or -1, the others in
    setns order). Nothing is left open when it raises."""
    pidns, nsfds = -1, []
    try:
        for ns in _EXEC_NS:
            target = f"/proc/{self.pid}/ns/{ns}"
            if os.stat(target).st_ino != os.stat(f"/proc/self/ns/{ns}").st_ino:
                fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
                if ns == "pid":
                    pidns = fd
                else:
                    nsfds.append((ns, fd))
    except OSError:
        _close([pidns] + [fd for _, fd in nsfds])
        raise
    return pidns, nsfds


def _start_entered(self: Container, key: tuple[Any, ...], bpf: bytes | None, keep: float,
                   helper: str) -> entered.Entered | None:
    """Start the kept process now (native/pallet-entered: a spawn, no copy of us), for this exec."""
    try:
        pidns, nsfds = _open_ns(self)
    except OSError:
        return None  # (the direct exec says why)
    try:
        procs = _open_procs(self)
    except OSError:
        _close([pidns] + [fd for _, fd in nsfds])
        return None
    _entered_start(self, key, pidns, nsfds, bpf, keep, helper, procs)
    return entered.get(self.dir, key)


def _via_entered(self: Container, z: entered.Entered, merged: dict[str, Any],
                 stdio: tuple[int, int, int] | None) -> ExecProcess | None:
    """The exec through the kept process; None when it had gone (nothing was started)."""
    psock, csock = process.socketpair()
    psock.settimeout(30)
    jw, jsock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    process._t("exec: entered")
    try:
        sent = z.request({"process": merged, "tty": bool(merged.get("terminal"))},
                         [*(stdio or ()), csock.fileno(), jsock.fileno()])
    finally:
        csock.close()
        jsock.close()
    if not sent:
        psock.close()
        jw.close()
        return None
    z.served += 1
    return _settle(self, psock, 0, None, z.procs, jw)


def _open_procs(self: Container) -> list[int]:
    """The container's cgroup.procs files, opened on the host's cgroupfs (a process in the
    container's mount namespace cannot see them)."""
    procs: list[int] = []
    try:
        for p in self.cgroup.paths.values():
            procs.append(os.open(p + "/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
    except OSError:
        _close(procs)
        raise
    return procs


def _place(pid: int, procs: list[int], jw: _socket.socket, close: bool = True) -> OSError | None:
    """Place ``pid`` in the cgroups, then tell it (EOF without the byte: it gives up)."""
    try:
        for pfd in procs:
            os.write(pfd, str(pid).encode())
        jw.send(b"1", _socket.MSG_NOSIGNAL)
        process._t("exec: cgroup joined")
        return None
    except OSError as e:  # (the child failed first: its own error follows on the sync socket)
        return e
    finally:
        jw.close()
        if close:
            _close(procs)


def _settle(self: Container, psock: Any, pid: int, joined: OSError | None,
            procs: list[int] | None = None, jw: _socket.socket | None = None) -> ExecProcess | None:
    """Read the sync socket until the new process has exec'd (EOF); PID (from a kept process:
    then placed in the cgroups here), READY (+ the pty master), ERROR. Raises its error (the
    process killed and reaped); None: the kept process went away before it forked anything."""
    fd: int | None = None
    err = b""
    try:
        while True:
            tag, payload, got = process.recv(psock)
            if tag == process.SYNC_PID and not pid:
                pid = int(payload)
                if not err and procs is not None and jw is not None:
                    joined = _place(pid, procs, jw, close=False)
            elif tag == process.SYNC_READY:
                fd = got
            elif tag == process.SYNC_ERROR:
                err = err or payload
            elif tag == b"":
                break
            if err and pid:
                break
    except TimeoutError:
        err = process.error_payload(Unavailable(f"exec into {self.id}: no answer"))
    finally:
        psock.close()
        if jw is not None:
            jw.close()
    if not pid and not err:
        return None
    if joined is not None and not err:
        err = process.error_payload(joined)
    if err:
        if pid:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        if fd is not None:
            os.close(fd)
        process.raise_error(err)
    return ExecProcess(pid, fd)


def _fork_in(pidns: int) -> int:
    """fork(), the child in the pid namespace ``pidns`` (-1: ours). setns(CLONE_NEWPID) only
    moves the caller's future children (pid_for_children), so this thread enters it for the
    fork and goes back to its own active namespace right after (always allowed). os.fork, not a
    raw clone: the caller may have other threads (glibc and Python make fork safe for them)."""
    if pidns < 0:
        return os.fork()
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(pidns, sc.CLONE_NEWPID, "pid (for the exec'd process)")
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:
                sc.setns(own, sc.CLONE_NEWPID, "pid (back to ours)")
        return pid
    finally:
        os.close(own)


def _close(fds: list[int]) -> None:
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


_PREPARED: dict[str, tuple[tuple[int, int, int], dict[str, Any], bytes | None]] = {}


def _prepared(self: Container, seccomp_cache: str | None) -> tuple[dict[str, Any], bytes | None, tuple[int, int, int]]:
    """The container's spec and seccomp BPF, kept while its config.json is unchanged (same inode,
    size and mtime): a process serving many execs (the engine's monitor) parses neither again."""
    path = self.dir + "/config.json"
    st = os.stat(path)
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _PREPARED.get(path)
    if hit is not None and hit[0] == key and seccomp_cache is None:
        return hit[1], hit[2], key
    spec = jsonlite.load_file(path)
    linux = spec.get("linux") or {}
    bpf = seccomp.bpf_for(linux["seccomp"], seccomp_cache) if linux.get("seccomp") else None
    if seccomp_cache is None:
        if len(_PREPARED) >= 64:
            _PREPARED.clear()
        _PREPARED[path] = (key, spec, bpf)
    return spec, bpf, key
