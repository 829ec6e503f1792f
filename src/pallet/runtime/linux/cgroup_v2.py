"""The cgroup v2 manager: one directory in the unified hierarchy (freezer via cgroup.freeze,
kill via cgroup.kill; limits need the controllers enabled down the tree)."""
from __future__ import annotations

import os
import time

from pallet.errors import NotImplementedFeature, OSFailure
from pallet.runtime.linux.cgroupfs import _kv, _read, _rmdir, _write, unified_root


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
