"""After the engine tests (this file sorts after them): nothing of theirs is left on the host."""
from __future__ import annotations

import glob
import os

import pytest
from engine_helpers import CGROUP_PARENT, processes_in, wait_until

pytestmark = pytest.mark.privileged


def test_engine_suite_left_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = str(tmp_path_factory.getbasetemp())
    assert not glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}"), "cgroup parents left"
    with open("/proc/self/mountinfo") as f:
        left = [ln for ln in f if base in ln]
    assert not left, left
    # a monitor lingers PALLET_MONITOR_LINGER (2 s by default) after its last use, then exits
    assert wait_until(lambda: not processes_in(base), 15), "pallet processes (monitor or containers) left"
    upper = [p for p in glob.glob(os.path.join(base, "*", "root", "containers", "*")) if os.path.isdir(p)]
    assert not upper, upper


def test_no_network_of_an_earlier_test_is_up(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test's roots had their networks taken down at its end (the ``pallet`` fixture, or
    conftest's ``_test_roots_down`` for roots of other fixtures): no bridge, nft table or
    PALLET-* chain of a root under the session's temp dir is up (other roots' are not counted:
    each item carries its root's path hash). The session's end checks the same again, after
    every module."""
    from conftest import FIREWALL_BEFORE, network_leftovers

    left = network_leftovers(tmp_path_factory.getbasetemp(), FIREWALL_BEFORE)
    assert not left, left
