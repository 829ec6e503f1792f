"""The cgroup v1 manager: one directory per controller hierarchy (runtime-spec config-linux.md
"Control groups"; the kernel's cgroup-v1 documentation for the files)."""
from __future__ import annotations

import os
import time

from pallet.errors import NotImplementedFeature, OSFailure
from pallet.runtime.linux import cgroupfs
from pallet.runtime.linux.cgroupfs import (
    CGROUP_ROOT,
    DEFAULT_ALLOW,
    V1_CONTROLLERS,
    _kv,
    _read,
    _rmdir,
    _write,
)


class CgroupV1:
    name = "v1"

    def __init__(self, path: str, root: str = CGROUP_ROOT) -> None:
        self.rel = "/" + path.strip("/")
        self.root = root
        self.paths = {c: f"{root}/{c}{self.rel}" for c in V1_CONTROLLERS if os.path.isdir(f"{root}/{c}")}

    def create(self, resources: dict | None, apply_limits: bool = True) -> None:
        try:
            for c, p in self.paths.items():
                if cgroupfs.SPARE and (_is_spare(p) or _take_spare(p)):
                    continue
                if c == "cpuset":
                    self._mk_cpuset(p)
                else:
                    os.makedirs(p, exist_ok=True)
            if apply_limits:
                self._apply(resources or {})
        except BaseException:
            self.destroy()
            raise

    def _mk_cpuset(self, path: str) -> None:
        base = f"{self.root}/cpuset"
        cur = base
        for part in self.rel.strip("/").split("/"):
            parent, cur = cur, cur + "/" + part
            try:
                os.mkdir(cur)
            except FileExistsError:  # a shared parent, maybe made by a concurrent create
                pass
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not _read(f"{cur}/{f}").strip():
                    _write(f"{cur}/{f}", _read(f"{parent}/{f}").strip())

    def apply(self, resources: dict | None) -> None:
        """Write the limits (after ``create(..., apply_limits=False)``)."""
        self._apply(resources or {})

    def _apply(self, r: dict) -> None:
        p = self.paths
        mem = r.get("memory") or {}
        if mem and "memory" in p:
            if mem.get("limit") is not None:
                _write(p["memory"] + "/memory.limit_in_bytes", str(mem["limit"]))
            if mem.get("swap") is not None and os.path.exists(p["memory"] + "/memory.memsw.limit_in_bytes"):
                _write(p["memory"] + "/memory.memsw.limit_in_bytes", str(mem["swap"]))
            if mem.get("reservation") is not None:
                _write(p["memory"] + "/memory.soft_limit_in_bytes", str(mem["reservation"]))
            if mem.get("swappiness") is not None:
                _write(p["memory"] + "/memory.swappiness", str(mem["swappiness"]))
        cpu = r.get("cpu") or {}
        if cpu.get("shares") and "cpu" in p:
            _write(p["cpu"] + "/cpu.shares", str(cpu["shares"]))
        if cpu.get("period") and "cpu" in p:
            _write(p["cpu"] + "/cpu.cfs_period_us", str(cpu["period"]))
        if cpu.get("quota") and "cpu" in p:
            _write(p["cpu"] + "/cpu.cfs_quota_us", str(cpu["quota"]))
        if "cpuset" in p:
            if cpu.get("cpus"):
                _write(p["cpuset"] + "/cpuset.cpus", cpu["cpus"])
            if cpu.get("mems"):
                _write(p["cpuset"] + "/cpuset.mems", cpu["mems"])
        pids = (r.get("pids") or {}).get("limit")
        if pids is not None and "pids" in p:
            _write(p["pids"] + "/pids.max", str(pids) if pids > 0 else "max")
        if "devices" in p and r.get("devices") is not None:
            rules: list[tuple[str, str]] = []
            for d in r["devices"]:
                rule = "{} {}:{} {}".format(d.get("type") or "a", "*" if d.get("major") is None else d["major"],
                                            "*" if d.get("minor") is None else d["minor"], d.get("access") or "rwm")
                rules.append(("devices.allow" if d.get("allow") else "devices.deny", "a" if rule == "a *:* rwm" else rule))
            rules += [("devices.allow", rule) for rule in DEFAULT_ALLOW]
            _write_rules(p["devices"], rules)
        blk = (r.get("blockIO") or {}).get("weight")
        if blk and "blkio" in p and os.path.exists(p["blkio"] + "/blkio.weight"):
            _write(p["blkio"] + "/blkio.weight", str(blk))

    def mount_dirs(self) -> dict[str, str]:
        """name under /sys/fs/cgroup in the container -> host directory to bind there."""
        return dict(self.paths)

    def add(self, pid: int) -> None:
        for p in self.paths.values():
            _write(p + "/cgroup.procs", str(pid))

    def freeze(self) -> None:
        self._freezer("FROZEN")

    def thaw(self) -> None:
        self._freezer("THAWED")

    def _freezer(self, state: str) -> None:
        if "freezer" not in self.paths:
            raise NotImplementedFeature("the freezer cgroup controller is not mounted")
        f = self.paths["freezer"] + "/freezer.state"
        _write(f, state)
        for _ in range(500):  # FREEZING -> FROZEN; bounded ~5 s
            if _read(f).strip() == state:
                return
            _write(f, state)
            time.sleep(0.01)
        raise OSFailure(16, "freeze", f)

    def frozen(self) -> bool:
        try:
            return _read(self.paths["freezer"] + "/freezer.state").strip() == "FROZEN"
        except (KeyError, OSError):
            return False

    def oom_killed(self) -> bool:
        return _kv(self.paths.get("memory", "/nonexistent") + "/memory.oom_control").get("oom_kill", 0) > 0

    def pids(self) -> list[int]:
        p = self.paths.get("pids") or self.paths.get("memory") or next(iter(self.paths.values()))
        try:
            return [int(x) for x in _read(p + "/cgroup.procs").split()]
        except OSError:
            return []

    def stats(self) -> dict:
        p = self.paths
        s: dict = {}
        if "memory" in p:
            s["memory"] = {"usage": int(_read(p["memory"] + "/memory.usage_in_bytes")),
                           "limit": int(_read(p["memory"] + "/memory.limit_in_bytes")),
                           "stat": _kv(p["memory"] + "/memory.stat")}
        if "cpuacct" in p:
            s["cpu"] = {"usage_ns": int(_read(p["cpuacct"] + "/cpuacct.usage"))}
        if "pids" in p:
            s["pids"] = {"current": int(_read(p["pids"] + "/pids.current"))}
        return s

    def exists(self) -> bool:
        return any(os.path.isdir(p) for p in self.paths.values())

    def destroy(self) -> None:
        if "freezer" in self.paths and self.frozen():
            self._freezer("THAWED")
        for p in self.paths.values():
            _rmdir(p)


def _write_rules(cg: str, rules: list[tuple[str, str]]) -> None:
    """Write device rules in order, one write(2) per rule (the kernel parses one per write),
    keeping each file open across consecutive rules for it."""
    fd, cur = -1, ""
    try:
        for name, rule in rules:
            if name != cur:
                if fd >= 0:
                    os.close(fd)
                    fd = -1
                cur = name
                fd = os.open(f"{cg}/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, rule.encode())
            except OSError as e:
                raise OSFailure.from_oserror(e, "write", f"{rule!r} to {cg}/{name}") from None
    except OSError as e:  # (the open; a failed write raised OSFailure above)
        raise OSFailure.from_oserror(e, "open", f"{cg}/{cur}") from None
    finally:
        if fd >= 0:
            os.close(fd)


def _is_spare(path: str) -> bool:
    """``path`` is the spare itself (made beforehand under the name its container then gets)."""
    return os.path.basename(path) == cgroupfs.SPARE and os.path.isdir(path)


def _take_spare(path: str) -> bool:
    """Rename the spare next to ``path`` (same parent) into ``path``; False when there is none."""
    try:
        os.rename(os.path.dirname(path) + "/" + cgroupfs.SPARE, path)
        return True
    except OSError:
        return False


def make_spare(parent: str) -> None:
    """Make ``<parent>/<cgroupfs.SPARE>`` ready in every hierarchy (cpuset filled in); best effort."""
    if not cgroupfs.SPARE:
        return
    cg = CgroupV1(parent.strip("/") + "/" + cgroupfs.SPARE)
    if all(os.path.isdir(p) for p in cg.paths.values()):
        return
    try:
        cg.create(None, apply_limits=False)
    except Exception:  # noqa: BLE001 - only an optimisation (create removed what it made)
        pass
