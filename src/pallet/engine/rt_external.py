"""runc/crun behind ``pallet.engine.rt``: a bundle with a host-mounted overlay rootfs.

``runc run --detach`` in pass-through stdio mode: the container gets our fds directly; runc
exits and its init is re-parented to us (we are a subreaper). Runtime errors go to a JSON log
file (``--log``), so the container's stderr pipe carries only the container's output.
"""
from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from pallet.engine.containers import Container, Dirs
from pallet.engine.stdio import Stdio
from pallet.errors import (
    CommandNotExecutable,
    CommandNotFound,
    NotImplementedFeature,
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


def start(c: Container, dirs: Dirs, spec: dict[str, Any], io: Stdio) -> dict[str, Any]:
    if io.tty:
        raise NotImplementedFeature("-t with --runtime runc|crun is not supported yet (use --runtime pallet)")
    bundle = dirs.run / "bundle"
    rootfs = bundle / "rootfs"
    bundle.mkdir(parents=True, exist_ok=True)  # (also makes dirs.run)
    spec["root"]["path"] = str(rootfs)
    (bundle / "config.json").write_text(json.dumps(spec))
    _mount_rootfs(c, dirs, str(rootfs))
    pidfile = dirs.run / "runtime.pid"
    try:
        p = subprocess.run(_argv(c, dirs, "run", "--detach", "--pid-file", str(pidfile), "--bundle", str(bundle),
                                 c.id), stdin=io.child[0], stdout=io.child[1], stderr=io.child[2])
        if p.returncode != 0:
            raise _error(dirs, f"{c.host.get('Runtime')} run failed ({p.returncode})")
        pid = int(pidfile.read_text())
    except BaseException:
        cleanup(c, dirs)
        raise
    return {"pid": pid}


def exec_(c: Container, dirs: Dirs, proc: dict[str, Any], io: Stdio, privileged: bool) -> int:
    if io.tty:
        raise NotImplementedFeature("exec -t with --runtime runc|crun is not supported yet")
    full = json.loads((dirs.run / "bundle" / "config.json").read_text())["process"]
    full.update(proc)
    pf = dirs.run / f"exec-{os.getpid()}.json"
    pidfile = dirs.run / f"exec-{os.getpid()}.pid"
    pf.write_text(json.dumps(full))
    try:
        p = subprocess.run(_argv(c, dirs, "exec", "--detach", "--pid-file", str(pidfile), "--process", str(pf), c.id),
                           stdin=io.child[0], stdout=io.child[1], stderr=io.child[2])
        if p.returncode != 0:
            raise _error(dirs, "exec failed")
        return int(pidfile.read_text())
    finally:
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
