"""50 real containers on the default bridge, started and removed 4 at a time through the CLI
(as root): every one gets its own address, and after ``rm -f`` and ``network prune`` the host's
links, addresses, routes and firewall rules are exactly as before."""
from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from engine_helpers import bb_fixture  # noqa: F401  (registers the 'bb' fixture)
from network_util import assert_host_as, snapshot

pytestmark = pytest.mark.privileged
N, WORKERS = 50, 4


def _cli(bb, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(bb.argv(*args), env=bb.env, capture_output=True, text=True, timeout=60)


def test_fifty_containers_four_at_a_time_leave_nothing(bb) -> None:  # type: ignore[no-untyped-def]
    prefix, root = bb.env["PALLET_BRIDGE_NAME"], str(bb.root)
    before = snapshot(prefix=prefix, root=root)
    names = [f"n{i:02d}" for i in range(N)]
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            runs = list(pool.map(lambda n: _cli(bb, "run", "-d", "--name", n, "busybox", "sleep", "120"), names))
        assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs if r.returncode][:3]
        info = json.loads(bb("inspect", *names).out)
        ips = [c["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] for c in info]
        assert len(set(ips)) == N and all(ips), "an address was handed out twice"
        assert all(c["State"]["Running"] for c in info)
        with ThreadPoolExecutor(WORKERS) as pool:
            rms = list(pool.map(lambda n: _cli(bb, "rm", "-f", n), names))
        assert all(r.returncode == 0 for r in rms), [r.stderr for r in rms if r.returncode][:3]
        assert bb("ps", "-aq").out == ""
        eps = bb.runroot / "networks" / "bridge.endpoints.json"
        assert not eps.exists() or json.loads(eps.read_text()).get("endpoints") == {}, eps.read_text()[:300]
    finally:
        ids = bb("ps", "-aq", "--no-trunc", check=False).out.split()
        if ids:
            bb("rm", "-f", *ids, check=False)
        bb("network", "prune", "-f", check=False)
    assert_host_as(before, root=root, prefix=prefix)
