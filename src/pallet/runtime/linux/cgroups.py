"""cgroup managers, registered by name: ``v1`` (one directory per controller hierarchy) and
``v2`` (the unified hierarchy). ``detect()`` picks what the host runs.

Contract (runtime-spec config-linux.md "Control groups", "resources"):
``create(resources)`` makes the directories and writes the limits (nothing is left behind when
it fails; ``apply_limits=False`` + ``apply(resources)`` splits the two, so the runtime writes
the limits while the container's init builds its rootfs), ``add(pid)`` places a process,
``destroy()`` kills what is left and removes the directories (idempotent). ``linux.cgroupsPath``
is taken from each hierarchy's root; the default is ``/pallet-runtime/<id>``. Parent directories are kept (they are shared).
"""
from __future__ import annotations

import os

from pallet.errors import InvalidArgument, NotImplementedFeature
from pallet.runtime.linux.cgroupfs import CGROUP_ROOT, unified_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.runtime.linux.cgroup_v1 import CgroupV1
    from pallet.runtime.linux.cgroup_v2 import CgroupV2

__all__ = ["BACKENDS", "CGROUP_ROOT", "default_path", "detect", "manager", "unified_root"]

# name -> "module:class", imported on first use (a start needs only the host's one)
BACKENDS: dict[str, str] = {"v1": "pallet.runtime.linux.cgroup_v1:CgroupV1",
                            "v2": "pallet.runtime.linux.cgroup_v2:CgroupV2"}


def default_path(cid: str) -> str:
    """The cgroup of a container whose spec has no ``linux.cgroupsPath``."""
    return f"/pallet-runtime/{cid}"


def detect() -> str:
    """``v2`` on a unified host, else ``v1`` (hybrid hosts keep their controllers on v1)."""
    return "v2" if os.path.exists(CGROUP_ROOT + "/cgroup.controllers") else "v1"


def manager(name: str | None, path: str) -> CgroupV1 | CgroupV2:
    name = name or detect()
    if name not in BACKENDS:
        raise InvalidArgument(f"unknown cgroup manager {name!r} (known: {', '.join(BACKENDS)})")
    if ":" in path:
        raise NotImplementedFeature(f"systemd cgroupsPath {path!r} is not supported (use a path)")
    mod, _, cls = BACKENDS[name].partition(":")
    return getattr(__import__(mod, fromlist=[cls]), cls)(path)  # type: ignore[no-any-return]
