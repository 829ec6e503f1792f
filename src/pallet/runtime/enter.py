"""``exec`` into a running container (runtime.md "exec" as runc does it).

A forked helper opens the container's cgroup.procs files (host paths, before it leaves our mount
namespace), joins every namespace that differs from ours with ``setns`` (user first, so the
rest is permitted), then calls ``clone(CLONE_PARENT)``: the new process is in the container's pid
namespace *and* the caller's child. The helper places it in the cgroups while it sets up (it
waits on a pipe before ``execve``), reports its pid and exits. The new process gets the
container's capabilities, seccomp filter, user, env and cwd unless ``proc`` overrides them.
"""
from __future__ import annotations

import os

from pallet.errors import Conflict, PalletError, Unavailable
from pallet.runtime import jsonlite, process, seccomp
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
            tty: bool | None = None, seccomp_cache: str | None = None) -> ExecProcess:
    """Run ``proc`` (runtime-spec ``process`` fields overriding the container's) inside it:
    every namespace, its cgroup, its capabilities, seccomp, user, env and cwd."""
    st = self.status()
    if st != "running":
        raise Conflict(f"container {self.id} is {st}: cannot exec")
    if self.cgroup.name == "v1":  # the attach's grace period overlaps the set-up below (cgroupfs)
        from pallet.runtime.linux.cgroupfs import prewarm_attach

        prewarm_attach()
    spec = jsonlite.load_file(self.dir + "/config.json")
    merged = dict(spec.get("process") or {})
    merged.update(proc)
    if tty is not None:
        merged["terminal"] = tty
    spec = dict(spec, process=merged)
    linux = spec.get("linux") or {}
    bpf = seccomp.bpf_for(linux["seccomp"], seccomp_cache) if linux.get("seccomp") else None
    plan = process.Plan(spec, "/", self.bundle, caps=CapPlan(merged.get("capabilities"), host_bounding()),
                        bpf=bpf, stdio=stdio)
    nsfds: list[tuple[str, int]] = []
    try:
        for ns in _EXEC_NS:
            target = f"/proc/{self.pid}/ns/{ns}"
            if os.stat(target).st_ino != os.stat(f"/proc/self/ns/{ns}").st_ino:
                nsfds.append((ns, os.open(target, os.O_RDONLY | os.O_CLOEXEC)))
    except OSError as e:
        for _, nsfd in nsfds:
            os.close(nsfd)
        raise Conflict(f"container {self.id} is not running ({e.strerror})") from None
    psock, csock = process.socketpair()
    psock.settimeout(30)
    process._t("exec: fork")
    helper = os.fork()
    if helper == 0:  # the helper: join, clone into the pid namespace, leave
        code = 1
        try:
            psock.close()
            process._t("helper")
            # opened before setns(mnt): the host's cgroupfs paths are not visible from inside
            procs = [os.open(p + "/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
                     for p in self.cgroup.paths.values()]
            for name, nsfd in nsfds:
                sc.setns(nsfd, 0, f"{name} of {self.id}")
            jr, jw = os.pipe()
            child = sc.clone(sc.CLONE_PARENT)
            if child == 0:
                os.close(jw)
                process.exec_child(plan, csock, bool(merged.get("terminal")), jr)
            os.close(jr)
            process.send(csock, process.SYNC_PID, str(child).encode())
            # the cgroup attach (an RCU grace period on v1) overlaps the child's set-up
            for pfd in procs:
                os.write(pfd, str(child).encode())
            os.write(jw, b"1")
            process._t("helper: cgroup joined")
            code = 0
        except BaseException as e:  # noqa: B036 - the helper must never return
            try:
                process.send(csock, process.SYNC_ERROR, process.error_payload(e))
            except OSError:
                pass
        os._exit(code)
    for _, nsfd in nsfds:
        os.close(nsfd)
    csock.close()
    pid = 0
    fd: int | None = None
    err = b""
    try:  # messages: PID (helper), READY+fd (new process), ERROR (either), in any order; EOF = exec'd
        while True:
            tag, payload, got = process.recv(psock)
            if tag == process.SYNC_PID:
                pid = int(payload)
            elif tag == process.SYNC_READY:
                fd = got
            elif tag == process.SYNC_ERROR:
                err = err or payload  # keep reading: the helper's PID may still come
            elif tag == b"":
                break
    except TimeoutError:
        err = process.error_payload(Unavailable(f"exec into {self.id}: no answer"))
    finally:
        psock.close()
        os.waitpid(helper, 0)
    if err or not pid:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        if fd is not None:
            os.close(fd)
        if not err:
            raise PalletError(f"exec into {self.id}: the helper failed")
        process.raise_error(err)
    return ExecProcess(pid, fd)
