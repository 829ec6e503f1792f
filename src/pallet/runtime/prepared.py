"""A container set up ahead of its start ("prepared"): cloned into its new namespaces, placed in
its cgroups (limits written), its rootfs mounted, pivot_root done, sysctls, masked and read-only
paths and the hostname in place. It then waits for its process (args, env, cwd, user,
capabilities, rlimits: the spec's ``process``) and its stdio, and goes on with init's last steps
(``process.finalize``, execve).

Why: those steps are most of a start (clone 2-6 ms with the namespaces, the cgroup attach wait,
mounts and pivot_root ~4-8 ms; measured in bench/RESULTS.md "Engine, session 3: run"). A caller
that can guess the next container (the engine's monitor: the id it will give, the options of the
last served run) does them while idle, off the path of the request.

    p = prepared.prepare(cid, bundle, spec, root=..., rootfs_overlay=ov)   # the caller owns p
    prepared.offer(p)        # container.create(cid, ..., start=True) takes it if its spec matches
    p.discard()              # unused: killed and reaped (its cgroup is left to the caller)

Only a spec with nothing shared (no namespace path, no user namespace), no hooks and no terminal
is prepared; ``create`` uses it only when the spec it gets equals the prepared one in every part
that was applied (everything but ``process`` and ``annotations``, plus ``process.terminal``).
A prepared container whose caller dies gets SIGKILL (PR_SET_PDEATHSIG) or EOF and exits.
"""
from __future__ import annotations

import _socket
import os

from pallet.runtime import jsonlite, process, seccomp, state
from pallet.runtime.linux import cgroups, mounts
from pallet.runtime.linux import syscalls as sc
from pallet.runtime.linux.caps import CapPlan, host_bounding
from pallet.runtime.sealed import sealed

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing imports re: not on the run path
    from typing import Any

SYNC_GO = b"G"  # the process JSON, with the three stdio fds
_READY: dict[str, Prepared] = {}


def offer(p: Prepared) -> None:
    """Make ``p`` the one ``create`` of its id takes."""
    _READY[p.cid] = p


def take(cid: str) -> Prepared | None:
    return _READY.pop(cid, None)


def applied(spec: dict[str, Any]) -> dict[str, Any]:
    """The parts of ``spec`` a prepared container has applied before its process is known."""
    out = {k: v for k, v in spec.items() if k not in ("process", "annotations")}
    out["terminal"] = bool((spec.get("process") or {}).get("terminal"))
    return out


def eligible(spec: dict[str, Any]) -> bool:
    linux = spec.get("linux") or {}
    if spec.get("hooks") or (spec.get("process") or {}).get("terminal"):
        return False
    for ns in linux.get("namespaces") or ():
        if ns.get("path") or ns.get("type") == "user" or ns.get("type") not in sc.NAMESPACES:
            return False
    return True


class Prepared:
    def __init__(self, cid: str, bundle: str, spec: dict[str, Any], overlay: str, pid: int,
                 sock: _socket.socket, cg: Any, cgpath: str, rootfs: str, bounding: int, root: str) -> None:
        self.cid, self.bundle, self.spec, self.overlay, self.root = cid, bundle, spec, overlay, root
        self.state_dir = state.container_dir(root, cid)  # made, its files too (``write_state``)
        self.pid, self.sock, self.cg, self.cgpath, self.rootfs = pid, sock, cg, cgpath, rootfs
        self.bounding = bounding
        self._applied = applied(spec)
        self._ready: bool | None = None
        self.used = False  # its process became a container's (create): no longer ours to kill
        self.helper = False  # waiting in native/pallet-init (the message is _encode's), not in Python

    def matches(self, cid: str, bundle: str, spec: dict[str, Any], overlay: mounts.RootfsOverlay | None,
                root: str) -> bool:
        return (cid == self.cid and os.path.abspath(bundle) == self.bundle and overlay is not None and root == self.root
                and overlay.data() == self.overlay and applied(spec) == self._applied)

    def ready(self, timeout: float = 2.0) -> bool:
        """True once it reported its setup done (waits up to ``timeout``); False if it failed."""
        if self._ready is None:
            self.sock.settimeout(timeout)
            try:
                tag, _, _ = process.recv(self.sock)
            except OSError:
                tag = b""
            self._ready = tag == process.SYNC_READY
        return self._ready

    def write_state(self, name: str, obj: Any) -> None:
        """``state.write_json`` into its state dir, into a file made beforehand (creating files
        costs 0.3-1 ms each on this machine's ext4), then renamed into place."""
        fd = os.open(f"{self.state_dir}/{name}.new", os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, jsonlite.dumps(obj).encode())
        finally:
            os.close(fd)
        os.replace(f"{self.state_dir}/{name}.new", f"{self.state_dir}/{name}")

    def go(self, proc: dict[str, Any], stdio: tuple[int, int, int]) -> None:
        """Hand it its process and stdio: it execs (EOF on ``sock``) or reports an error."""
        data = _encode(proc, self.bounding) if self.helper else jsonlite.dumps(proc).encode()
        self.sock.sendmsg([SYNC_GO + data],
                          [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                            b"".join(fd.to_bytes(4, "little") for fd in stdio))])

    def discard(self, reset: bool = False) -> None:
        """Kill and reap it unless used (idempotent); its cgroup stays (the caller's). ``reset``:
        empty the overlay's upper and work dirs too (the mount points it made there), for a
        container started on them the usual way."""
        if self.pid > 0 and not self.used:
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0
        self.sock.close()
        if not self.used:
            state.remove(self.root, self.cid)
        if reset and not self.used:
            for opt in self.overlay.split(","):
                key, _, path = opt.partition("=")
                if key in ("upperdir", "workdir") and os.path.isdir(path):
                    _empty(path)


def _empty(d: str) -> None:
    """Remove what is in ``d``, not following symlinks."""
    with os.scandir(d) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False):
                _empty(e.path)
                os.rmdir(e.path)
            else:
                os.unlink(e.path)


def prepare(cid: str, bundle: str, spec: dict[str, Any], *, root: str, rootfs_overlay: mounts.RootfsOverlay,
            cgroup_manager: str | None = None, seccomp_cache: str | None = None,
            seccomp_early: bool = False, init_helper: str | None = None) -> Prepared:
    """Clone and set up the container of ``spec`` (``eligible``) as far as it goes without its
    process. The child makes its cgroups (with their limits) and joins them itself; the caller
    removes them (``Prepared.cg``) when it discards an unused one. ``root``: the runtime's state root (nothing is written there yet).
    ``seccomp_early``: load the seccomp filter now too (~2 ms of the kernel's filter set-up, off
    the start's path), not just before the capabilities go; the caller vouches that it allows
    what the waiting init does until execve (a Python interpreter's syscalls, dup2, stat, setsid,
    prlimit, prctl, setgroups, setres[ug]id, capset, close_range: Docker's default profile does).
    ``init_helper``: native/pallet-init, which the waiting init execs (when its filter is loaded,
    or it has none) to do the last steps in a small process: its execve of the command then does
    not tear down a copy of the caller's address space (~2 ms for the monitor's)."""
    bundle = os.path.abspath(bundle)
    rootfs = os.path.realpath(os.path.join(bundle, (spec.get("root") or {}).get("path") or "rootfs"))
    linux = spec.get("linux") or {}
    flags, cgroupns = 0, False
    for ns in linux.get("namespaces") or ():
        if ns["type"] == "cgroup":
            cgroupns = True
        else:
            flags |= sc.NAMESPACES[ns["type"]][0]
    cgpath = linux.get("cgroupsPath") or cgroups.default_path(cid)
    cg = cgroups.manager(cgroup_manager, cgpath)  # made (and joined) by the child: its work, not ours
    bounding = host_bounding()
    plan = process.Plan(spec, rootfs, bundle, caps=CapPlan(None, bounding),
                        bpf=seccomp.bpf_for(linux["seccomp"], seccomp_cache) if linux.get("seccomp") else None,
                        overlay=rootfs_overlay, new_cgroupns=cgroupns, cgroup_dirs=cg.mount_dirs())
    helper = init_helper if init_helper and (plan.bpf is None or seccomp_early) else None
    d = state.make_dir(root, cid)  # and its files, for ``write_state``: no state.json, so not listed yet
    for name in ("config.json.new", "state.json.new"):
        os.close(os.open(f"{d}/{name}", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    psock, csock = process.socketpair()
    from pallet.runtime.container import _clone

    try:
        pid = _clone(flags, None)
    except BaseException:
        psock.close()
        csock.close()
        state.remove(root, cid)
        raise
    if pid == 0:
        _child(plan, csock, cg, bounding, seccomp_early, helper)  # never returns
    csock.close()
    p = Prepared(cid, bundle, spec, rootfs_overlay.data(), pid, psock, cg, cgpath, rootfs, bounding, root)
    p.helper = helper is not None
    return p


def _encode(proc: dict[str, Any], bounding: int) -> bytes:
    """The process for native/pallet-init: NUL-terminated fields in its order (version 1)."""
    user = proc.get("user") or {}
    caps = CapPlan(proc.get("capabilities"), bounding)
    groups = [int(g) for g in user.get("additionalGids") or ()]
    rl = []
    for r in proc.get("rlimits") or ():
        kind = process._RLIMITS.get(r.get("type", ""))
        if kind is None:
            from pallet.errors import InvalidArgument

            raise InvalidArgument(f"unknown rlimit {r.get('type')!r}")
        rl += [kind, int(r.get("soft", 0)), int(r.get("hard", 0))]
    args, env = list(proc.get("args") or []), list(proc.get("env") or [])
    f: list[Any] = [1, int(user.get("uid", 0)), int(user.get("gid", 0)), int(user.get("umask", 0o022)),
                    len(groups), *groups, int(caps.keep), caps.bounding, caps.effective, caps.permitted,
                    caps.inheritable, caps.ambient, int(bool(proc.get("noNewPrivileges"))), len(rl) // 3, *rl,
                    proc["oomScoreAdj"] if "oomScoreAdj" in proc else "", proc.get("cwd") or "/",
                    len(args), *args, len(env), *env]
    return b"".join(str(x).encode() + b"\0" for x in f)


def _recv_go(sock: _socket.socket) -> tuple[bytes, bytes, list[int]]:
    data, anc, _flags, _addr = sock.recvmsg(1 << 20, _socket.CMSG_SPACE(3 * 4))
    fds: list[int] = []
    for level, kind, raw in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw) - len(raw) % 4, 4)]
    return data[:1], data[1:], fds


def _child(plan: process.Plan, sock: _socket.socket, cg: Any, bounding: int, seccomp_early: bool,
           helper: str | None) -> None:
    """The prepared container after clone(): never returns."""
    code = 1
    try:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)  # as init(): until execve
        sc.prctl(sc.PR_SET_PDEATHSIG, 9)  # its caller gone before the go: so is it
        keep = sock.fileno()
        # pallet-init from a sealed copy, not the host's file: its /proc/PID/exe is what a command
        # run through /proc/self/exe would reach (runtime.sealed); plan.stub likewise for the
        # Python last steps
        hfd = sealed(helper) if helper else -1
        last = 2
        for fd in sorted({keep, hfd, plan.stub} - {-1}):
            os.closerange(last + 1, fd)  # the caller's descriptors (client sockets, pipes) are not ours
            last = fd
        os.closerange(last + 1, 1 << 16)
        from pallet.runtime.linux import cgroupfs

        cgroupfs.SPARE = ""  # (a pre-made set of the caller's is not ours to take)
        cg.create(plan.linux.get("resources"))  # our own cgroups, with their limits; then we join them
        for path in [p + "/cgroup.procs" for p in cg.mount_dirs().values()]:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        if plan.new_cgroupns:
            sc.unshare(sc.CLONE_NEWCGROUP)
        spec, linux = plan.spec, plan.linux
        mounts.prepare(spec, plan.rootfs, plan.bundle, plan.overlay, False, plan.cgroup_dirs)
        mounts.pivot(plan.rootfs)
        mounts.finish(linux, bool((spec.get("root") or {}).get("readonly")))
        if spec.get("hostname"):
            sc.sethostname(spec["hostname"])
        if spec.get("domainname"):
            sc.setdomainname(spec["domainname"])
        if seccomp_early and plan.bpf is not None:  # (finalize loads none then)
            sc.seccomp_load(plan.bpf)
            plan.bpf = None
        if hfd >= 0:  # it says SYNC_READY itself, then waits for the process
            os.set_inheritable(keep, True)
            os.execve(hfd, ["pallet-init", str(keep)], {})
        process.send(sock, process.SYNC_READY)
        sock.settimeout(None)
        tag, payload, fds = _recv_go(sock)
        if tag != SYNC_GO or len(fds) != 3:
            os._exit(0)  # discarded
        plan.process = jsonlite.loads(payload, "process")
        plan.caps = CapPlan(plan.process.get("capabilities"), bounding)
        plan.stdio = (fds[0], fds[1], fds[2])
        process._dup_stdio(plan.stdio)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        path = process.resolve_command(plan.process.get("args") or [], plan.process.get("env") or [])
        sc.prctl(sc.PR_SET_PDEATHSIG, 0)  # a container outlives its caller from here on
        process._execve(sock, plan, path, None)
    except BaseException as e:
        try:
            process.send(sock, process.SYNC_ERROR, process.error_payload(e))
        except OSError:
            pass
        code = getattr(e, "exit_code", 1)
    os._exit(code if code in (126, 127) else 1)
