"""The container's first process: a straight setup path with numbered sync steps.

Parent and child talk over an AF_UNIX SOCK_SEQPACKET socketpair (crun/runc style). Everything
costly (cgroup directories, seccomp BPF, capability masks) is computed in the parent before the
fork; the child only performs syscalls with modules that are already imported, because after
``pivot_root`` the host's stdlib is out of reach.

Steps of ``init`` (parent <-> child):

1. parent calls ``clone()`` with the namespace flags (the child is pid 1 of its pid namespace
   and our direct child); with a user namespace the child waits on the socket;
2. with a user namespace, parent writes uid/gid maps and sends ``SYNC_GO`` (without one the
   child does not wait); then the parent writes the cgroup limits, places the pid in the
   cgroups (on cgroup v1 an attach waits for an RCU grace period, 10-20 ms here: it overlaps
   with the child's mounts and pivot_root), runs prestart/createRuntime hooks and sends
   ``SYNC_CGROUP`` (with the state JSON when there are hooks);
3. child: joins namespaces given by path, builds the rootfs (the cgroup mount binds the
   container's cgroup directories), console, ``pivot_root``, masked/read-only paths, hostname,
   resolves the command; waits for ``SYNC_CGROUP`` (before ``pivot_root`` when there are
   createContainer hooks), unshares the cgroup namespace (its root is now the container's
   cgroup), sends ``SYNC_READY`` (with the console master fd; skipped
   by ``run`` without a terminal: one wake-up less) or ``SYNC_ERROR``; the parent writes the
   state files meanwhile;
4. child waits to be started: by the exec fifo (``create`` then ``start`` from any process,
   like runc's exec.fifo) or immediately (``run``);
5. child: startContainer hooks, new session, stdio/tty, rlimits, cwd, seccomp (before the caps
   drop unless noNewPrivileges), bounding set, ids, capsets, ambient, noNewPrivileges +
   seccomp, umask, default signal dispositions, every other fd close-on-exec, ``execve``. The socket is
   close-on-exec: EOF tells the parent the exec worked; an exec failure is sent as
   ``SYNC_ERROR`` (not found -> 127, not executable -> 126).

``Container.exec`` runs a process in a running container: a forked helper opens the
container's cgroup.procs files, joins the namespaces (``setns``), then calls ``clone(CLONE_PARENT)``
so the new process is in the container's pid namespace *and* a child of the caller; the helper
places it in the cgroups while it sets up (it waits on a pipe before exec) and exits.
Step 5 is shared with ``init``.
"""
from __future__ import annotations

import _signal
import _socket
import os
import resource  # rlimits; imported here because the child cannot import after pivot_root/setns
import stat

from pallet import errors
from pallet.runtime import jsonlite, sealed
from pallet.runtime.linux import mounts
from pallet.runtime.linux import syscalls as sc
from pallet.runtime.linux.caps import CapPlan

_TRACE = bool(os.environ.get("PALLET_RUNTIME_TRACE"))  # step timings on stderr (diagnosis)
SYNC_GO = b"1"
SYNC_CGROUP = b"C"
SYNC_READY = b"2"
SYNC_ERROR = b"E"
SYNC_PID = b"P"
_RLIMITS = {"RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
            "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
            "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
            "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15}


def socketpair() -> tuple[_socket.socket, _socket.socket]:
    return _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)  # type: ignore[no-any-return]


def send(sock: _socket.socket, tag: bytes, payload: bytes = b"", fd: int | None = None) -> None:
    anc = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, "little"))] if fd is not None else []
    sock.sendmsg([tag + payload], anc)


def recv(sock: _socket.socket) -> tuple[bytes, bytes, int | None]:
    """(tag, payload, fd or None); tag b"" means the peer closed (exec happened)."""
    for _ in range(3):
        try:
            data, anc, _flags, _addr = sock.recvmsg(65536, _socket.CMSG_SPACE(4))
            break
        except ConnectionResetError:
            # the peer exited with a message of ours unread: the kernel reports ECONNRESET once,
            # then hands out what the peer queued before it went (its error report)
            continue
    else:
        return b"", b"", None
    fd = None
    for level, kind, raw in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(raw) >= 4:
            fd = int.from_bytes(raw[:4], "little")
    return data[:1], data[1:], fd


def error_payload(e: BaseException) -> bytes:
    d: dict = {"type": type(e).__name__, "msg": str(e)}
    if isinstance(e, errors.OSFailure):
        d.update(errno=e.errno, syscall=e.syscall, obj=e.obj)
    elif isinstance(e, OSError):
        d.update(type="OSFailure", errno=e.errno or 0, syscall=e.strerror or "os", obj=e.filename or "")
    return jsonlite.dumps(d).encode()


def raise_error(payload: bytes) -> None:
    """Re-raise, in the parent, an error the child reported."""
    d = jsonlite.loads(payload, "sync error")
    if d.get("type") == "OSFailure":
        raise errors.OSFailure(d.get("errno", 0), d.get("syscall", "?"), d.get("obj", ""))
    cls = getattr(errors, d.get("type", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.PalletError)):
        cls = errors.PalletError
    raise cls(d.get("msg", "container init failed"))


def resolve_command(args: list[str], env: list[str]) -> str:
    """PATH lookup inside the container (we are already in its root)."""
    if not args:
        raise errors.InvalidArgument("process.args is empty")
    name = args[0]
    if "/" in name:
        cands = [name]
    else:
        path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/local/bin:/usr/bin:/bin")
        cands = [(d or ".") + "/" + name for d in path.split(":")]
    seen_noexec = ""
    for c in cands:
        try:
            st = os.stat(c)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(c, os.X_OK):
            return c
        seen_noexec = seen_noexec or c
    if seen_noexec:
        raise errors.CommandNotExecutable(f"{name}: permission denied (not an executable file: {seen_noexec})")
    raise errors.CommandNotFound(f"{name}: executable file not found in $PATH")


class Plan:
    """Everything the child needs, prepared by the parent (the child gets it by fork's copy)."""

    def __init__(self, spec: dict, rootfs: str, bundle: str, *, caps: CapPlan, bpf: bytes | None,
                 overlay: mounts.RootfsOverlay | None = None, fifo: str | None = None,
                 stdio: tuple[int, int, int] | None = None, userns: bool = False,
                 join: list[tuple[str, str]] | None = None, new_cgroupns: bool = False,
                 cgroup_dirs: dict[str, str] | None = None, preserve_fds: int = 0, stub: int | None = None) -> None:
        self.spec = spec
        self.process = spec.get("process") or {}
        self.linux = spec.get("linux") or {}
        self.rootfs = rootfs
        self.bundle = bundle
        self.caps = caps
        self.bpf = bpf
        self.overlay = overlay
        self.fifo = fifo
        self.stdio = stdio
        self.userns = userns
        self.join = join or []  # (ns type, path) to setns before building the rootfs
        self.new_cgroupns = new_cgroupns
        self.cgroup_dirs = cgroup_dirs or {}
        self.hooks = spec.get("hooks") or None
        self.preserve_fds = preserve_fds
        # the last execve goes through it (runtime.sealed: CVE-2019-5736); made on the host, so a
        # Plan built inside a container is given the caller's (``stub``)
        self.stub = sealed.exec_stub() if stub is None else stub


def _t(label: str) -> None:
    if _TRACE:
        import time

        os.write(2, f"pallet-runtime trace {time.monotonic() * 1000:.2f} {label}\n".encode())


def _dup_stdio(stdio: tuple[int, int, int] | None) -> None:
    if stdio:
        for i, fd in enumerate(stdio):
            if fd != i:
                os.dup2(fd, i, inheritable=True)


def _rlimits(proc: dict) -> None:
    for r in proc.get("rlimits") or ():
        kind = _RLIMITS.get(r.get("type", ""))
        if kind is None:
            raise errors.InvalidArgument(f"unknown rlimit {r.get('type')!r}")
        _soft, cur_hard = resource.getrlimit(kind)
        hard = int(r.get("hard", 0))
        if cur_hard != resource.RLIM_INFINITY and (hard < 0 or hard > cur_hard):
            hard = cur_hard  # no CAP_SYS_RESOURCE: never above the current hard limit
        soft = min(int(r.get("soft", 0)), hard) if hard >= 0 else int(r.get("soft", 0))
        resource.setrlimit(kind, (soft, hard))


def finalize(plan: Plan, console_slave: int | None) -> dict[str, str]:
    """Step 5 up to execve (shared by init and exec); returns the environment."""
    proc = plan.process
    os.setsid()  # its own session and process group, as runc gives both init and exec
    if console_slave is not None:
        for i in range(3):
            os.dup2(console_slave, i, inheritable=True)
        sc.ioctl_int(0, sc.TIOCSCTTY, 0)
    _rlimits(proc)
    if "oomScoreAdj" in proc:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc["oomScoreAdj"]))
    cwd = proc.get("cwd") or "/"
    os.makedirs(cwd, exist_ok=True)
    os.chdir(cwd)
    nnp = bool(proc.get("noNewPrivileges"))
    if plan.bpf is not None and not nnp:
        sc.seccomp_load(plan.bpf)  # needs CAP_SYS_ADMIN, which is about to go
    plan.caps.drop_bounding()
    user = proc.get("user") or {}
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    os.setgroups([int(g) for g in user.get("additionalGids") or ()])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    plan.caps.apply()
    if nnp:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
        if plan.bpf is not None:
            sc.seccomp_load(plan.bpf)
    os.umask(int(user.get("umask", 0o022)))  # runc's default when the spec has none
    env = {}
    for e in proc.get("env") or ():
        k, _, v = e.partition("=")
        env[k] = v
    if "HOME" not in env:  # as runc: the user's home from the container's /etc/passwd, else /
        env["HOME"] = _home(uid)
    return env


def _home(uid: int) -> str:
    try:
        with open("/etc/passwd", "rb") as f:
            for line in f.read().decode(errors="replace").splitlines():
                parts = line.split(":")
                if len(parts) > 5 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def _default_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across execve:
    give the container's program default dispositions and an empty mask, as runc does."""
    for sig in range(1, _signal.NSIG):
        if sig in (13, 25) or _signal.getsignal(sig) is _signal.SIG_IGN:
            try:
                _signal.signal(sig, _signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def _execve(sock: _socket.socket, plan: Plan, path: str, slave: int | None) -> None:
    env = finalize(plan, slave)
    _default_signals()
    sc.cloexec_from(3 + plan.preserve_fds)  # runc closes the rest too; LISTEN_FDS-style fds stay
    _t("execve")
    if plan.stub >= 0:
        # /proc/self/exe of whatever execs the command is then the sealed copy, never a host file;
        # it reports a failed execve on the sync socket as _exec_failed does. By /proc/self/fd
        # (execve) rather than fexecve (execveat), which a seccomp profile may not allow.
        os.set_inheritable(sock.fileno(), True)
        argv = ["pallet-exec", str(sock.fileno()), path, *plan.process["args"]]
        for how in (f"/proc/self/fd/{plan.stub}", plan.stub):
            try:
                os.execve(how, argv, env)
            except OSError:
                pass
        os.set_inheritable(sock.fileno(), False)
    try:
        os.execve(path, plan.process["args"], env)
    except OSError as e:
        _exec_failed(sock, e, plan.process["args"][0])


def _exec_failed(sock: _socket.socket, e: OSError, name: str) -> None:
    err: errors.PalletError
    if e.errno in (2, 20):  # ENOENT (also a missing interpreter), ENOTDIR
        err = errors.CommandNotFound(f"{name}: no such file or directory")
    else:
        err = errors.CommandNotExecutable(f"{name}: {os.strerror(e.errno or 13).lower()}")
    try:
        send(sock, SYNC_ERROR, error_payload(err))
    except OSError:
        pass
    os._exit(err.exit_code)


def _joined(sock: _socket.socket, plan: Plan) -> bytes:
    """Wait until the parent has placed us in the cgroups; then the cgroup namespace (its root is
    the container's cgroup). Returns the state JSON the parent sent along (for hooks)."""
    tag, state_json, _ = recv(sock)
    if tag != SYNC_CGROUP:
        os._exit(1)
    _t("cgroup")
    if plan.new_cgroupns:
        sc.unshare(sc.CLONE_NEWCGROUP)
    return state_json


def init(plan: Plan, sock: _socket.socket) -> None:
    """The child after clone(): never returns."""
    code = 1
    try:
        # not dumpable until execve: no process of the container can open our /proc/PID/exe
        # (the host's python) or fds (CVE-2019-5736's way in); execve makes it dumpable again
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        if plan.hooks:  # loaded now (after pivot_root the host's files are out of reach)
            import pallet.runtime.hooks  # noqa: F401
        if plan.userns:  # step 2: the parent writes our uid/gid maps first
            tag, _, _ = recv(sock)
            if tag != SYNC_GO:
                os._exit(1)
        _t("go")
        _dup_stdio(plan.stdio)
        if plan.userns:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        for nstype, path in plan.join:  # namespaces shared with another container
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            sc.setns(fd, 0, f"{nstype} {path}")
            os.close(fd)
        spec, linux = plan.spec, plan.linux
        fifo_fd = os.open(plan.fifo, os.O_PATH | os.O_CLOEXEC) if plan.fifo else -1
        master = slave = None
        if plan.rootfs != "/":
            mounts.prepare(spec, plan.rootfs, plan.bundle, plan.overlay, plan.userns, plan.cgroup_dirs)
            _t("mounts")
            if plan.process.get("terminal"):
                master, slave = mounts.open_console(plan.rootfs)
                _winsize(master, plan.process)
        state_json = b""
        if plan.hooks:  # createContainer hooks need the state, before pivot_root
            state_json = _joined(sock, plan)
            from pallet.runtime import hooks

            hooks.run_all(plan.hooks, "createContainer", state_json)
        if plan.rootfs != "/":
            mounts.pivot(plan.rootfs)
            _t("pivot")
        mounts.finish(linux, bool((spec.get("root") or {}).get("readonly")))
        _t("masked+readonly")
        if spec.get("hostname"):
            sc.sethostname(spec["hostname"])
        if spec.get("domainname"):
            sc.setdomainname(spec["domainname"])
        path = resolve_command(plan.process.get("args") or [], plan.process.get("env") or [])
        if not plan.hooks:  # as late as possible: the parent's cgroup attach ran all along
            state_json = _joined(sock, plan)
        if plan.fifo or master is not None:  # step 3 (`run` without a tty: only EOF/error)
            send(sock, SYNC_READY, b"", master)
        if master is not None:
            os.close(master)
        if fifo_fd >= 0:  # step 4: blocks until `start` opens the fifo for reading
            w = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
            os.write(w, b"0")
            os.close(w)
            os.close(fifo_fd)
        if plan.hooks:
            from pallet.runtime import hooks

            hooks.run_all(plan.hooks, "startContainer", state_json)
        _execve(sock, plan, path, slave)
    except BaseException as e:
        try:
            send(sock, SYNC_ERROR, error_payload(e))
        except OSError:
            pass
        code = getattr(e, "exit_code", 1)
    os._exit(code if code in (126, 127) else 1)


def exec_child(plan: Plan, sock: _socket.socket, tty: bool, joined: int = -1) -> None:
    """The exec'd process, already in the container's namespaces: never returns. ``joined`` is
    a pipe the helper writes once it has placed us in the container's cgroups (meanwhile we
    set up); EOF without a byte means it failed."""
    code = 1
    try:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)  # see init()
        _dup_stdio(plan.stdio)
        master = slave = None
        if tty:
            master, slave = _exec_pty()
            _winsize(master, plan.process)
        path = resolve_command(plan.process.get("args") or [], plan.process.get("env") or [])
        if joined >= 0:
            if os.read(joined, 1) != b"1":
                os._exit(1)
            os.close(joined)
        send(sock, SYNC_READY, b"", master)
        if master is not None:
            os.close(master)
        _execve(sock, plan, path, slave)
    except BaseException as e:
        try:
            send(sock, SYNC_ERROR, error_payload(e))
        except OSError:
            pass
        code = getattr(e, "exit_code", 1)
    os._exit(code if code in (126, 127) else 1)


def _winsize(master: int, proc: dict) -> None:
    cs = proc.get("consoleSize")
    if cs:
        sc.set_winsize(master, int(cs.get("height", 24)), int(cs.get("width", 80)))


def _exec_pty() -> tuple[int, int]:
    ptmx = "/dev/pts/ptmx" if os.path.exists("/dev/pts/ptmx") else "/dev/ptmx"
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    sc.ioctl_ptr(master, sc.TIOCSPTLCK, 0)
    n = sc.ioctl_ptr(master, sc.TIOCGPTN)
    slave = os.open(f"/dev/pts/{n}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, slave
