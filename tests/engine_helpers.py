"""Helpers for the engine tests: a pallet root with busybox imported, and leak checks
(mounts, cgroups, processes, container dirs) run after every test."""
from __future__ import annotations

import glob
import os
import time
from pathlib import Path

import pytest

CGROUP_PARENT = f"pallet-test-{os.getpid()}"


def cgroups() -> set[str]:
    """This test process's container cgroups (its own parent, PALLET_CGROUP_PARENT)."""
    return {p for p in glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}/*") if os.path.isdir(p)}


def remove_cgroup_parents() -> None:
    for p in glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}"):
        try:
            os.rmdir(p)
        except OSError:
            pass


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if str(path) in ln]


def monitor_pid(runroot: Path) -> int:
    try:
        return int((runroot / "monitor.pid").read_text())
    except (OSError, ValueError):
        return 0


def wait_until(pred, timeout: float = 10.0, step: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def processes_in(root: Path | str) -> list[int]:
    """Pids whose environment names this pallet root (or a root under this directory): the CLI and the monitor."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if f"PALLET_ROOT={root}".encode() in env:
            out.append(int(d))
    return out


def check_clean(pallet, before_cgroups: set[str]) -> None:  # type: ignore[no-untyped-def]
    """Remove every container, then: no container, no mount, no cgroup, no process, no dir, no bridge left."""
    ids = pallet("ps", "-aq", "--no-trunc", check=False).out.split()
    if ids:
        pallet("rm", "-f", *ids, check=False)
    pallet("network", "prune", "-f", check=False)
    bridge = pallet.env["PALLET_BRIDGE_NAME"]
    assert not os.path.exists(f"/sys/class/net/{bridge}"), f"bridge {bridge} left"
    assert wait_until(lambda: not processes_in(pallet.root), 10), f"processes left: {processes_in(pallet.root)}"
    assert not mounts_under(pallet.root), mounts_under(pallet.root)
    assert not mounts_under(pallet.runroot), mounts_under(pallet.runroot)
    left = cgroups() - before_cgroups
    assert not left, f"cgroups left: {left}"
    cdir = pallet.root / "containers"
    assert not cdir.exists() or not list(cdir.iterdir()), list(cdir.iterdir())


@pytest.fixture(name="bb")
def bb_fixture(pallet, busybox_tar, monkeypatch):  # type: ignore[no-untyped-def]
    """``pallet`` with busybox:latest imported; leak-checked after the test."""
    pallet.env["PALLET_MONITOR_LINGER"] = "0.3"
    pallet.env["PALLET_CGROUP_PARENT"] = CGROUP_PARENT
    # a bridge and subnet of this test's own (never the host's pallet0), taken down after it
    n = os.getpid() % 50 + 200
    pallet.env["PALLET_BRIDGE_NAME"] = f"pe{n}"
    pallet.env["PALLET_BRIDGE_PREFIX"] = f"pe{n}x"
    pallet.env["PALLET_BRIDGE_SUBNET"] = f"10.{n}.7.0/24"
    pallet.env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = cgroups()
    pallet("import", str(busybox_tar), "busybox:latest")
    yield pallet
    try:
        check_clean(pallet, before)
    finally:
        remove_cgroup_parents()
