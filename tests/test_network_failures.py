"""Failures while creating, activating or attaching to a network leave nothing behind: no nft
table, no PALLET-* chain, no bridge, no veth, no address or route, no endpoint record. And a
root reached through a symlink (pytest's ``NAMEcurrent``) is one root: taking its network
down through either path removes its rules.

Each scenario runs in a throwaway network namespace standing in for the host (iptables'
FORWARD policy DROP, as a dockerd leaves it, so that pallet makes its PALLET-FORWARD chain),
so the whole ruleset and link list can be compared with the one before, exactly. Faults are
real: bad input, a taken subnet or device name, a container netns that does not exist, and
an ``iptables`` that refuses to insert pallet's jump (the half-way point of an activation:
the nft table and the chain are made by then)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from network_util import netnses

pytestmark = pytest.mark.privileged

SCRIPT = r"""
import json, os, socket, subprocess, sys
from pallet.errors import Conflict, InvalidArgument, OSFailure, Unavailable
from pallet.network.endpoint import Endpoints
from pallet.network.ports import parse_publish

base, ctr, fakebin = sys.argv[1:4]
def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True)
def state():
    ipt = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.splitlines()
    return {"nft": subprocess.run(["nft", "-s", "list", "ruleset"], capture_output=True, text=True).stdout,
            "iptables": sorted(l for l in ipt if l.startswith("-A") or l.startswith(":PALLET")),
            "links": sorted(os.listdir("/sys/class/net")),
            "addrs": sorted(" ".join(l.split()[1:4]) for l in subprocess.run(
                ["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout.splitlines()),
            "routes": subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout}
sh("ip", "link", "set", "lo", "up")
sh("iptables", "-P", "FORWARD", "DROP")
# iptables-nft makes a built-in chain on its first use, for good (as legacy iptables' are always
# there): use the ones pallet's iptables backend uses once, before the baseline
for chain in ("PREROUTING", "OUTPUT", "POSTROUTING"):
    sh("iptables", "-t", "nat", "-A", chain, "-j", "ACCEPT")
    sh("iptables", "-t", "nat", "-D", chain, "-j", "ACCEPT")
# a host route that user networks must not overlap
sh("ip", "link", "add", "hostnet0", "type", "veth", "peer", "name", "hostnet1")
sh("ip", "addr", "add", "10.241.0.1/24", "dev", "hostnet0")
sh("ip", "link", "set", "hostnet0", "up")
sh("ip", "link", "set", "hostnet1", "up")
before = state()
out = {}
def case(name, fn, exc, match, e):
    try:
        fn()
        out[name] = "no error"
        return
    except exc as err:
        msg = str(err)
    except Exception as err:
        out[name] = f"{type(err).__name__}: {err}"
        return
    records = {n.name: e.store.endpoints(n.name) for n in e.store.all()}
    now = state()
    out[name] = {"msg": msg, "matched": match in msg, "one_line": "\n" not in msg,
                 "records": {k: list(v) for k, v in records.items() if v},
                 "diff": {k: [before[k], now[k]] for k in before if before[k] != now[k]}}

e = Endpoints(os.path.join(base, "root"))
e.create("one", subnet="10.240.1.0/24")
case("bad_subnet", lambda: e.create("bad", subnet="300.1.0.0/16"), InvalidArgument, "invalid subnet", e)
case("gateway_outside", lambda: e.create("gw", subnet="10.240.9.0/24", gateway="10.240.10.1"),
     InvalidArgument, "gateway", e)
case("overlaps_a_network", lambda: e.create("two", subnet="10.240.1.128/25"), Conflict, "overlap", e)
case("overlaps_a_host_route", lambda: e.create("three", subnet="10.241.0.0/16"), Conflict, "overlap", e)
# a subnet another program took while the network was down: refused at activation
late = e.create("late", subnet="10.242.0.0/24")
sh("ip", "link", "add", "taker0", "type", "veth", "peer", "name", "taker1")
sh("ip", "addr", "add", "10.242.0.1/24", "dev", "taker0")
sh("ip", "link", "set", "taker0", "up")
sh("ip", "link", "set", "taker1", "up")
before_taker = before
before = state()
case("subnet_taken_meanwhile", lambda: e.attach("late", "a" * 64, ctr), Conflict, "cannot be brought up", e)
sh("ip", "link", "del", "taker0")
before = before_taker
# the bridge's device name taken by another program (or another root)
sh("ip", "link", "add", e.get("one").bridge, "type", "bridge")
before = state()
case("bridge_name_taken", lambda: e.attach("one", "b" * 64, ctr), Conflict, "not this network's bridge", e)
sh("ip", "link", "del", e.get("one").bridge)
before = before_taker
# a host port in use: refused before anything is made
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
port = s.getsockname()[1]
case("host_port_in_use", lambda: e.attach("one", "c" * 64, ctr, publish=[parse_publish(f"127.0.0.1:{port}:80")]),
     Conflict, str(port), e)
s.close()
# the container's netns is gone: the network was brought up for it, and goes down again
case("netns_missing", lambda: e.attach("one", "d" * 64, "/run/netns/pallet-no-such-netns"), OSFailure,
     "pallet-no-such-netns", e)
# half-way through activation: bridge, nft table and PALLET-FORWARD made, the jump refused
os.environ["PATH"] = f"{fakebin}:{os.environ['PATH']}"
case("firewall_fails_half_way", lambda: e.attach("one", "e" * 64, ctr, publish=[parse_publish("127.0.0.1::80")]),
     Unavailable, "injected", e)
out["half_way_reached"] = os.path.exists(os.path.join(fakebin, "reached"))
os.environ["PATH"] = os.environ["PATH"].split(":", 1)[1]
# and it all works afterwards, then goes away
ok = e.attach("one", "f" * 64, ctr, publish=[parse_publish("127.0.0.1::80")])
ok.reservation.close()
out["up"] = e.get("one").bridge in state()["links"].__str__()
e.detach("one", "f" * 64)
e.remove("one")
e.remove("late")
e.prune()
out["end"] = {k: [before[k], v] for k, v in state().items() if before[k] != v}
print(json.dumps(out))
"""


def _fakebin(d: Path) -> Path:
    """An ``iptables`` that refuses to insert a rule (``-I``) and otherwise is the real one."""
    real = shutil.which("iptables")
    assert real, "iptables is not installed"
    d.mkdir()
    (d / "iptables").write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do [ "$a" = -I ] && {{ touch {d}/reached; echo "iptables: injected failure" >&2; exit 1; }}; done\n'
        f'exec {real} "$@"\n')
    os.chmod(d / "iptables", 0o755)
    return d


@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_failures_leave_nothing(backend: str, tmp_path: Path) -> None:
    tag = f"{os.getpid() % 100000}"
    with netnses(f"nfh{tag}", f"nfc{tag}") as (host, ctr):
        env = dict(os.environ, PALLET_FIREWALL=backend)
        for k in ("PALLET_BRIDGE_NAME", "PALLET_BRIDGE_PREFIX", "PALLET_BRIDGE_SUBNET"):
            env.pop(k, None)
        p = subprocess.run(["ip", "netns", "exec", host.name, sys.executable, "-c", SCRIPT, str(tmp_path),
                            ctr.path, str(_fakebin(tmp_path / "bin"))],
                           capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        assert "eth0" not in ctr.exec("ip", "-o", "link").stdout  # no half-made interface in the container
    assert out.pop("half_way_reached"), "the injected iptables failure was never reached"
    assert out.pop("up") and out.pop("end") == {}
    for name, res in out.items():
        assert isinstance(res, dict), f"{name}: {res}"
        assert res["matched"] and res["one_line"], f"{name}: {res['msg']}"
        assert res["records"] == {}, f"{name}: endpoint records left: {res['records']}"
        assert res["diff"] == {}, f"{name} left state behind: {res['diff']}"


SYMLINK_SCRIPT = r"""
import os, subprocess, sys
from pallet.network.endpoint import Endpoints
from pallet.network.manager import Networks

real, link, ctr = sys.argv[1:4]
def rules():
    return (subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout,
            [l for l in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.splitlines()
             if "PALLET" in l], os.listdir("/sys/class/net"))
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["iptables", "-P", "FORWARD", "DROP"], check=True)
before = rules()
# up through the real path, down through the symlink
e = Endpoints(os.path.join(real, "root"))
e.attach("bridge", "a" * 64, ctr)
assert rules() != before, "nothing was brought up"
e.detach("bridge", "a" * 64)
Networks(os.path.join(link, "root")).prune()
assert rules() == before, ("prune through a symlink", before, rules())
# a bridge deleted by hand: the next prune still removes its rules
e.attach("bridge", "b" * 64, ctr)
e.detach("bridge", "b" * 64)
subprocess.run(["ip", "link", "del", e.get("bridge").bridge], check=True)
assert rules() != before
Networks(os.path.join(link, "root")).prune()
assert rules() == before, ("prune after the bridge vanished", before, rules())
print("ok")
"""


def test_a_root_reached_through_a_symlink_is_one_root(tmp_path: Path) -> None:
    real, link = tmp_path / "n0", tmp_path / "ncurrent"
    real.mkdir()
    link.symlink_to(real)
    tag = f"{os.getpid() % 100000}"
    with netnses(f"nsh{tag}", f"nsc{tag}") as (host, ctr):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PALLET_BRIDGE")}
        p = subprocess.run(["ip", "netns", "exec", host.name, sys.executable, "-c", SYMLINK_SCRIPT, str(real),
                            str(link), ctr.path], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-3000:]
