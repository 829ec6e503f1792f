"""Choosing and checking subnets: never one that overlaps a host route or another network.

Host routes come from /proc/net/route (the main table, IPv4): reading it costs microseconds,
where asking netlink through pyroute2 would cost its import. The default route is ignored
(it overlaps everything).
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable

from pallet.errors import Conflict, InvalidArgument, Unavailable

# podman's choices: 10.88.0.0/16 for the default network, 10.89.N.0/24 for user networks;
# docker's default 172.17.0.0/16 is avoided (docker0 holds it on this machine).
DEFAULT_POOL = tuple(f"10.{n}.0.0/16" for n in range(88, 79, -1)) + ("172.30.0.0/16", "172.31.0.0/16")
USER_POOL_BASE = ipaddress.ip_network("10.89.0.0/16")
USER_PREFIX = 24

Net = ipaddress.IPv4Network


def host_routes(path: str = "/proc/net/route") -> list[Net]:
    out: list[Net] = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        cols = line.split()
        if len(cols) < 8:
            continue
        dest = socket.inet_ntoa(struct.pack("<I", int(cols[1], 16)))
        mask = socket.inet_ntoa(struct.pack("<I", int(cols[7], 16)))
        net = ipaddress.ip_network(f"{dest}/{mask}", strict=False)
        if net.prefixlen > 0:
            out.append(net)  # type: ignore[arg-type]
    return out


def parse_subnet(text: str) -> Net:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise InvalidArgument(f"invalid subnet {text!r}: {e}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidArgument(f"invalid subnet {text!r}: only IPv4 subnets are supported")
    if net.prefixlen > 30 or net.prefixlen < 8:
        raise InvalidArgument(f"invalid subnet {text!r}: prefix length must be between 8 and 30")
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_reserved:
        raise InvalidArgument(f"invalid subnet {text!r}: loopback, link-local, multicast or reserved")
    return net


def parse_gateway(text: str | None, subnet: Net) -> str:
    if not text:
        return str(subnet.network_address + 1)
    try:
        gw = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid gateway {text!r}") from None
    if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"gateway {text} is not a host address of subnet {subnet}")
    return str(gw)


def check_free(subnet: Net, taken: Iterable[tuple[str, str]], routes: Iterable[Net]) -> None:
    """Raise Conflict if SUBNET overlaps a network in TAKEN ((name, subnet) pairs) or a route."""
    for name, other in taken:
        if subnet.overlaps(ipaddress.ip_network(other)):
            raise Conflict(f"subnet {subnet} overlaps subnet {other} of network {name}")
    for r in routes:
        if subnet.overlaps(r):
            raise Conflict(f"subnet {subnet} overlaps the host route {r}")


def pick(candidates: Iterable[str | Net], taken: Iterable[tuple[str, str]], routes: Iterable[Net],
         own_routes: Iterable[Net] = ()) -> Net:
    """The first candidate free of TAKEN and of host ROUTES (routes of our own bridges excluded)."""
    taken = list(taken)
    mine = set(own_routes)
    routes = [r for r in routes if r not in mine]
    for c in candidates:
        net = ipaddress.ip_network(c)
        try:
            check_free(net, taken, routes)  # type: ignore[arg-type]
        except Conflict:
            continue
        return net  # type: ignore[return-value]
    raise Unavailable("no free subnet left in pallet's pool: give one with --subnet")


def user_candidates() -> Iterable[Net]:
    return USER_POOL_BASE.subnets(new_prefix=USER_PREFIX)  # type: ignore[return-value]


def default_candidates() -> Iterable[str | Net]:
    """The default network's: the /16s of DEFAULT_POOL, then any /24 of 10.90.0.0/15 (hosts
    with many pallet roots, e.g. test machines, exhaust the /16s)."""
    yield from DEFAULT_POOL
    yield from ipaddress.ip_network("10.90.0.0/15").subnets(new_prefix=24)  # type: ignore[misc]
