"""Reading and writing cgroupfs files, shared by the cgroup managers (``cgroups.py``)."""
from __future__ import annotations

import os
import time

from pallet.errors import OSFailure

CGROUP_ROOT = "/sys/fs/cgroup"
# A pre-made container cgroup (v1: in every hierarchy) that ``CgroupV1.create`` of a cgroup under
# the same parent takes by rename: a mkdir of a memory cgroup costs 0.5-2 ms each, a rename
# microseconds. Set by the process that keeps one ready (the engine's monitor); "" = none.
SPARE = ""
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "devices", "blkio",
                  "net_cls", "net_prio", "hugetlb", "perf_event", "rdma", "systemd")  # + named systemd, as runc
# runc's always-allowed devices (v1 devices cgroup): null zero full random urandom tty console
# ptmx, pts/*, and mknod of anything.
DEFAULT_ALLOW = ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm",
                 "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm")


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise OSFailure.from_oserror(e, "write", f"{value!r} to {path}") from None


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _kv(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in _read(path).splitlines():
            k, _, v = line.partition(" ")
            if v.strip().lstrip("-").isdigit():
                out[k] = int(v)
    except OSError:
        pass
    return out


def _rmdir(path: str) -> None:
    """rmdir, killing stragglers; bounded to ~2 s."""
    for _ in range(200):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != 16:  # EBUSY: processes still inside
                raise OSFailure.from_oserror(e, "rmdir", path) from None
        try:
            for p in _read(path + "/cgroup.procs").split():
                try:
                    os.kill(int(p), 9)
                except ProcessLookupError:
                    pass
        except OSError:
            pass
        time.sleep(0.01)
    raise OSFailure(16, "rmdir", path)


def unified_root() -> str:
    if os.path.exists(CGROUP_ROOT + "/cgroup.controllers"):
        return CGROUP_ROOT
    return CGROUP_ROOT + "/unified"


def own_procs(ctrls: tuple[str, ...]) -> str:
    """The ``cgroup.procs`` of this process's own cgroup in the first v1 hierarchy of ``ctrls``
    it is in (as /proc/self/cgroup lists them); "" when none."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, name, rel = line.rstrip("\n").split(":", 2)
            if name in ctrls:
                return f"{CGROUP_ROOT}/{name}{rel}/cgroup.procs"
    return ""


def prewarm_attach() -> None:
    """Start paying cgroup v1's attach wait now, on a thread, so it overlaps the caller's work.

    The first ``cgroup.procs`` write after an idle moment waits for an RCU grace period (the
    kernel's global ``cgroup_threadgroup_rwsem``, ~10 ms here, longer under load); a write within
    ~10-20 ms after the last one is immediate (measured: bench/RESULTS.md "Engine: containers").
    This writes ``0`` (itself) into this process's own cgroup of one v1 hierarchy: no move, just
    the wait. Best effort: any error is ignored. Not for v2 (no such wait there to hide).
    """
    import _thread

    def warm() -> None:
        try:
            path = own_procs(("pids", "memory", "devices", "freezer"))
            if path:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, b"0")
                finally:
                    os.close(fd)
        except Exception:  # noqa: BLE001 - only an optimisation
            pass

    try:
        _thread.start_new_thread(warm, ())
    except RuntimeError:
        pass
