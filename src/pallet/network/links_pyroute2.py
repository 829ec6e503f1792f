"""The link operations of ``links`` through pyroute2 (IPRoute, NetNS).

Not on the run path: importing pyroute2 costs ~200-330 ms here (its package imports every
submodule, so importing only ``pyroute2.iproute.linux`` saves nothing), which is more than a
whole ``pallet run``. Selected with PALLET_NETLINK=pyroute2; useful to cross-check the
stdlib client and where that import is paid once (a long-lived API server).
"""
from __future__ import annotations

from pallet.errors import OSFailure
from pallet.network.rtnl import netns_path


def _fail(e: Exception, what: str) -> OSFailure:
    code = getattr(e, "code", None) or 5
    return OSFailure(int(code), what)


def bridge_create(name: str, mac: str, mtu: int, gateway: str, prefixlen: int, broadcast: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=name, kind="bridge", address=mac, mtu=mtu)
        except Exception as e:  # pyroute2's NetlinkError carries the errno in .code
            raise _fail(e, f"create bridge {name}") from None
        idx = ipr.link_lookup(ifname=name)[0]
        try:
            ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen, broadcast=broadcast)
            ipr.link("set", index=idx, state="up")
        except Exception as e:
            ipr.link("del", index=idx)
            raise _fail(e, f"configure bridge {name}") from None


def plug(bridge: str, veth: str, ifname: str, netns: str | int, mtu: int, mac: str, ip: str, prefixlen: int,
         broadcast: str, gateway: str | None) -> None:
    from pyroute2 import IPRoute, NetNS

    path = netns_path(netns)
    with IPRoute() as ipr:
        try:
            master = ipr.link_lookup(ifname=bridge)[0]
            ipr.link("add", ifname=veth, kind="veth", mtu=mtu, master=master, state="up",
                     peer={"ifname": ifname, "net_ns_fd": path, "mtu": mtu, "address": mac})
        except Exception as e:
            raise _fail(e, f"create veth {veth}") from None
    with NetNS(path) as ns:
        try:
            idx = ns.link_lookup(ifname=ifname)[0]
            ns.addr("add", index=idx, address=ip, prefixlen=prefixlen, broadcast=broadcast)
            ns.link("set", index=idx, state="up")
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            if gateway:
                ns.route("add", dst="default", gateway=gateway, oif=idx)
        except Exception as e:
            raise _fail(e, f"configure {ifname} in {path}") from None


def link_delete(name: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if idx:
            try:
                ipr.link("del", index=idx[0])
            except Exception as e:
                if getattr(e, "code", None) != 19:  # ENODEV: gone meanwhile
                    raise _fail(e, f"delete link {name}") from None
