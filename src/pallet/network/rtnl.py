"""A minimal rtnetlink client on the stdlib (socket + struct): the run path's link work.

Why not pyroute2 here: importing any part of pyroute2 costs ~200 ms on this machine (its
package ``__init__`` pulls in everything, so importing a submodule does not help), which is
more than a whole ``pallet run``. The handful of messages a container start needs (create a
veth pair with the peer born inside the container's netns, enslave, address, route, up) fit
in this module and cost well under a millisecond each. ``pallet.network.links_pyroute2``
implements the same :class:`Links` operations with pyroute2 (selectable by name; both pass
the same tests).

Messages follow rtnetlink(7): nlmsghdr + ifinfomsg/ifaddrmsg/rtmsg + rtattrs, each request
acked (NLM_F_ACK) so a kernel refusal raises :class:`pallet.errors.OSFailure` at its cause.
"""
from __future__ import annotations

# _socket, not socket: socket.py imports selectors, enum (and their imports), ~5 ms of a
# bridged `pallet run`; the C module has everything used here. No contextlib either.
import _socket as socket
import errno
import os
import struct

from pallet.errors import OSFailure

NETLINK_ROUTE = 0
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 1, 4, 0x200, 0x400, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 18, 20, 24
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_GATEWAY, RTA_OIF = 5, 4
IFF_UP = 1
NLA_F_NESTED = 0x8000
CLONE_NEWNET = 0x40000000

_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NLHDR = struct.Struct("=IHHII")


def _attr(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("=HH", n, kind) + data + b"\0" * ((4 - n % 4) % 4)


def _nested(kind: int, *parts: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(parts))


def _name(kind: int, name: str) -> bytes:
    return _attr(kind, name.encode() + b"\0")


def _u32(kind: int, v: int) -> bytes:
    return _attr(kind, struct.pack("=I", v))


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


class Netlink:
    """One NETLINK_ROUTE socket, bound in the netns that was current when it was made."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0
        self.peer_index = 0  # see netlink_in

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, mtype: int, flags: int, body: bytes, what: str) -> list[tuple[int, bytes]]:
        """Send one request and read until its ack (or DONE for dumps); raise on NLMSG_ERROR."""
        self.seq += 1
        msg = _NLHDR.pack(_NLHDR.size + len(body), mtype, flags | NLM_F_REQUEST | NLM_F_ACK, self.seq, 0) + body
        self.sock.send(msg)
        out: list[tuple[int, bytes]] = []
        for _ in range(100000):  # bounded: a dump of 100k messages is far past anything real
            data = self.sock.recv(65536)
            off = 0
            while off + _NLHDR.size <= len(data):
                ln, typ, _fl, seq, _pid = _NLHDR.unpack_from(data, off)
                payload = data[off + _NLHDR.size: off + ln]
                off += (ln + 3) & ~3
                if seq != self.seq:
                    continue
                if typ == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", payload)
                    if err:
                        raise OSFailure(-err, what)
                    return out
                if typ == NLMSG_DONE:
                    return out
                out.append((typ, payload))
        raise OSFailure(errno.EIO, what, "no netlink ack")

    # links -----------------------------------------------------------------------------
    def link_index(self, name: str) -> int:
        body = _IFINFO.pack(0, 0, 0, 0, 0) + _name(IFLA_IFNAME, name)
        for _typ, payload in self.request(RTM_GETLINK, 0, body, f"getlink {name}"):
            return int(_IFINFO.unpack_from(payload)[2])
        raise OSFailure(errno.ENODEV, "getlink", name)

    def link_names(self) -> list[str]:
        names = []
        for _typ, payload in self.request(RTM_GETLINK, NLM_F_DUMP, _IFINFO.pack(0, 0, 0, 0, 0), "dump links"):
            off = _IFINFO.size
            while off + 4 <= len(payload):
                ln, kind = struct.unpack_from("=HH", payload, off)
                if ln < 4:
                    break
                if kind == IFLA_IFNAME:
                    names.append(payload[off + 4: off + ln].rstrip(b"\0").decode())
                off += (ln + 3) & ~3
        return names

    def add_bridge(self, name: str, mac: str, mtu: int) -> None:
        attrs = (_name(IFLA_IFNAME, name) + _attr(IFLA_ADDRESS, mac_bytes(mac)) + _u32(IFLA_MTU, mtu)
                 + _nested(IFLA_LINKINFO, _name(IFLA_INFO_KIND, "bridge")))
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, _IFINFO.pack(0, 0, 0, 0, 0) + attrs,
                     f"create bridge {name}")

    def add_veth(self, host: str, peer: str, peer_netns_fd: int, mtu: int, master: int,
                 peer_mac: str | None = None) -> None:
        """Create HOST (enslaved to bridge index MASTER, up) and PEER born inside the netns."""
        peer_attrs = _name(IFLA_IFNAME, peer) + _u32(IFLA_MTU, mtu) + _u32(IFLA_NET_NS_FD, peer_netns_fd)
        if peer_mac:
            peer_attrs += _attr(IFLA_ADDRESS, mac_bytes(peer_mac))
        info = _nested(IFLA_LINKINFO, _name(IFLA_INFO_KIND, "veth"),
                       _nested(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, _IFINFO.pack(0, 0, 0, 0, 0) + peer_attrs)))
        attrs = _name(IFLA_IFNAME, host) + _u32(IFLA_MTU, mtu) + _u32(IFLA_MASTER, master) + info
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                     _IFINFO.pack(0, 0, 0, IFF_UP, IFF_UP) + attrs, f"create veth {host}")

    def set_up(self, name: str) -> None:
        self.request(RTM_NEWLINK, 0, _IFINFO.pack(0, 0, 0, IFF_UP, IFF_UP) + _name(IFLA_IFNAME, name),
                     f"set {name} up")

    def del_link(self, name: str, missing_ok: bool = True) -> None:
        try:
            self.request(RTM_DELLINK, 0, _IFINFO.pack(0, 0, 0, 0, 0) + _name(IFLA_IFNAME, name),
                         f"delete link {name}")
        except OSFailure as e:
            if not (missing_ok and e.errno == errno.ENODEV):
                raise

    # addresses and routes ---------------------------------------------------------------
    def add_addr(self, index: int, ip: str, prefixlen: int, broadcast: str | None = None) -> None:
        a = socket.inet_aton(ip)
        attrs = _attr(IFA_LOCAL, a) + _attr(IFA_ADDRESS, a)
        if broadcast:
            attrs += _attr(IFA_BROADCAST, socket.inet_aton(broadcast))
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                     _IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index) + attrs, f"add address {ip}")

    def add_default_route(self, gateway: str, index: int) -> None:
        # rtmsg: AF_INET, dst_len 0, table main (254), proto boot (3), scope universe, unicast
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0)
        body += _attr(RTA_GATEWAY, socket.inet_aton(gateway)) + _u32(RTA_OIF, index)
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body, f"add default route via {gateway}")


# netns entry ---------------------------------------------------------------------------
_libc = None


def _setns(fd: int, what: str) -> None:
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        import ctypes

        raise OSFailure(ctypes.get_errno(), "setns", what)


def netns_path(netns: str | int) -> str:
    """A pid means that process's netns; a string is a netns file (/run/netns/X, /proc/P/ns/net)."""
    return f"/proc/{netns}/ns/net" if isinstance(netns, int) else netns


class open_netns:  # noqa: N801 - used as a function: ``with open_netns(x) as fd``
    """An fd on the netns (O_RDONLY), closed at the end of the ``with``."""

    __slots__ = ("path", "fd")

    def __init__(self, netns: str | int) -> None:
        self.path, self.fd = netns_path(netns), -1

    def __enter__(self) -> int:
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise OSFailure.from_oserror(e, "open netns", self.path) from None
        return self.fd

    def __exit__(self, *exc: object) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def netlink_in(netns_fd: int, what: str, ifname: str = "") -> Netlink:
    """A netlink socket living in the netns NETNS_FD (this thread enters it and comes back);
    with IFNAME, its index in that netns is looked up meanwhile (``.peer_index``).

    setns(2) changes only the calling thread; a socket keeps the netns it was created in, so
    the socket works after we return to our own netns.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(netns_fd, what)
        try:
            nl = Netlink()
            if ifname:
                try:
                    nl.peer_index = socket.if_nametoindex(ifname)
                except OSError as e:
                    nl.close()
                    raise OSFailure.from_oserror(e, "if_nametoindex", f"{ifname} in {what}") from None
            return nl
        finally:
            _setns(own, "own netns")
    finally:
        os.close(own)
