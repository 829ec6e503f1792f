"""cgroup managers, registered by name: ``v1`` (one directory per controller hierarchy) and
``v2`` (the unified hierarchy). ``detect()`` picks what the host runs.

Contract (runtime-spec config-linux.md "Control groups", "resources"):
``create(resources)`` makes the directories and writes the limits (nothing is left behind when
it fails; ``apply_limits=False`` + ``apply(resources)`` splits the two, so the runtime writes the
limits while the container's init builds its rootfs), ``add(pid)`` places a process, ``destroy()`` kills what is left and removes the
directories (idempotent). ``linux.cgroupsPath`` is taken from each hierarchy's root; the default
is ``/pallet-runtime/<id>``. Parent directories are kept (they are shared).
"""
from __future__ import annotations

import os
import time

from pallet.errors import InvalidArgument, NotImplementedFeature, OSFailure

CGROUP_ROOT = "/sys/fs/cgroup"
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


class CgroupV1:
    name = "v1"

    def __init__(self, path: str, root: str = CGROUP_ROOT) -> None:
        self.rel = "/" + path.strip("/")
        self.root = root
        self.paths = {c: f"{root}/{c}{self.rel}" for c in V1_CONTROLLERS if os.path.isdir(f"{root}/{c}")}

    def create(self, resources: dict | None, apply_limits: bool = True) -> None:
        try:
            for c, p in self.paths.items():
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
            for d in r["devices"]:
                rule = "{} {}:{} {}".format(d.get("type") or "a", "*" if d.get("major") is None else d["major"],
                                            "*" if d.get("minor") is None else d["minor"], d.get("access") or "rwm")
                rule = "a" if rule == "a *:* rwm" else rule
                _write(p["devices"] + ("/devices.allow" if d.get("allow") else "/devices.deny"), rule)
            for rule in DEFAULT_ALLOW:
                _write(p["devices"] + "/devices.allow", rule)
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


class CgroupV2:
    name = "v2"

    def __init__(self, path: str, root: str | None = None) -> None:
        self.rel = "/" + path.strip("/")
        self.root = root or unified_root()
        self.path = self.root + self.rel
        self.paths = {"unified": self.path}

    def create(self, resources: dict | None, apply_limits: bool = True) -> None:
        r = resources or {}
        want = []
        mem, cpu = r.get("memory") or {}, r.get("cpu") or {}
        if any(mem.get(k) is not None for k in ("limit", "swap", "reservation")):
            want.append("memory")
        if cpu.get("shares") or cpu.get("quota"):
            want.append("cpu")
        if cpu.get("cpus") or cpu.get("mems"):
            want.append("cpuset")
        if (r.get("pids") or {}).get("limit") is not None:
            want.append("pids")
        avail = _read(self.root + "/cgroup.controllers").split()
        for c in want:
            if c not in avail:
                raise NotImplementedFeature(f"cgroup v2 controller {c!r} is not available on {self.root}")
        try:
            cur = self.root
            for part in self.rel.strip("/").split("/"):
                if want:
                    _write(cur + "/cgroup.subtree_control", " ".join("+" + c for c in want))
                cur = cur + "/" + part
                os.makedirs(cur, exist_ok=True)
            if apply_limits:
                self._apply(r)
        except BaseException:
            self.destroy()
            raise

    def apply(self, resources: dict | None) -> None:
        """Write the limits (after ``create(..., apply_limits=False)``)."""
        self._apply(resources or {})

    def _apply(self, r: dict) -> None:
        p = self.path
        mem = r.get("memory") or {}
        if mem.get("limit") is not None:
            _write(p + "/memory.max", str(mem["limit"]) if mem["limit"] > 0 else "max")
        if mem.get("swap") is not None:
            swap = mem["swap"]
            _write(p + "/memory.swap.max", "max" if swap < 0 else str(max(0, swap - (mem.get("limit") or 0))))
        if mem.get("reservation") is not None:
            _write(p + "/memory.low", str(mem["reservation"]))
        cpu = r.get("cpu") or {}
        if cpu.get("shares"):
            _write(p + "/cpu.weight", str(1 + ((int(cpu["shares"]) - 2) * 9999) // 262142))
        if cpu.get("quota"):
            _write(p + "/cpu.max", f"{cpu['quota']} {cpu.get('period') or 100000}")
        if cpu.get("cpus"):
            _write(p + "/cpuset.cpus", cpu["cpus"])
        if cpu.get("mems"):
            _write(p + "/cpuset.mems", cpu["mems"])
        pids = (r.get("pids") or {}).get("limit")
        if pids is not None:
            _write(p + "/pids.max", str(pids) if pids > 0 else "max")

    def mount_dirs(self) -> dict[str, str]:
        return {"unified": self.path}

    def add(self, pid: int) -> None:
        _write(self.path + "/cgroup.procs", str(pid))

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def _set_frozen(self, on: bool) -> None:
        _write(self.path + "/cgroup.freeze", "1" if on else "0")
        for _ in range(500):
            if self.frozen() == on:
                return
            time.sleep(0.01)
        raise OSFailure(16, "freeze", self.path)

    def frozen(self) -> bool:
        return _kv(self.path + "/cgroup.events").get("frozen", 0) == 1

    def oom_killed(self) -> bool:
        return _kv(self.path + "/memory.events").get("oom_kill", 0) > 0

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in _read(self.path + "/cgroup.procs").split()]
        except OSError:
            return []

    def stats(self) -> dict:
        s: dict = {}
        if os.path.exists(self.path + "/memory.current"):
            lim = _read(self.path + "/memory.max").strip()
            s["memory"] = {"usage": int(_read(self.path + "/memory.current")),
                           "limit": -1 if lim == "max" else int(lim), "stat": _kv(self.path + "/memory.stat")}
        s["cpu"] = {"usage_ns": _kv(self.path + "/cpu.stat").get("usage_usec", 0) * 1000}
        if os.path.exists(self.path + "/pids.current"):
            s["pids"] = {"current": int(_read(self.path + "/pids.current"))}
        return s

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def destroy(self) -> None:
        if not os.path.isdir(self.path):
            return
        if os.path.exists(self.path + "/cgroup.kill"):
            _write(self.path + "/cgroup.kill", "1")
        _rmdir(self.path)


BACKENDS: dict[str, type] = {"v1": CgroupV1, "v2": CgroupV2}


def default_path(cid: str) -> str:
    """The cgroup of a container whose spec has no ``linux.cgroupsPath``."""
    return f"/pallet-runtime/{cid}"


def unified_root() -> str:
    if os.path.exists(CGROUP_ROOT + "/cgroup.controllers"):
        return CGROUP_ROOT
    return CGROUP_ROOT + "/unified"


def detect() -> str:
    """``v2`` on a unified host, else ``v1`` (hybrid hosts keep their controllers on v1)."""
    return "v2" if os.path.exists(CGROUP_ROOT + "/cgroup.controllers") else "v1"


def manager(name: str | None, path: str) -> CgroupV1 | CgroupV2:
    name = name or detect()
    if name not in BACKENDS:
        raise InvalidArgument(f"unknown cgroup manager {name!r} (known: {', '.join(BACKENDS)})")
    if ":" in path:
        raise NotImplementedFeature(f"systemd cgroupsPath {path!r} is not supported (use a path)")
    return BACKENDS[name](path)  # type: ignore[no-any-return]
