"""Both firewall backends (nftables, and iptables where nft is absent) in a throwaway netns
standing in for the host, with iptables' FORWARD policy DROP as a dockerd leaves it: a
published port answers on 127.0.0.1, two containers on the bridge talk (bridged traffic
goes through FORWARD with br_netfilter), and once everything is gone the netns' rules are
exactly as before."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from network_util import BUSYBOX, netnses

pytestmark = pytest.mark.privileged

SCRIPT = r"""
import json, subprocess, sys, time, urllib.request
from pallet.network.endpoint import Endpoints
from pallet.network.ports import parse_publish
root, a, b, www = sys.argv[1:5]
def state():
    return (subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.split("\n", 1)[1]
            .replace("Completed", "").splitlines()[:-1],
            subprocess.run(["nft", "-s", "list", "ruleset"], capture_output=True, text=True).stdout)
def strip(lines):
    # rules and pallet's chains; iptables-nft creates an empty nat table on first use, which
    # stays (as the built-in tables of legacy iptables, where this backend is meant to run)
    return sorted(l for l in lines if l.startswith("-A") or l.startswith(":PALLET"))
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["iptables", "-P", "FORWARD", "DROP"], check=True)
before = state()
e = Endpoints(root)
att = e.attach("bridge", "a" * 64, f"/run/netns/{a}", publish=[parse_publish("127.0.0.1::80")])
e.attach("bridge", "b" * 64, f"/run/netns/{b}")
srv = subprocess.Popen(["ip", "netns", "exec", a, "busybox", "httpd", "-f", "-p", "80", "-h", www])
out = {"chain": "PALLET-FORWARD" in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout}
try:
    port = att.endpoint.ports[0].host_port
    for _ in range(100):
        try:
            out["loopback"] = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
            break
        except OSError:
            time.sleep(0.05)
    r = subprocess.run(["ip", "netns", "exec", b, "timeout", "3", "busybox", "wget", "-q", "-O", "-",
                        f"http://{att.endpoint.ip}/"], capture_output=True, text=True)
    out["peer"] = r.stdout
finally:
    srv.kill(); srv.wait()
    att.reservation.close()
    e.detach_all("a" * 64); e.detach_all("b" * 64); e.prune()
after = state()
out["same"] = (strip(before[0]) == strip(after[0]), before[1] == after[1] or sys.argv[5] == "iptables")
out["diff"] = [before, after]
print(json.dumps(out))
"""


@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_backend_in_a_private_netns(backend: str, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hi\n")
    tag = f"{os.getpid() % 100000}"
    with netnses(f"fw{tag}", f"fa{tag}", f"fb{tag}") as (host, a, b):
        env = dict(os.environ, PALLET_FIREWALL=backend, PALLET_BRIDGE_NAME="pfw0", PALLET_BRIDGE_SUBNET="10.250.0.0/24",
                   PATH=f"{os.path.dirname(BUSYBOX)}:{os.environ['PATH']}")
        p = subprocess.run(["ip", "netns", "exec", host.name, sys.executable, "-c", SCRIPT, str(tmp_path / "root"),
                            a.name, b.name, str(www), backend], capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr
        import json

        out = json.loads(p.stdout)
        assert out["loopback"] == "hi\n"
        assert out["peer"] == "hi\n"
        assert out["chain"], "no PALLET-FORWARD beside a FORWARD policy DROP"
        assert out["same"] == [True, True], out["diff"]
