"""The monitor's spare container cgroup set (cgroup v1): made ahead, while nothing is served,
under ``<parent>/<id>`` in every hierarchy, where ``id`` is the id the next served run's
container gets. A served run then needs no cgroup directory made or renamed; a detached start
takes it with a rename (runtime.linux.cgroup_v1 ``cgroupfs.SPARE``). Making one costs ~1-4 ms
(9 mkdirs, memory cgroups the dearest), off the path of the run it serves.

``<runroot>/monitor.spare`` holds ``PID PARENT ID`` so a monitor that was killed leaves nothing:
the next monitor of the runroot, or the next removal of a container, removes it when that pid is
gone (and the cgroup holds no process: a spare taken by a container is that container's).
"""
from __future__ import annotations

import os

from pallet.runtime.linux import cgroupfs

FILE = "monitor.spare"


def make(runroot: str, parent: str, cid: str) -> None:
    """Make (or keep) the spare ``<parent>/<cid>`` and record it; best effort."""
    from pallet.runtime.linux import cgroup_v1

    try:
        with open(os.path.join(runroot, FILE), "w") as f:
            f.write(f"{os.getpid()} {parent} {cid}\n")
    except OSError:
        return
    cgroupfs.SPARE = cid
    cgroup_v1.make_spare(parent)


def exists(parent: str, cid: str) -> bool:
    return os.path.isdir(f"{cgroupfs.CGROUP_ROOT}/pids/{parent.strip('/')}/{cid}") or \
        os.path.isdir(f"{cgroupfs.CGROUP_ROOT}/memory/{parent.strip('/')}/{cid}")


def destroy_if_empty(parent: str, cid: str) -> None:
    """Remove ``<parent>/<cid>`` in every hierarchy unless a process is in it (then it is a
    running container's); best effort."""
    from pallet.runtime.linux.cgroup_v1 import CgroupV1

    try:
        cg = CgroupV1(parent.strip("/") + "/" + cid)
        if not cg.pids():
            cg.destroy()
    except Exception:  # noqa: BLE001 - best effort: swept again later
        pass


def drop(runroot: str, parent: str, cid: str) -> None:
    """Remove the spare (if no process is in it: then it is a container's) and its record."""
    cgroupfs.SPARE = ""
    destroy_if_empty(parent, cid)
    try:
        os.unlink(os.path.join(runroot, FILE))
    except OSError:
        pass


SWEPT: set[str] = set()  # runroots this process swept (a monitor does at its start: not again on each removal)


def sweep(runroot: str) -> None:
    """The spare of a monitor of this runroot that is gone (killed): removed (and the directories
    of its prepared container, engine.prestart)."""
    from pallet.engine import prestart

    SWEPT.add(runroot)
    prestart.sweep(runroot)
    try:
        with open(os.path.join(runroot, FILE)) as f:
            pid, parent, cid = f.read().split()
    except (OSError, ValueError):
        return
    from pallet.engine.state import alive

    if int(pid) != os.getpid() and not alive(int(pid), None):
        drop(runroot, parent, cid)
