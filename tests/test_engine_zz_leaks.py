"""After the engine tests (this file sorts after them): nothing of theirs is left on the host."""
from __future__ import annotations

import glob
import os

import pytest
from engine_helpers import CGROUP_PARENT, processes_in

pytestmark = pytest.mark.privileged


def test_engine_suite_left_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = str(tmp_path_factory.getbasetemp())
    assert not glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}"), "cgroup parents left"
    with open("/proc/self/mountinfo") as f:
        left = [ln for ln in f if base in ln]
    assert not left, left
    assert not processes_in(base), "pallet processes (monitor or containers) left"
    upper = [p for p in glob.glob(os.path.join(base, "*", "root", "containers", "*")) if os.path.isdir(p)]
    assert not upper, upper
