"""Concurrent starts (as root): IPAM never hands out one address twice, and 50 attach/detach
4 at a time leave nothing behind on the host."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from network_util import assert_host_as, default_net_env, netnses, snapshot

from pallet.network.endpoint import Endpoints

pytestmark = pytest.mark.privileged
N, WORKERS = 50, 4

WORKER = """
import json, sys
from pallet.network.endpoint import Endpoints
root, net, mode, jobs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
e = Endpoints(root)
out = {}
for cid, ns in jobs:
    if mode == "attach":
        out[cid] = e.attach(net, cid, ns, name=cid[:8]).endpoint.ip
    else:
        e.detach(net, cid)
print(json.dumps(out))
"""


def _run_workers(root: Path, net: str, mode: str, jobs: list[tuple[str, str]]) -> dict[str, str]:
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(root), net, mode, json.dumps(jobs[i::WORKERS])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(WORKERS)]
    out: dict[str, str] = {}
    for p in procs:
        so, se = p.communicate(timeout=120)
        assert p.returncode == 0, se
        out.update(json.loads(so))
    return out


def test_fifty_concurrent_attach_detach(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in default_net_env("c").items():
        monkeypatch.setenv(k, v)
    root = tmp_path / "root"
    before = snapshot(root=str(root))
    eps = Endpoints(root)
    tag = os.getpid() % 100000
    names = [f"pc{tag}-{i}" for i in range(N)]
    try:
        # a small user network too: its /26 has 61 host addresses for 50 endpoints
        eps.create(f"crowd{tag}", subnet="10.231.7.0/26")
        with netnses(*names) as nss:
            jobs = [(f"{i:02d}" * 32, ns.path) for i, ns in enumerate(nss)]
            ips = _run_workers(root, f"crowd{tag}", "attach", jobs)
            assert len(ips) == N and len(set(ips.values())) == N, "an address was handed out twice"
            recorded = {cid: ep.ip for cid, ep in eps.store.endpoints(f"crowd{tag}").items()}
            assert recorded == ips
            veths = {ep.veth for ep in eps.store.endpoints(f"crowd{tag}").values()}
            assert all(os.path.exists(f"/sys/class/net/{v}") for v in veths)
            for (cid, _path), ns in list(zip(jobs, nss, strict=True))[:: N // 5]:
                assert f"inet {ips[cid]}/26" in ns.exec("ip", "-4", "addr", "show", "eth0").stdout
            _run_workers(root, f"crowd{tag}", "detach", jobs)
            assert eps.store.endpoints(f"crowd{tag}") == {}
            assert not any(os.path.exists(f"/sys/class/net/{v}") for v in veths)  # gone before the netns
    finally:
        for n in eps.store.all():
            for cid in list(eps.store.endpoints(n.name)):
                eps.detach(n.name, cid)
            if n.name != "bridge":
                eps.remove(n.name)
        eps.prune()
    assert_host_as(before, root=str(root))
