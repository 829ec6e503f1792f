"""The link backends (stdlib rtnl, pyroute2) pass one conformance test (as root): the same
interface, address, MAC, route and lo in the netns; traffic flows; a failed plug leaves
nothing; the host ends as it began."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from network_util import assert_host_as, default_net_env, netnses, snapshot

from pallet.errors import OSFailure
from pallet.network.endpoint import Endpoints
from pallet.network.links import BACKENDS

pytestmark = pytest.mark.privileged


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_conformance(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PALLET_NETLINK", backend)
    for k, v in default_net_env("l").items():
        monkeypatch.setenv(k, v)
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("links\n")
    before = snapshot(root=str(tmp_path / "root"))
    eps = Endpoints(tmp_path / "root")
    tag = f"{os.getpid() % 100000}"
    try:
        with netnses(f"la{tag}", f"lb{tag}") as (a, b):
            ea = eps.attach("bridge", "a" * 64, a.path).endpoint
            eps.attach("bridge", "b" * 64, b.path)
            links = {x["ifname"]: x for x in json.loads(a.exec("ip", "-j", "addr").stdout)}
            assert set(links) == {"lo", "eth0"}
            eth0 = links["eth0"]
            assert eth0["address"] == ea.mac and "UP" in eth0["flags"] and "UP" in links["lo"]["flags"]
            assert [(i["local"], i["prefixlen"]) for i in eth0["addr_info"] if i["family"] == "inet"] == \
                [(ea.ip, 24)]
            (route,) = json.loads(a.exec("ip", "-j", "route", "show", "default").stdout)
            assert route["gateway"] == eps.get("bridge").gateway and route["dev"] == "eth0"
            a.httpd(www)
            assert b.wget(f"http://{ea.ip}/").stdout == "links\n"
            # a netns that does not exist: an error naming it, nothing half-made
            with pytest.raises(OSFailure):
                eps.attach("bridge", "c" * 64, "/run/netns/does-not-exist")
            assert sorted(eps.store.endpoints("bridge")) == ["a" * 64, "b" * 64]
            eps.detach("bridge", "a" * 64)
            assert "eth0" not in a.exec("ip", "-br", "link").stdout
            eps.detach("bridge", "b" * 64)
    finally:
        eps.detach_all("a" * 64)
        eps.detach_all("b" * 64)
        eps.prune()
    assert_host_as(before, root=str(tmp_path / "root"))
