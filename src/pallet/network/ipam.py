"""IP address management for one network: pure functions over its allocation state.

The caller holds the store lock (``NetworkStore.locked``) across read, allocate and write, so
two concurrent starts can never get the same address. Addresses are handed out round-robin
from a cursor (``next``), as docker's IPAM does, so a just-released address is not reused at
once (a peer's ARP cache may still point at the old MAC).
"""
from __future__ import annotations

from pallet.errors import Conflict, InvalidArgument, Unavailable
from pallet.network import ipv4
from pallet.network.model import NetworkConfig

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re, contextlib, ...) is not imported on the run path
    from typing import Any


def allocate(net: NetworkConfig, state: dict[str, Any], want: str | None = None) -> str:
    """Reserve an address in STATE (mutated: ``next`` advances). WANT asks for a given one."""
    base, plen = ipv4.cidr(net.subnet)
    bcast = base | ((1 << (32 - plen)) - 1)
    used = {ep["ip"] for ep in state.get("endpoints", {}).values()}
    used.add(net.gateway)
    if want is not None:
        try:
            ip = ipv4.to_int(want)
        except ValueError:
            raise InvalidArgument(f"invalid IP address {want!r}") from None
        if not base < ip < bcast:
            raise InvalidArgument(f"address {want} is not a host address of {net.name} ({net.subnet})")
        want = ipv4.from_int(ip)
        if want in used:
            raise Conflict(f"address {want} is already in use on network {net.name}")
        return want
    first, last = base + 1, bcast - 1
    size = last - first + 1
    try:
        start = ipv4.to_int(state["next"]) if state.get("next") else first
    except ValueError:
        start = first
    if not first <= start <= last:
        start = first
    for i in range(size):  # bounded by the subnet's size
        cand = ipv4.from_int(first + (start - first + i) % size)
        if cand not in used:
            nxt = first + (start - first + i + 1) % size
            state["next"] = ipv4.from_int(nxt)
            return cand
    raise Unavailable(f"network {net.name} has no free address left in {net.subnet}")


def mac_for(ip: str) -> str:
    """A locally administered MAC derived from the IPv4 address (docker: 02:42:<ip bytes>)."""
    n = ipv4.to_int(ip)
    return "02:50:" + ":".join(f"{n >> s & 255:02x}" for s in (24, 16, 8, 0))
