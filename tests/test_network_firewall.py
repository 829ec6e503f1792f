"""Both firewall backends (nftables, and iptables where nft is absent) in a throwaway netns
standing in for the host, with iptables' FORWARD policy DROP as a dockerd leaves it: a
published port answers on 127.0.0.1, two containers on the bridge talk (bridged traffic
goes through FORWARD with br_netfilter), a container reaches "the outside" (another netns
with no route back: forwarding + masquerade), an --internal network does not, and once
everything is gone the netns' rules are exactly as before."""
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
root, a, b, www, backend, ext, c = sys.argv[1:8]
def state():
    return (subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.split("\n", 1)[1]
            .replace("Completed", "").splitlines()[:-1],
            subprocess.run(["nft", "-s", "list", "ruleset"], capture_output=True, text=True).stdout)
def strip(lines):
    # rules and pallet's chains; iptables-nft creates an empty nat table on first use, which
    # stays (as the built-in tables of legacy iptables, where this backend is meant to run)
    return sorted(l for l in lines if l.startswith("-A") or l.startswith(":PALLET"))
def sh(*argv):
    subprocess.run(argv, check=True)
sh("ip", "link", "set", "lo", "up")
sh("iptables", "-P", "FORWARD", "DROP")
# "the outside": another netns behind a veth, with no route back to pallet's subnets
sh("ip", "link", "add", "xo0", "type", "veth", "peer", "name", "xo1", "netns", ext)
sh("ip", "addr", "add", "198.51.100.1/24", "dev", "xo0"); sh("ip", "link", "set", "xo0", "up")
for cmd in (["ip", "addr", "add", "198.51.100.2/24", "dev", "xo1"], ["ip", "link", "set", "xo1", "up"],
            ["ip", "link", "set", "lo", "up"]):
    sh("ip", "netns", "exec", ext, *cmd)
ext_srv = subprocess.Popen(["ip", "netns", "exec", ext, "busybox", "httpd", "-f", "-p", "80", "-h", www])
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
    # outbound: forwarded and masqueraded (the outside cannot route back to the subnet)
    r = subprocess.run(["ip", "netns", "exec", b, "timeout", "3", "busybox", "wget", "-q", "-O", "-",
                        "http://198.51.100.2/"], capture_output=True, text=True)
    out["outside"] = r.stdout
    # an --internal network: no way out
    e.create("inner", subnet="10.251.0.0/24", internal=True)
    e.attach("inner", "c" * 64, f"/run/netns/{c}")
    r = subprocess.run(["ip", "netns", "exec", c, "timeout", "2", "busybox", "wget", "-q", "-O", "-",
                        "http://198.51.100.2/"], capture_output=True, text=True)
    out["internal_out"] = r.returncode
finally:
    srv.kill(); srv.wait()
    att.reservation.close()
    for cid in ("a", "b", "c"):
        e.detach_all(cid * 64)
    if "inner" in e.store.names():
        e.remove("inner")
    e.prune()
after = state()
ext_srv.kill(); ext_srv.wait()
sh("ip", "link", "del", "xo0")
out["same"] = (strip(before[0]) == strip(after[0]), before[1] == after[1] or backend == "iptables")
out["diff"] = [before, after]
print(json.dumps(out))
"""


@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_backend_in_a_private_netns(backend: str, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hi\n")
    tag = f"{os.getpid() % 100000}"
    with netnses(f"fw{tag}", f"fa{tag}", f"fb{tag}", f"fo{tag}", f"fc{tag}") as (host, a, b, ext, c):
        env = dict(os.environ, PALLET_FIREWALL=backend, PALLET_BRIDGE_NAME="pfw0", PALLET_BRIDGE_SUBNET="10.250.0.0/24",
                   PATH=f"{os.path.dirname(BUSYBOX)}:{os.environ['PATH']}")
        p = subprocess.run(["ip", "netns", "exec", host.name, sys.executable, "-c", SCRIPT, str(tmp_path / "root"),
                            a.name, b.name, str(www), backend, ext.name, c.name], capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr
        import json

        out = json.loads(p.stdout)
        assert out["loopback"] == "hi\n"
        assert out["peer"] == "hi\n"
        assert out["outside"] == "hi\n", "no outbound NAT"
        assert out["internal_out"] != 0, "an internal network reached the outside"
        assert out["chain"], "no PALLET-FORWARD beside a FORWARD policy DROP"
        assert out["same"] == [True, True], out["diff"]
