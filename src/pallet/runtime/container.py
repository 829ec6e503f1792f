"""The runtime's library API: one OCI container, from a bundle, in-process.

    from pallet.runtime import container as rt
    c = rt.create("web1", "/path/to/bundle")             # spec read from bundle/config.json
    c = rt.create("web1", bundle, spec=spec_dict, stdio=(0, 1, 2), start=True,
                  rootfs_overlay=RootfsOverlay([lower...], upper, work))
    c.start()                         # only when created with start=False (exec.fifo)
    code, oom_killed = c.wait()       # only in the process that called create()
    c.kill(15); c.pause(); c.resume(); c.stats(); c.state()
    p = c.exec({"args": ["sh"], "env": [...], "cwd": "/"}, tty=True); p.console_fd; p.wait()
    c.delete(force=True)              # kills, removes the cgroup and the state dir
    rt.load("web1", root=...)         # a handle from the state dir (any process)

``create`` clones the container from the calling thread with a raw ``clone(2)``; when the
process has other threads it goes through a forked single-threaded helper that clones
with ``CLONE_PARENT`` (glibc's fork handlers keep malloc safe), so the container is still our
child. ``spec.process.terminal`` gives ``Container.console_fd`` (the pty master; the
slave is the container's /dev/console and stdio). ``stdio`` fds are dup'ed onto 0, 1, 2.
A failed ``create`` leaves nothing behind (process, cgroup, state dir). Errors: the command not
found -> CommandNotFound (127), not executable -> CommandNotExecutable (126), kernel calls ->
OSFailure, bad spec -> InvalidArgument, wrong state -> Conflict, unknown id -> NotFound.
"""
from __future__ import annotations

import os
import time

from pallet.errors import Conflict, InvalidArgument, NotFound, OSFailure, PalletError, Unavailable
from pallet.runtime import jsonlite, prepared, process, seccomp, state
from pallet.runtime.linux import cgroups
from pallet.runtime.linux import syscalls as sc
from pallet.runtime.linux.caps import CapPlan, host_bounding
from pallet.runtime.linux.mounts import RootfsOverlay

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing imports re, collections, functools: not on the run path
    from typing import Any

    from pallet.runtime.enter import ExecProcess

# imported when used: exec (enter), hooks, select (start) are off the `run` path


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _raise_child_error(sock: Any) -> None:
    """After a failed write to the child: raise the error it queued, if any (the caller's
    cleanup reaps the child)."""
    try:
        tag, payload, _ = process.recv(sock)
    except OSError:
        return
    if tag == process.SYNC_ERROR:
        process.raise_error(payload)


def _clone(flags: int, pid_path: str | None) -> int:
    """clone(); with a pid namespace given by path, our pid_for_children points there for the
    clone and back right after (setns to our own active pid namespace is always allowed)."""
    if pid_path is None:
        return sc.clone(flags) if sc.threads() == 1 else sc.clone_via_helper(flags)
    target = os.open(pid_path, os.O_RDONLY | os.O_CLOEXEC)
    if sc.threads() != 1:  # the helper enters it (entered here, the helper would be created in it)
        try:
            return sc.clone_via_helper(flags & ~sc.CLONE_NEWPID, pid_ns=target)
        finally:
            os.close(target)
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    pid = -1
    try:
        sc.setns(target, sc.CLONE_NEWPID, f"pid {pid_path}")
        try:
            pid = sc.clone(flags & ~sc.CLONE_NEWPID)
        finally:
            if pid != 0:  # the parent (or a failed clone) goes back to its own namespace
                sc.setns(own, sc.CLONE_NEWPID, "pid (back to ours)")
        return pid
    finally:
        os.close(target)
        os.close(own)


def _oci_state(st: dict) -> str:
    return jsonlite.dumps({k: v for k, v in st.items() if k != "pallet"})


def _write_maps(pid: int, linux: dict) -> None:
    for kind in ("uid", "gid"):
        maps = linux.get(f"{kind}Mappings") or []
        if not maps:
            raise InvalidArgument(f"a user namespace needs linux.{kind}Mappings")
        text = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)
        with open(f"/proc/{pid}/{kind}_map", "w") as f:
            f.write(text)


class Container:
    def __init__(self, root: str, st: dict[str, Any]) -> None:
        self.root = root
        self.id: str = st["id"]
        self.pid: int = st["pid"]
        self.bundle: str = st["bundle"]
        self.annotations: dict = st.get("annotations") or {}
        priv = st.get("pallet") or {}
        self._starttime: int | None = priv.get("starttime")
        cg = priv.get("cgroup") or {}
        self.cgroup = cgroups.manager(cg.get("manager"), cg.get("path") or cgroups.default_path(self.id))
        self.dir = state.container_dir(root, self.id)
        self._hooks: dict | None = priv.get("hooks")
        self.console_fd: int | None = None
        self._sock: Any = None
        self._reaped: tuple[int, bool] | None = None

    # -- state ---------------------------------------------------------------------------
    def status(self) -> str:
        if self._reaped is not None or not state.alive(self.pid, self._starttime):
            return "stopped"
        if os.path.exists(self.dir + "/exec.fifo"):
            return "created"
        return "paused" if self.cgroup.frozen() else "running"

    def state(self) -> dict[str, Any]:
        """The runtime-spec state object (runtime.md "State")."""
        st = self.status()
        return {"ociVersion": state.OCI_VERSION, "id": self.id, "status": st,
                "pid": self.pid if st != "stopped" else 0, "bundle": self.bundle,
                "annotations": self.annotations}

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Release a created container (opens its exec.fifo like ``runc start``)."""
        if self.status() != "created":
            raise Conflict(f"container {self.id} is {self.status()}, not created: cannot start")
        fifo = self.dir + "/exec.fifo"
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if os.read(fd, 1):
                        break
                    time.sleep(0.001)  # EOF: the init has not opened its end yet (no busy loop)
                except BlockingIOError:  # opened, byte not written yet
                    import select

                    select.select([fd], [], [], 0.01)
                if not state.alive(self.pid, self._starttime):
                    raise Conflict(f"container {self.id} exited before it was started")
                if time.monotonic() > deadline:
                    raise Unavailable(f"container {self.id} did not start within {timeout:.0f} s")
        finally:
            os.close(fd)
            try:
                os.unlink(fifo)
            except FileNotFoundError:
                pass
        if self._sock is not None:
            self._wait_exec()
        self._hook("poststart")

    def _hook(self, kind: str) -> None:
        if self._hooks and self._hooks.get(kind):
            from pallet.runtime import hooks

            st = dict(self.state(), status="stopped" if kind == "poststop" else "running")
            hooks.run_all(self._hooks, kind, jsonlite.dumps(st).encode())

    def _wait_exec(self) -> None:
        """After the start: EOF on the sync socket = execve happened; else its error."""
        try:
            tag, payload, _ = process.recv(self._sock)
        except TimeoutError:
            raise Unavailable(f"container {self.id}: no answer from its init") from None
        finally:
            self._sock.close()
            self._sock = None
        if tag == process.SYNC_ERROR:
            self._reap()
            process.raise_error(payload)

    def _reap(self, block: bool = True) -> tuple[int, bool] | None:
        if self._reaped is None:
            try:
                pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                return None
            self._reaped = (_exit_code(status), self.cgroup.oom_killed())
        return self._reaped

    def wait(self) -> tuple[int, bool]:
        """(exit code, OOM-killed) of the init; the caller must be the process that created it."""
        r = self._reap(True)
        if r is None:
            raise Conflict(f"container {self.id}: only its creator can wait for it")
        return r

    def kill(self, sig: int = 15, all_processes: bool = False) -> None:
        st = self.status()
        if st == "stopped":
            raise Conflict(f"container {self.id} is not running")
        pids = self.cgroup.pids() if all_processes else [self.pid]
        for p in pids or [self.pid]:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    def pause(self) -> None:
        if self.status() != "running":
            raise Conflict(f"container {self.id} is {self.status()}: cannot pause")
        self.cgroup.freeze()

    def resume(self) -> None:
        if self.status() != "paused":
            raise Conflict(f"container {self.id} is not paused")
        self.cgroup.thaw()

    def stats(self) -> dict[str, Any]:
        return self.cgroup.stats()

    def delete(self, force: bool = False, timeout: float = 10.0) -> None:
        """Remove a stopped (or created) container; ``force`` kills a running one first."""
        st = self.status()
        if st in ("running", "paused") and not force:
            raise Conflict(f"container {self.id} is {st}: stop it first or force the delete")
        if st != "stopped":
            if st == "paused":
                self.cgroup.thaw()
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while state.alive(self.pid, self._starttime) and self._reap(False) is None:
                if time.monotonic() > deadline:
                    raise Unavailable(f"container {self.id}: pid {self.pid} did not die")
                time.sleep(0.002)
        self._reap(False)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.console_fd is not None:
            os.close(self.console_fd)
            self.console_fd = None
        self.cgroup.destroy()
        state.remove(self.root, self.id)
        self._hook("poststop")

    # -- exec ----------------------------------------------------------------------------
    def exec(self, proc: dict[str, Any], *, stdio: tuple[int, int, int] | None = None,
             tty: bool | None = None, seccomp_cache: str | None = None, keep: float = 0.0,
             helper: str | None = None) -> ExecProcess:
        """Run ``proc`` (runtime-spec ``process`` fields overriding the container's) inside it:
        every namespace, its cgroup, its capabilities, seccomp, user, env and cwd (``enter``;
        ``keep``, ``helper``: see enter.exec_in)."""
        from pallet.runtime.enter import exec_in

        return exec_in(self, proc, stdio=stdio, tty=tty, seccomp_cache=seccomp_cache, keep=keep, helper=helper)


def load(cid: str, root: str = state.DEFAULT_ROOT) -> Container:
    return Container(root, state.read(root, cid))


def _from_prepared(p: prepared.Prepared, root: str, cid: str, spec: dict[str, Any],
                   stdio: tuple[int, int, int]) -> Container:
    """``create`` by a prepared container: its process and stdio, the state files, the exec."""
    c: Container | None = None
    try:
        process._t("prepared go")
        p.sock.settimeout(60.0)
        try:
            p.go(spec.get("process") or {}, stdio)
        except (BrokenPipeError, ConnectionResetError) as e:
            _raise_child_error(p.sock)
            raise OSFailure.from_oserror(e, "sync", f"container {cid}") from None
        ps = state.proc_stat(p.pid)  # written while it finishes its setup
        priv = {"starttime": ps[1] if ps else None, "cgroup": {"manager": p.cg.name, "path": p.cgpath},
                "created": time.time(), "rootfs": p.rootfs}
        st = {"ociVersion": state.OCI_VERSION, "id": cid, "status": "created", "pid": p.pid, "bundle": p.bundle,
              "annotations": spec.get("annotations") or {}, "pallet": priv}
        p.write_state("config.json", spec)
        p.write_state("state.json", st)
        c = Container(root, st)
        c._sock = p.sock
        c._wait_exec()
        p.used = True
        process._t("exec'd")
        return c
    except BaseException:
        if c is not None and c._reaped is not None:
            p.pid = 0  # reaped: the pid may be someone else's now
        p.discard()  # (its state too)
        p.cg.destroy()
        raise


def create(cid: str, bundle: str, spec: dict[str, Any] | None = None, *, root: str = state.DEFAULT_ROOT,
           stdio: tuple[int, int, int] | None = None, rootfs_overlay: RootfsOverlay | None = None,
           cgroup_manager: str | None = None, seccomp_cache: str | None = None, start: bool = False,
           pid_file: str | None = None, timeout: float = 60.0, preserve_fds: int = 0) -> Container:
    """Create (and with ``start=True`` also start) a container from an OCI bundle. Every fd of
    the caller except ``stdio`` (and ``preserve_fds`` fds from 3 on, like runc's flag) is
    closed for the container's program."""
    bundle = os.path.abspath(bundle)
    if spec is None:
        try:
            spec = jsonlite.load_file(bundle + "/config.json", f"{bundle}/config.json")
        except FileNotFoundError:
            raise NotFound(f"bundle {bundle} has no config.json") from None
    proc = spec.get("process") or {}
    if not proc.get("args"):
        raise InvalidArgument("config.json: process.args must not be empty")
    ahead = prepared.take(cid) if start and stdio is not None and not pid_file and not preserve_fds else None
    if ahead is not None:  # set up ahead (runtime.prepared): used when it is this very container
        if ahead.matches(cid, bundle, spec, rootfs_overlay, root) and ahead.ready():
            return _from_prepared(ahead, root, cid, spec, stdio)  # type: ignore[arg-type]
        ahead.discard(reset=True)
        linux_ = spec.get("linux") or {}
        if ((ahead.spec.get("linux") or {}).get("resources") != linux_.get("resources")
                or ahead.cgpath != (linux_.get("cgroupsPath") or cgroups.default_path(cid))):
            ahead.cg.destroy()  # its limits are not this container's, or it is not this container's cgroup
    rootfs = os.path.join(bundle, (spec.get("root") or {}).get("path") or "rootfs")
    if not os.path.isdir(rootfs):
        raise NotFound(f"rootfs {rootfs} does not exist")
    rootfs = os.path.realpath(rootfs)
    linux = spec.get("linux") or {}
    flags, join, userns, cgroupns = 0, [], False, False
    pid_path: str | None = None
    for ns in linux.get("namespaces") or ():
        t = ns.get("type")
        if t not in sc.NAMESPACES:
            raise InvalidArgument(f"unknown namespace type {t!r}")
        if ns.get("path"):
            if t == "pid":  # must be entered before the clone: setns(pid) only moves children
                pid_path = ns["path"]
            else:
                join.append((t, ns["path"]))
        elif t == "cgroup":
            cgroupns = True
        else:
            flags |= sc.NAMESPACES[t][0]
            userns = userns or t == "user"
    join.sort(key=lambda j: (j[0] != "user", j[0] == "mount"))  # user ns first, mount ns last
    cgpath = linux.get("cgroupsPath") or cgroups.default_path(cid)
    d = state.make_dir(root, cid)
    cg = None
    pid = 0
    psock = None
    c: Container | None = None
    try:
        process._t("create")
        cg = cgroups.manager(cgroup_manager, cgpath)
        cg.create(linux.get("resources"), apply_limits=False)  # checks controllers; limits after clone
        bpf = seccomp.bpf_for(linux["seccomp"], seccomp_cache) if linux.get("seccomp") else None
        fifo = None
        if not start:
            fifo = d + "/exec.fifo"
            os.mkfifo(fifo, 0o622)
        plan = process.Plan(spec, rootfs, bundle, caps=CapPlan(proc.get("capabilities"), host_bounding()),
                            bpf=bpf, overlay=rootfs_overlay, fifo=fifo, stdio=stdio, userns=userns,
                            join=join, new_cgroupns=cgroupns, cgroup_dirs=cg.mount_dirs(),
                            preserve_fds=preserve_fds)
        psock, csock = process.socketpair()
        psock.settimeout(timeout)
        process._t("clone")
        pid = _clone(flags, pid_path)
        if pid == 0:
            psock.close()
            process.init(plan, csock)  # never returns
        csock.close()
        try:
            if userns:
                _write_maps(pid, linux)
                process.send(psock, process.SYNC_GO)
            cg.apply(linux.get("resources"))  # meanwhile the child mounts
            cg.add(pid)
            process._t("cgroup joined")
            ps = state.proc_stat(pid)  # the state files are written while the child sets up
            priv = {"starttime": ps[1] if ps else None, "cgroup": {"manager": cg.name, "path": cgpath},
                    "created": time.time(), "rootfs": rootfs}
            hk = spec.get("hooks") or {}
            if hk.get("poststart") or hk.get("poststop"):
                priv["hooks"] = {k: hk[k] for k in ("poststart", "poststop") if hk.get(k)}
            st = {"ociVersion": state.OCI_VERSION, "id": cid, "status": "created", "pid": pid, "bundle": bundle,
                  "annotations": spec.get("annotations") or {}, "pallet": priv}
            state.write_json(d + "/config.json", spec)
            state.write_json(d + "/state.json", st)
            if pid_file:
                with open(pid_file, "w") as f:
                    f.write(str(pid))
            state_json = b""
            if hk:
                from pallet.runtime import hooks

                state_json = _oci_state(st).encode()
                hooks.run_all(hk, "prestart", state_json)
                hooks.run_all(hk, "createRuntime", state_json)
            process.send(psock, process.SYNC_CGROUP, state_json)
        except (BrokenPipeError, ConnectionResetError) as e:
            _raise_child_error(psock)  # the child failed early: its error, else ours
            raise OSFailure.from_oserror(e, "sync", f"container {cid}") from None
        fd = None
        if fifo or proc.get("terminal"):  # else (`run`, no tty) the child only reports errors / EOF
            try:
                tag, payload, fd = process.recv(psock)
            except TimeoutError:
                raise Unavailable(f"container {cid}: init did not answer within {timeout:.0f} s") from None
            if tag == process.SYNC_ERROR:
                os.waitpid(pid, 0)
                pid = 0
                process.raise_error(payload)
            if tag != process.SYNC_READY:
                raise PalletError(f"container {cid}: init exited during setup")
            process._t("ready")
        c = Container(root, st)
        c.console_fd = fd
        c._sock = psock
        process._t("state written")
        if start:
            c._wait_exec()
            process._t("exec'd")
            c._hook("poststart")
        return c
    except BaseException:
        if psock is not None:
            psock.close()
        if pid > 0 and (c is None or c._reaped is None):  # a reaped pid may be someone else's now
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        if cg is not None:
            cg.destroy()
        state.remove(root, cid)
        raise
