"""NAT, forwarding, isolation and published ports: rendered from state, applied atomically.

The firewall is a pure function of the store: the active networks (their bridges exist)
and the ports their endpoints publish. ``apply`` renders pallet's own table (one per root, see ``names_for``) and replaces
it in one ``nft -f`` transaction (``table ip pallet; delete table ip pallet; table ip
pallet {...}``), or deletes it when nothing is active. Nothing outside that table is
touched, except one chain in iptables' filter table (below).

Published ports are kernel DNAT (as docker with ``--userland-proxy=false``): prerouting for
traffic from outside, output for the host's own connections, with
``net.ipv4.conf.BRIDGE.route_localnet=1`` and a masquerade for 127.0.0.0/8 sources so that
127.0.0.1:PORT reaches the container. Port maps are nft maps keyed by (address, port) or by
port alone, so the rule count does not grow with the number of ports.

iptables beside us: a drop in any base chain on a hook is final, so pallet's accepts cannot
override the FORWARD policy DROP that dockerd leaves in iptables' filter table (nf_tables
backend here). When that chain drops (policy DROP or any rule in it), pallet adds its own
chain PALLET-FORWARD (accept from/to its bridges) and one jump at the top of FORWARD, and
removes both when no network is active, as podman does. Where nft is absent the whole
firewall is rendered as iptables-restore batches in PALLET-* chains instead.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import NamedTuple

from pallet.errors import Unavailable
from pallet.network.model import NetworkConfig, PortMapping

DEFAULT_ROOT = "/var/lib/pallet"


class Names(NamedTuple):
    """Pallet's table and chains for one root: ``pallet`` / ``PALLET-FORWARD`` for the default
    root, suffixed with a hash of the root otherwise, so that two roots on one host (tests
    beside a real store) never overwrite each other's rules."""

    table: str
    fwd: str
    post: str
    ports: str


def names_for(root: str) -> Names:
    """The names for ROOT, hashed from its canonical path (symlinks resolved): a root reached
    through two paths (``/tmp/x/current`` -> ``/tmp/x/n0``, as pytest's ``*current`` links) is
    one root and must name one table, or taking the network down through one path would leave
    the rules the other path made (the bridge gone, so no later ``prune`` would look again)."""
    import zlib

    root = os.path.realpath(root)
    sfx = "" if root == os.path.realpath(DEFAULT_ROOT) else f"{zlib.crc32(root.encode()):08x}"
    dash = f"-{sfx}" if sfx else ""
    return Names(f"pallet_{sfx}" if sfx else "pallet", f"PALLET-FORWARD{dash}", f"PALLET-POSTROUTING{dash}",
                 f"PALLET-PORTS{dash}")


DEFAULT_NAMES = names_for(DEFAULT_ROOT)


class Published(NamedTuple):
    port: PortMapping
    ip: str  # the container's address


def _run(argv: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise Unavailable(f"{argv[0]} is not installed") from None
    if check and p.returncode != 0:
        msg = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[0]
        raise Unavailable(f"{' '.join(argv[:2])} failed: {msg}")
    return p


def backend() -> str:
    """``nft`` or ``iptables`` (forced with PALLET_FIREWALL=iptables|nft)."""
    forced = os.environ.get("PALLET_FIREWALL")
    if forced in ("nft", "iptables"):
        return forced
    return "nft" if shutil.which("nft") else "iptables"


# nftables -------------------------------------------------------------------------------
def _elements(items: list[str]) -> str:
    return f"elements = {{ {', '.join(items)} }}" if items else ""


def render_nft(nets: list[NetworkConfig], pubs: list[Published], names: Names = DEFAULT_NAMES) -> str:
    """The whole ``table ip pallet`` (or its deletion when NETS is empty)."""
    head = f"table ip {names.table}\ndelete table ip {names.table}\n"
    if not nets:
        return head
    bridges = ", ".join(f'"{n.bridge}"' for n in nets)
    maps: dict[str, list[str]] = {"tcp_any": [], "tcp_addr": [], "udp_any": [], "udp_addr": []}
    for p in pubs:
        dest = f"{p.ip} . {p.port.container_port}"
        if p.port.host_ip in ("", "0.0.0.0"):
            maps[f"{p.port.proto}_any"].append(f"{p.port.host_port} : {dest}")
        else:
            maps[f"{p.port.proto}_addr"].append(f"{p.port.host_ip} . {p.port.host_port} : {dest}")
    lines = [f"table ip {names.table} {{", f"  set bridges {{ type ifname; elements = {{ {bridges} }}; }}"]
    for name, items in maps.items():
        key = "inet_service" if name.endswith("_any") else "ipv4_addr . inet_service"
        lines.append(f"  map {name} {{ type {key} : ipv4_addr . inet_service; {_elements(items)} }}")
    lines += [
        "  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;",
        "    fib daddr type local jump ports", "  }",
        "  chain output {", "    type nat hook output priority -100; policy accept;",
        "    fib daddr type local jump ports", "  }",
        "  chain ports {",
        "    dnat ip to ip daddr . tcp dport map @tcp_addr", "    dnat ip to tcp dport map @tcp_any",
        "    dnat ip to ip daddr . udp dport map @udp_addr", "    dnat ip to udp dport map @udp_any", "  }",
        "  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;",
        "    ip saddr 127.0.0.0/8 oifname @bridges masquerade",
    ]
    for n in nets:
        lines.append(f'    oifname "{n.bridge}" ip saddr {n.subnet} ct status dnat masquerade')
        if not n.internal:
            lines.append(f'    ip saddr {n.subnet} oifname != "{n.bridge}" masquerade')
    lines += ["  }", "  chain forward {", "    type filter hook forward priority filter; policy accept;"]
    for n in nets:
        if n.internal:
            lines.append(f'    iifname "{n.bridge}" oifname != "{n.bridge}" drop')
            lines.append(f'    oifname "{n.bridge}" iifname != "{n.bridge}" drop')
        lines.append(f'    oifname "{n.bridge}" iifname @bridges iifname != "{n.bridge}" drop')
    lines += ["  }", "}", ""]
    return head + "\n".join(lines)


# iptables -------------------------------------------------------------------------------
def _forward_drops() -> bool:
    """Does iptables' FORWARD chain drop anything (policy DROP, or rules in it)?"""
    if not shutil.which("iptables-save"):
        return False
    out = _run(["iptables-save", "-t", "filter"], check=False).stdout
    for line in out.splitlines():
        if line.startswith(":FORWARD ") and "DROP" in line:
            return True
        if line.startswith("-A FORWARD ") and "-j PALLET-FORWARD" not in line:
            return True
    return False


def _has_chain(table: str, chain: str) -> bool:
    # iptables-save never creates a table; ``iptables -S`` (nf_tables backend) may
    if not shutil.which("iptables-save"):
        return False
    out = _run(["iptables-save", "-t", table], check=False).stdout
    return f"\n:{chain} " in out


def render_iptables(nets: list[NetworkConfig], pubs: list[Published], full: bool,
                    names: Names = DEFAULT_NAMES) -> str:
    """iptables-restore --noflush input: the filter chain (and, when FULL, NAT chains too)."""
    fwd, post, ports = names.fwd, names.post, names.ports
    out = ["*filter", f":{fwd} - [0:0]"]
    if full:
        for n in nets:
            for m in nets:
                if m.bridge != n.bridge:
                    out.append(f"-A {fwd} -i {m.bridge} -o {n.bridge} -j DROP")
            if n.internal:
                out.append(f"-A {fwd} -i {n.bridge} ! -o {n.bridge} -j DROP")
                out.append(f"-A {fwd} -o {n.bridge} ! -i {n.bridge} -j DROP")
    for n in nets:
        out.append(f"-A {fwd} -i {n.bridge} -j ACCEPT")
        out.append(f"-A {fwd} -o {n.bridge} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT")
    out.append("COMMIT")
    if full:
        out += ["*nat", f":{post} - [0:0]", f":{ports} - [0:0]"]
        for n in nets:
            out.append(f"-A {post} -s 127.0.0.0/8 -o {n.bridge} -j MASQUERADE")
            out.append(f"-A {post} -s {n.subnet} -o {n.bridge} -m conntrack --ctstate DNAT"
                       " -j MASQUERADE")
            if not n.internal:
                out.append(f"-A {post} -s {n.subnet} ! -o {n.bridge} -j MASQUERADE")
        for p in pubs:
            dst = f"-d {p.port.host_ip} " if p.port.host_ip not in ("", "0.0.0.0") else ""
            out.append(f"-A {ports} {dst}-p {p.port.proto} --dport {p.port.host_port} -j DNAT"
                       f" --to-destination {p.ip}:{p.port.container_port}")
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def _jumps(n: Names) -> list[tuple[str, str, list[str]]]:
    return [("filter", "FORWARD", ["-j", n.fwd]),
            ("nat", "POSTROUTING", ["-j", n.post]),
            ("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", n.ports]),
            ("nat", "OUTPUT", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", n.ports])]


def _iptables_apply(nets: list[NetworkConfig], pubs: list[Published], full: bool, names: Names) -> None:
    jumps = _jumps(names) if full else _jumps(names)[:1]
    if nets:
        _run(["iptables-restore", "--noflush"], stdin=render_iptables(nets, pubs, full, names))
        for table, chain, spec in jumps:
            if _run(["iptables", "-t", table, "-C", chain, *spec], check=False).returncode != 0:
                _run(["iptables", "-t", table, "-I", chain, "1", *spec])
        return
    for table, chain, spec in jumps:
        own = spec[-1]
        if not _has_chain(table, own):
            continue
        for _ in range(16):  # bounded: remove every copy of our jump
            if _run(["iptables", "-t", table, "-D", chain, *spec], check=False).returncode != 0:
                break
        _run(["iptables", "-t", table, "-F", own], check=False)
        _run(["iptables", "-t", table, "-X", own], check=False)


def present() -> set[str]:
    """What of pallet's is in this network namespace's rulesets, any root's: ``nft table ip
    pallet[_HASH]`` and ``iptables -t TABLE chain PALLET-...[-HASH]`` (filter and nat), so that a
    leak check can compare before and after (a root's items end with ``names_for(root)``'s
    hash). Reads only; iptables-save, unlike ``iptables -S``, never creates a table."""
    out = set()
    if shutil.which("nft"):
        for line in _run(["nft", "list", "tables"], check=False).stdout.splitlines():
            w = line.split()
            if len(w) == 3 and w[:2] == ["table", "ip"] and (w[2] == "pallet" or w[2].startswith("pallet_")):
                out.add(f"nft table ip {w[2]}")
    if shutil.which("iptables-save"):
        for table in ("filter", "nat"):
            for line in _run(["iptables-save", "-t", table], check=False).stdout.splitlines():
                if line.startswith(":PALLET-"):
                    out.add(f"iptables -t {table} chain {line[1:].split()[0]}")
    return out


# the entry point ------------------------------------------------------------------------
def apply(nets: list[NetworkConfig], pubs: list[Published], forward_changed: bool = True,
          names: Names = DEFAULT_NAMES) -> None:
    """Make the kernel's rules match NETS (active networks) and PUBS (published ports).

    FORWARD_CHANGED false skips the iptables work when only ports changed (the set of
    bridges, which is all PALLET-FORWARD depends on in nft mode, is the same).
    """
    if backend() == "nft":
        _run(["nft", "-f", "-"], stdin=render_nft(nets, pubs, names))
        if forward_changed and shutil.which("iptables"):
            if not nets:
                _iptables_apply([], [], False, names)  # removes our chain and jump if present
            elif _forward_drops() or _has_chain("filter", names.fwd):
                _iptables_apply(nets, [], False, names)
    else:
        _iptables_apply(nets, pubs, True, names)
