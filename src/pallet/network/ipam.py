"""IP address management for one network: pure functions over its allocation state.

The caller holds the store lock (``NetworkStore.locked``) across read, allocate and write, so
two concurrent starts can never get the same address. Addresses are handed out round-robin
from a cursor (``next``), as docker's IPAM does, so a just-released address is not reused at
once (a peer's ARP cache may still point at the old MAC).
"""
from __future__ import annotations

import ipaddress
from typing import Any

from pallet.errors import Conflict, InvalidArgument, Unavailable
from pallet.network.model import NetworkConfig


def allocate(net: NetworkConfig, state: dict[str, Any], want: str | None = None) -> str:
    """Reserve an address in STATE (mutated: ``next`` advances). WANT asks for a given one."""
    subnet = ipaddress.ip_network(net.subnet)
    used = {ep["ip"] for ep in state.get("endpoints", {}).values()}
    used.add(net.gateway)
    if want is not None:
        try:
            ip = ipaddress.ip_address(want)
        except ValueError:
            raise InvalidArgument(f"invalid IP address {want!r}") from None
        if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
            raise InvalidArgument(f"address {want} is not a host address of {net.name} ({net.subnet})")
        if want in used:
            raise Conflict(f"address {want} is already in use on network {net.name}")
        return want
    first = int(subnet.network_address) + 1
    last = int(subnet.broadcast_address) - 1
    size = last - first + 1
    try:
        start = int(ipaddress.ip_address(state.get("next") or "")) if state.get("next") else first
    except ValueError:
        start = first
    if not first <= start <= last:
        start = first
    for i in range(size):  # bounded by the subnet's size
        cand = str(ipaddress.ip_address(first + (start - first + i) % size))
        if cand not in used:
            nxt = first + (start - first + i + 1) % size
            state["next"] = str(ipaddress.ip_address(nxt))
            return cand
    raise Unavailable(f"network {net.name} has no free address left in {net.subnet}")


def mac_for(ip: str) -> str:
    """A locally administered MAC derived from the IPv4 address (docker: 02:42:<ip bytes>)."""
    b = ipaddress.ip_address(ip).packed
    return "02:50:" + ":".join(f"{x:02x}" for x in b)
