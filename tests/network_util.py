"""Helpers for the network tests: named network namespaces standing in for containers, a
normalised snapshot of the host's network state, and bounded waits."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
# other engines on this host (the anchor dockerd, private dockerds, podman's netavark)
_DOCKER = re.compile(r"docker|DOCKER|NETAVARK|netavark|CNI-|172\.17\.|^veth[0-9a-f]{7}$")


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


class Netns:
    """``ip netns add NAME``; processes started in it are killed and the netns deleted on close.
    ``hosts`` is /etc/netns/NAME/hosts, which ``ip netns exec`` bind-mounts on /etc/hosts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = f"/run/netns/{name}"
        self.etc = Path("/etc/netns") / name
        self.hosts = str(self.etc / "hosts")
        self.procs: list[subprocess.Popen[bytes]] = []
        sh("ip", "netns", "add", name)

    def exec(self, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name, *argv, check=False, timeout=timeout)

    def spawn(self, *argv: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def httpd(self, root: Path, port: int = 80) -> None:
        self.spawn(BUSYBOX, "httpd", "-f", "-p", str(port), "-h", str(root))
        wait_for(lambda: self.wget(f"http://127.0.0.1:{port}/", timeout=1).returncode == 0,
                 f"httpd in {self.name}")

    def wget(self, url: str, timeout: int = 3) -> subprocess.CompletedProcess[str]:
        # (this busybox's wget -T segfaults: bound it with timeout(1) instead)
        return self.exec("timeout", str(timeout), BUSYBOX, "wget", "-q", "-O", "-", url, timeout=timeout + 10)

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(timeout=10)
        sh("ip", "netns", "del", self.name, check=False)
        shutil.rmtree(self.etc, ignore_errors=True)


@contextmanager
def netnses(*names: str) -> Iterator[list[Netns]]:
    made: list[Netns] = []
    try:
        for n in names:
            made.append(Netns(n))
        yield made
    finally:
        for ns in made:
            ns.close()


def wait_for(cond: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        if cond():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _strip_link(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("stats", "stats64", "operstate_change")}


def _nft_tables(text: str, keep_table: str, keep_chains: tuple[str, ...] = ()) -> list[str]:
    """nft ruleset lines, without other pallet roots' tables (``table ip pallet_*``), without
    chains of other engines (DOCKER*, NETAVARK*, CNI*), and without bare braces and blank
    lines (structure that other engines' chains come and go with)."""
    out, skip, skip_chain = [], False, False
    for ln in text.splitlines():
        st = ln.strip()
        if ln.startswith("table "):
            name = ln.split()[2]
            skip = name.startswith("pallet") and name != keep_table
        elif st.startswith("chain "):
            chain = st.split()[1] if len(st.split()) > 1 else ""
            # other roots' PALLET-* chains (iptables-nft's filter table) come and go with their tests
            skip_chain = bool(_DOCKER.search(st)) or (chain.startswith("PALLET-") and chain not in keep_chains)
        if not skip and not skip_chain and st not in ("", "}"):
            out.append(ln)
        if ln == "}":
            skip = False
        elif st == "}":
            skip_chain = False
    return out


def snapshot(prefix: str | None = None, root: str | None = None) -> dict[str, object]:
    """Links, addresses, routes, nftables ruleset and iptables rules as this test sees them.

    Other actors run on this host at the same time (dockerds, other pallet roots' tests), so
    bridges not named PREFIX* (this test's, see ``default_net_env``) and the links enslaved to
    them are left out, with their addresses and routes, as are other roots' nft tables and
    PALLET-* chains (ROOT's are kept) and docker's rules. A link of ours left behind (a veth
    whose bridge is gone, an address, a route, a rule) still shows."""
    from pallet.network.firewall import names_for

    prefix = prefix or _PREFIX
    names = names_for(root) if root else None
    raw = json.loads(sh("ip", "-d", "-j", "link").stdout)
    foreign_br = {x["ifname"] for x in raw if x.get("linkinfo", {}).get("info_kind") == "bridge"
                  and not x["ifname"].startswith(prefix)}
    foreign = foreign_br | {x["ifname"] for x in raw if x.get("master") in foreign_br}
    foreign |= {x["ifname"] for x in raw if _DOCKER.search(x["ifname"])}
    plain = json.loads(sh("ip", "-j", "link").stdout)
    foreign |= {x["ifname"] for x in plain if x.get("master") in foreign_br}  # enslaved since the -d listing
    links = [_strip_link(json.loads(json.dumps(x))) for x in plain if x["ifname"] not in foreign]
    # addresses of the links listed just above only: a link another actor adds between the two
    # listings would otherwise show in one and not the other, and spoil BEFORE for good
    keep = {x["ifname"] for x in links}
    addrs = [{"ifname": x.get("ifname"), "addr": [(a.get("local"), a.get("prefixlen")) for a in x.get("addr_info", [])]}
             for x in json.loads(sh("ip", "-j", "addr").stdout) if x.get("ifname") in keep]
    all_routes = json.loads(sh("ip", "-j", "route").stdout)
    routes = [r for r in all_routes if r.get("dev") not in foreign]
    # rules naming a foreign bridge or its subnet belong to whoever made that bridge
    marks = {f'"{b}"' for b in foreign_br} | {f" {b} " for b in foreign_br}
    marks |= {r["dst"] for r in all_routes if r.get("dev") in foreign_br and "/" in r.get("dst", "")}

    def mine(ln: str) -> bool:
        if _DOCKER.search(ln) or any(m in f" {ln} " for m in marks):
            return False
        if "PALLET-" in ln:
            return names is not None and any(c in ln.split() or f":{c}" in ln.split()
                                             for c in (names.fwd, names.post, names.ports))
        return True
    keep = (names.fwd, names.post, names.ports) if names else ()
    nft = [ln for ln in _nft_tables(sh("nft", "-s", "list", "ruleset").stdout, names.table if names else "pallet_?",
                                    keep) if mine(ln)]
    ipt = [re.sub(r"\[\d+:\d+\]", "", ln) for ln in sh("iptables-save").stdout.splitlines()
           if not ln.startswith("#") and mine(ln)]
    return {"links": links, "addrs": addrs, "routes": routes, "nft": nft, "iptables": ipt}


_PREFIX = f"pt{os.getpid() % 10000}"


def default_net_env(tag: str) -> dict[str, str]:
    """Env for a test's networks: bridge names of its own (default network PREFIX+TAG, user
    networks PREFIX+TAG+N) and a default subnet, so tests never collide with a real pallet0,
    with other roots, or with each other."""
    import ipaddress

    from pallet.network.subnets import host_routes

    routes = host_routes()
    start = os.getpid() % 40
    for i in range(200):  # bounded: the first /24 of 10.200-239.x.0 free of every host route
        n = 200 + (start + i) % 40
        cand = ipaddress.ip_network(f"10.{n}.{ord(tag[0]) % 250}.0/24")
        if not any(cand.overlaps(r) for r in routes):
            break
    return {"PALLET_BRIDGE_NAME": f"{_PREFIX}{tag}", "PALLET_BRIDGE_PREFIX": f"{_PREFIX}{tag}",
            "PALLET_BRIDGE_SUBNET": str(cand)}


def assert_host_as(before: dict[str, object], root: str | None = None, prefix: str | None = None,
                   timeout: float = 15.0) -> None:
    """Assert the host's network state equals BEFORE, allowing TIMEOUT seconds for the kernel's
    asynchronous netns teardown (and other actors' transient veths) to settle; on failure the
    message shows what differs."""
    import difflib

    deadline = time.monotonic() + timeout
    now = snapshot(prefix, root)
    for _ in range(1000):
        if now == before or _only_transients_gone(before, now):
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
        now = snapshot(prefix, root)
    if now != before and not _only_transients_gone(before, now):
        diff = []
        for k in before:
            if before[k] != now[k]:  # type: ignore[index]
                a = [json.dumps(x, sort_keys=True) if not isinstance(x, str) else x for x in before[k]]  # type: ignore[attr-defined]
                b = [json.dumps(x, sort_keys=True) if not isinstance(x, str) else x for x in now[k]]  # type: ignore[index]
                diff += [f"{k}:", *difflib.unified_diff(a, b, lineterm="", n=0)]
        raise AssertionError("host network state differs from before:\n" + "\n".join(diff[:60]))


def _only_transients_gone(before: dict[str, object], now: dict[str, object]) -> bool:
    """NOW differs from BEFORE only by veths in no bridge that BEFORE caught and that are gone
    since: another actor's pair in the instant between its creation and its enslavement.
    (Anything of ours left behind is in NOW and not in BEFORE: still a failure.)"""
    links_b, links_n = before["links"], now["links"]
    gone = ({x["ifname"] for x in links_b if x["ifname"].startswith("veth") and not x.get("master")}  # type: ignore[attr-defined]
            - {x["ifname"] for x in links_n})  # type: ignore[attr-defined]
    if not gone:
        return False
    pruned = dict(before, links=[x for x in links_b if x["ifname"] not in gone],  # type: ignore[attr-defined]
                  addrs=[x for x in before["addrs"] if x["ifname"] not in gone],  # type: ignore[attr-defined]
                  routes=[r for r in before["routes"] if r.get("dev") not in gone])  # type: ignore[attr-defined]
    return pruned == now
