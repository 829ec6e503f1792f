"""Helpers for the runtime tests: run a busybox container through the library, and check that
nothing is left behind (mounts, cgroup directories, processes, state)."""
from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CGROUP_PARENTS = ["/sys/fs/cgroup/memory/pallet-runtime", "/sys/fs/cgroup/pids/pallet-runtime",
                  "/sys/fs/cgroup/freezer/pallet-runtime", "/sys/fs/cgroup/unified/pallet-runtime"]
DOCKER_CAPS = "00000000a80425fb"


@dataclass
class Ran:
    code: int
    out: str
    err: str
    oom: bool


def new_id(prefix: str = "rt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def bundle_of(tmp_path: Path, rootfs: Path) -> Path:
    b = tmp_path / "bundle"
    b.mkdir(exist_ok=True)
    if not (b / "rootfs").exists():
        os.symlink(rootfs, b / "rootfs")
    return b


def run(tmp_path: Path, rootfs: Path, args: list[str], *, spec: dict | None = None,
        create_kw: dict | None = None, **spec_kw: Any) -> Ran:
    """Run ``args`` to completion in a fresh container; stdout/stderr through files."""
    from pallet.runtime import container as rt
    from pallet.runtime import spec as rspec

    b = bundle_of(tmp_path, rootfs)
    if spec is None:
        spec = rspec.default_spec(args, "rootfs", **spec_kw)
    out_p, err_p = tmp_path / "out", tmp_path / "err"
    with open(out_p, "wb") as o, open(err_p, "wb") as e, open(os.devnull, "rb") as i:
        c = rt.create(new_id(), str(b), spec, root=str(tmp_path / "state"), start=True,
                      stdio=(i.fileno(), o.fileno(), e.fileno()), seccomp_cache=str(tmp_path.parent / "sc"),
                      **(create_kw or {}))
        try:
            code, oom = c.wait()
        finally:
            c.delete(force=True)
    return Ran(code, out_p.read_text(), err_p.read_text(), oom)


def snapshot() -> dict[str, Any]:
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(" ".join(line.split()[3:5]) for line in f)
    cgs = sorted(f"{p}/{n}" for p in CGROUP_PARENTS if os.path.isdir(p)
                 for n in os.listdir(p) if os.path.isdir(f"{p}/{n}"))
    return {"mounts": mounts, "cgroups": cgs}


@pytest.fixture
def no_leaks(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """After the test: no new mount, no container cgroup dir (a cgroup with a process left in it
    cannot be removed, so none is left running either), no state dir entry.

    Other engineers' tests share this machine: only mounts under our pytest base directory (where
    the rootfs and bundles live, so where a leak would land) count."""
    base = str(tmp_path_factory.getbasetemp())
    before = snapshot()
    yield
    after = snapshot()
    new = {m for m in set(after["mounts"]) - set(before["mounts"])
           if base in m or "pallet-userns-" in m}
    assert not new, f"stray mounts: {new}"
    new_cgs = {c for c in set(after["cgroups"]) - set(before["cgroups"])  # ours, not the builder's
               if c.rsplit("/", 1)[1].startswith(("rt-", "par-"))}
    assert not new_cgs, f"stray cgroups: {new_cgs}"
    state = tmp_path / "state"
    if state.exists():
        assert not [p for p in state.iterdir() if p.is_dir()], "stray state dirs"


def copy_rootfs(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest
