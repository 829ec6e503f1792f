"""One conformance suite for every registered cgroup manager (v1, v2): create, place a process,
freeze/thaw, list, stats, destroy with a process still inside; nothing left behind."""
from __future__ import annotations

import os
import time

import pytest
from runtime_util import new_id

from pallet.runtime.linux import cgroups

pytestmark = pytest.mark.privileged


def _available(name: str) -> bool:
    if name == "v2":
        return os.path.exists(cgroups.unified_root() + "/cgroup.procs")
    return os.path.isdir(cgroups.CGROUP_ROOT + "/memory") or os.path.isdir(cgroups.CGROUP_ROOT + "/pids")


@pytest.mark.parametrize("name", sorted(cgroups.BACKENDS))
def test_manager_conformance(name: str) -> None:
    if not _available(name):
        pytest.skip(f"no cgroup {name} hierarchy here")
    cg = cgroups.manager(name, f"/pallet-runtime/{new_id('cg')}")
    cg.create({})
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    try:
        assert cg.exists()
        cg.add(pid)
        assert cg.pids() == [pid]
        cg.freeze()
        assert cg.frozen()
        assert open(f"/proc/{pid}/stat").read().split()[2] in ("D", "S")
        cg.thaw()
        assert not cg.frozen()
        assert "cpu" in cg.stats()
        assert not cg.oom_killed()
        cg.destroy()  # kills what is inside
        assert os.waitpid(pid, 0)[0] == pid
        assert not cg.exists()
        cg.destroy()  # idempotent
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        cg.destroy()


def test_unknown_manager_and_systemd_path() -> None:
    from pallet.errors import InvalidArgument, NotImplementedFeature

    with pytest.raises(InvalidArgument, match="unknown cgroup manager"):
        cgroups.manager("v3", "/x")
    with pytest.raises(NotImplementedFeature, match="systemd"):
        cgroups.manager(None, "system.slice:pallet:x")
