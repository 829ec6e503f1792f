"""The engine-facing facade (pallet.network.api), as root: a netns file made and pinned by
pallet, setup with published ports, a server in it, teardown; nothing left behind."""
from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from network_util import BUSYBOX, assert_host_as, default_net_env, snapshot

from pallet.errors import Conflict
from pallet.network import api, etcfiles

pytestmark = pytest.mark.privileged


def test_setup_publish_teardown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in default_net_env("a").items():
        monkeypatch.setenv(k, v)
    root, run = str(tmp_path / "root"), str(tmp_path / "run")
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("api\n")
    before = snapshot(root=root)
    cid, cid2 = "a1" * 32, "b2" * 32
    ns, ns2 = api.netns_path(run, cid), api.netns_path(run, cid2)
    api.create_netns(ns)
    api.create_netns(ns2)
    srv = None
    try:
        hosts = tmp_path / "hosts"
        s = api.setup(root, run, cid, ns, name="svc", publish=["127.0.0.1::80"], publish_all=True,
                      exposed={"80/tcp": {}, "53/udp": {}}, hosts_path=str(hosts))
        hosts.write_text(etcfiles.hosts_content("svc", s.ip))
        api.refresh_hosts(root, run, cid)
        assert s.info["networks"]["bridge"]["IPAddress"] == s.ip
        assert sorted(s.info["ports_map"]) == ["53/udp", "80/tcp"]  # -P adds 53/udp only
        (line80,) = [ln for ln in s.info["ports"] if ln.endswith("->80/tcp")]
        assert line80.startswith("127.0.0.1:")
        assert sorted(api.container_ports(root, run, cid))[1].startswith("80/tcp -> 127.0.0.1:")
        srv = subprocess.Popen(["nsenter", f"--net={ns}", BUSYBOX, "httpd", "-f", "-p", "80", "-h", str(www)])
        url = f"http://{line80.split('->')[0]}/"
        for _ in range(100):
            try:
                assert urllib.request.urlopen(url, timeout=2).read() == b"api\n"
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("published port never answered")
        # the same host port for a second container: refused, its netns untouched
        with pytest.raises(Conflict):
            api.setup(root, run, cid2, ns2, publish=[f"{line80.split('->')[0]}:80"])
        out = subprocess.run(["nsenter", f"--net={ns2}", "ip", "-br", "link"], capture_output=True, text=True).stdout
        assert "eth0" not in out
        s.reservation.close()
    finally:
        if srv is not None:
            srv.kill()
            srv.wait()
        api.teardown(root, run, cid, ns)
        api.teardown(root, run, cid2, ns2)
        api.teardown(root, run, cid, ns)  # idempotent
    assert not os.path.exists(ns)
    from pallet.network.manager import Networks

    Networks(root, run).prune()
    assert_host_as(before, root=root)  # (veths vanish with their netns asynchronously)
