"""Link plumbing backends, registered by name in one place: ``rtnl`` (stdlib netlink, the
default and the run path's) and ``pyroute2`` (PALLET_NETLINK=pyroute2). Both implement the
same three operations and pass the same tests (tests/test_network_links.py).

- ``bridge_create(name, mac, mtu, gateway, prefixlen, broadcast)``: the bridge, its gateway
  address, up.
- ``plug(bridge, veth, ifname, netns, mtu, mac, ip, prefixlen, broadcast, gateway)``: a veth
  pair, host end VETH enslaved to BRIDGE and up, peer born inside NETNS (pid or netns file)
  as IFNAME with MAC, IP, up; lo up; a default route via GATEWAY unless it is None.
- ``link_delete(name)``: delete a host link (a veth takes its peer along); missing is fine.
"""
from __future__ import annotations

import os

# _socket, not socket (selectors, enum): only if_nametoindex is needed
from _socket import if_nametoindex

from pallet.errors import InvalidArgument
from pallet.network.rtnl import Netlink, netlink_in, open_netns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

BACKENDS = ("rtnl", "pyroute2")


def backend(name: str | None = None) -> ModuleType:
    name = name or os.environ.get("PALLET_NETLINK") or "rtnl"
    if name == "rtnl":
        import sys

        return sys.modules[__name__]
    if name == "pyroute2":
        from pallet.network import links_pyroute2

        return links_pyroute2
    raise InvalidArgument(f"unknown netlink backend {name!r} (one of {', '.join(BACKENDS)})")


def bridge_create(name: str, mac: str, mtu: int, gateway: str, prefixlen: int, broadcast: str) -> None:
    with Netlink() as nl:
        nl.add_bridge(name, mac, mtu)
        try:
            nl.add_addr(nl.link_index(name), gateway, prefixlen, broadcast)
            nl.set_up(name)
        except BaseException:
            nl.del_link(name)
            raise


def plug(bridge: str, veth: str, ifname: str, netns: str | int, mtu: int, mac: str, ip: str, prefixlen: int,
         broadcast: str, gateway: str | None) -> None:
    with open_netns(netns) as nsfd, Netlink() as nl:
        # if_nametoindex is one ioctl; RTM_GETLINK makes the kernel serialise the whole link
        nl.add_veth(veth, ifname, nsfd, mtu, if_nametoindex(bridge), peer_mac=mac)
        with netlink_in(nsfd, str(netns), ifname) as inner:
            idx = inner.peer_index
            inner.add_addr(idx, ip, prefixlen, broadcast)
            inner.set_up(ifname)
            inner.set_up("lo")
            if gateway:
                inner.add_default_route(gateway, idx)


def link_delete(name: str) -> None:
    with Netlink() as nl:
        nl.del_link(name)
