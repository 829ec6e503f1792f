"""runc/crun behind ``pallet.engine.rt``: a bundle with a host-mounted overlay rootfs.

``runc run --detach`` in pass-through stdio mode: the container gets our fds directly; runc
exits and its init is re-parented to us (we are a subreaper). Runtime errors go to a JSON log
file (``--log``), so the container's stderr pipe carries only the container's output.

With a terminal (``process.terminal``) runc's console-socket contract is used: we listen on a
unix socket, pass ``--console-socket PATH``, and runc connects and sends the pty master with
SCM_RIGHTS (the slave is the container's stdio and /dev/console). The master becomes
``io.master``, as the built-in runtime's console fd does, so the pump, SIGWINCH and raw mode
work the same. The initial window size goes into ``process.consoleSize`` (set by runc before the
process runs: ``stty size`` as the first command sees it).
"""
from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from pallet.engine.containers import Container, Dirs
from pallet.engine.stdio import Stdio, console_size
from pallet.errors import (
    CommandNotExecutable,
    CommandNotFound,
    PalletError,
    Unavailable,
)


def _binary(name: str) -> str:
    import shutil

    path = shutil.which(name)
    if path is None:
        raise Unavailable(f"runtime {name!r} is not installed")
    return path


def _argv(c: Container, dirs: Dirs, *more: str) -> list[str]:
    name = c.host.get("Runtime", "runc")
    return [_binary(name), "--root", str(dirs.run.parent.parent / name), "--log", str(dirs.run / "runtime.log"),
            "--log-format", "json", *more]


def _error(dirs: Dirs, what: str) -> PalletError:
    msg = ""
    try:
        for line in (dirs.run / "runtime.log").read_text().splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if d.get("level") in ("error", "fatal"):
                msg = d.get("msg", msg)
    except OSError:
        pass
    low = msg.lower()
    if "executable file not found" in low or "no such file or directory" in low and "exec" in low:
        return CommandNotFound(msg or what)
    if "permission denied" in low and "exec" in low:
        return CommandNotExecutable(msg or what)
    return PalletError(f"{what}: {msg}" if msg else what)


def _mount_rootfs(c: Container, dirs: Dirs, rootfs: str) -> None:
    from pallet.runtime.linux import syscalls as sc

    os.makedirs(rootfs, exist_ok=True)
    lower = ":".join(c.config.get("Lowerdirs", []))
    sc.mount("overlay", rootfs, "overlay", 0, f"lowerdir={lower},upperdir={dirs.upper},workdir={dirs.work}")


class _ConsoleSocket:
    """A listening unix socket for ``--console-socket``; ``receive()`` returns the pty master.

    The socket lives in the container's run dir, reached through ``/proc/<pid>/fd/<dirfd>``: the
    real path may be longer than sun_path's 108 bytes. ``close()`` removes it (idempotent)."""

    def __init__(self, directory: str) -> None:
        import _socket

        self.dirfd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.name = f"console-{os.getpid()}.sock"
        self.sock: Any = None
        try:
            try:
                os.unlink(f"/proc/self/fd/{self.dirfd}/{self.name}")
            except FileNotFoundError:
                pass
            self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
            self.sock.bind(f"/proc/self/fd/{self.dirfd}/{self.name}")
            self.sock.listen(1)
        except BaseException:
            self.close()
            raise
        self.path = f"/proc/{os.getpid()}/fd/{self.dirfd}/{self.name}"

    def receive(self, timeout: float = 10.0) -> int:
        """The fd runc sent (after it exited 0, the connection and message are queued)."""
        import _socket
        import array

        fds = array.array("i")
        try:
            self.sock.settimeout(timeout)
            fd, _addr = self.sock._accept()  # _socket's accept (socket.socket's wrapper imports selectors)
            conn = _socket.socket(fileno=fd)
            try:
                conn.settimeout(timeout)
                _msg, anc, _flags, _addr = conn.recvmsg(1024, _socket.CMSG_SPACE(4 * 4), _socket.MSG_CMSG_CLOEXEC)
                for level, kind, data in anc:
                    if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                        fds.frombytes(data[:len(data) - len(data) % 4])
            finally:
                conn.close()
        except OSError as e:  # a timeout included: the runtime never connected
            raise PalletError(f"the runtime sent no terminal on the console socket: {e}") from None
        if not fds:
            raise PalletError("the runtime sent no terminal on the console socket")
        for extra in fds[1:]:
            os.close(extra)
        return int(fds[0])

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.dirfd >= 0:
            try:
                os.unlink(f"/proc/self/fd/{self.dirfd}/{self.name}")
            except OSError:
                pass
            os.close(self.dirfd)
            self.dirfd = -1


def _stdio(io: Stdio) -> dict[str, Any]:
    """runc's own stdio: the container's fds (pass-through), or /dev/null with a terminal."""
    if io.tty:
        return {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    return {"stdin": io.child[0], "stdout": io.child[1], "stderr": io.child[2]}


def _adopt_master(io: Stdio, console: _ConsoleSocket) -> None:
    from pallet.engine.stdio import copy_winsize

    io.master = console.receive()
    for fd in (0, 1):
        if os.isatty(fd):
            copy_winsize(fd, io.master)
            break


def start(c: Container, dirs: Dirs, spec: dict[str, Any], io: Stdio) -> dict[str, Any]:
    bundle = dirs.run / "bundle"
    rootfs = bundle / "rootfs"
    bundle.mkdir(parents=True, exist_ok=True)  # (also makes dirs.run)
    spec["root"]["path"] = str(rootfs)
    if io.tty:
        console_size(spec["process"])
    (bundle / "config.json").write_text(json.dumps(spec))
    pidfile = dirs.run / "runtime.pid"
    console = None
    try:
        _mount_rootfs(c, dirs, str(rootfs))
        more: list[str] = []
        if io.tty:
            console = _ConsoleSocket(str(dirs.run))
            more = ["--console-socket", console.path]
        p = subprocess.run(_argv(c, dirs, "run", "--detach", "--pid-file", str(pidfile), *more,
                                 "--bundle", str(bundle), c.id), **_stdio(io))
        if p.returncode != 0:
            raise _error(dirs, f"{c.host.get('Runtime')} run failed ({p.returncode})")
        pid = int(pidfile.read_text())
        if console is not None:
            _adopt_master(io, console)
    except BaseException:
        if io.master >= 0:
            os.close(io.master)
            io.master = -1
        cleanup(c, dirs)
        raise
    finally:
        if console is not None:
            console.close()
    return {"pid": pid}


def exec_(c: Container, dirs: Dirs, proc: dict[str, Any], io: Stdio, privileged: bool, keep: float = 0.0) -> int:
    """``keep``: ignored (runc and crun keep no process entered in the container)."""
    full = json.loads((dirs.run / "bundle" / "config.json").read_text())["process"]
    full.pop("consoleSize", None)
    full.update(proc)
    if io.tty:
        console_size(full)
    pf = dirs.run / f"exec-{os.getpid()}.json"
    pidfile = dirs.run / f"exec-{os.getpid()}.pid"
    pf.write_text(json.dumps(full))
    console = None
    try:
        more: list[str] = []
        if io.tty:
            console = _ConsoleSocket(str(dirs.run))
            more = ["--console-socket", console.path]
        p = subprocess.run(_argv(c, dirs, "exec", "--detach", "--pid-file", str(pidfile), *more,
                                 "--process", str(pf), c.id), **_stdio(io))
        if p.returncode != 0:
            raise _error(dirs, "exec failed")
        pid = int(pidfile.read_text())
        if console is not None:
            try:
                _adopt_master(io, console)
            except BaseException:
                os.kill(pid, 9)  # started, but without its terminal: nobody could reach it
                raise
        return pid
    except BaseException:
        if io.master >= 0:
            os.close(io.master)
            io.master = -1
        raise
    finally:
        if console is not None:
            console.close()
        for f in (pf, pidfile):
            try:
                f.unlink()
            except OSError:
                pass


def freeze(c: Container, dirs: Dirs, on: bool) -> None:
    p = subprocess.run(_argv(c, dirs, "pause" if on else "resume", c.id), capture_output=True)
    if p.returncode != 0:
        raise _error(dirs, "pause failed" if on else "resume failed")


def _cgroup(c: Container, ctl: str) -> str:
    from pallet.engine.specgen import cgroup_parent

    return f"/sys/fs/cgroup/{ctl}/{cgroup_parent()}/{c.id}"


def oom_killed(c: Container, dirs: Dirs) -> bool:
    try:
        with open(_cgroup(c, "memory") + "/memory.oom_control") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1]) > 0
    except OSError:
        pass
    return False


def pids(c: Container, dirs: Dirs) -> list[int]:
    try:
        with open(_cgroup(c, "pids") + "/cgroup.procs") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def stats(c: Container, dirs: Dirs) -> dict[str, Any]:
    def rd(path: str) -> int:
        try:
            with open(path) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    return {"memory_usage": rd(_cgroup(c, "memory") + "/memory.usage_in_bytes"),
            "memory_limit": rd(_cgroup(c, "memory") + "/memory.limit_in_bytes"),
            "cpu_ns": rd(_cgroup(c, "cpuacct") + "/cpuacct.usage"),
            "pids": rd(_cgroup(c, "pids") + "/pids.current")}


def cleanup(c: Container, dirs: Dirs) -> None:
    if not dirs.run.exists():
        return
    try:
        subprocess.run(_argv(c, dirs, "delete", "--force", c.id), capture_output=True, timeout=30)
    except (Unavailable, subprocess.TimeoutExpired):
        pass
    rootfs = dirs.run / "bundle" / "rootfs"
    if os.path.ismount(rootfs):
        from pallet.runtime.linux import syscalls as sc

        try:
            sc.umount2(str(rootfs), 2)  # MNT_DETACH
        except PalletError:
            pass
