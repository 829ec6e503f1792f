"""Published ports: parsing ``-p``/``-P``, choosing free host ports, checking and holding them.

A host port is checked by binding it (on the given address, or every address). The bound
sockets are returned as a :class:`Reservation`: a caller that keeps it for the container's
lifetime (the engine's per-container monitor, as conmon does for podman) holds the port
against any other program; traffic never reaches those sockets because pallet's DNAT
rewrites it first. Without a holder the check is made once at start (a later program that
binds the port would be shadowed by the DNAT for the addresses it covers).
"""
from __future__ import annotations

# _socket, not socket: socket.py imports selectors and enum (~5 ms on the run path); the
# C-level socket binds, listens and closes the same way (and is created non-inheritable).
import _socket

from pallet.errors import Conflict, InvalidArgument
from pallet.network import ipv4
from pallet.network.model import PortMapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def _port(text: str, what: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidArgument(f"invalid {what} port {text!r} in publish spec {spec!r}")
    return int(text)


def parse_publish(spec: str) -> PortMapping:
    """``[IP:][HOST:]CTR[/tcp|udp]`` -> PortMapping (host_port 0 = pick a free one)."""
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidArgument(f"invalid protocol {proto!r} in publish spec {spec!r} (tcp or udp)")
    if "-" in body:
        raise InvalidArgument(f"port ranges are not supported: {spec!r}")
    parts = body.rsplit(":", 2)
    ip = ""
    if len(parts) == 3:
        ip = parts[0].strip("[]")
        if not ipv4.is_v4(ip):
            raise InvalidArgument(f"invalid host IPv4 address {ip!r} in publish spec {spec!r}")
    host = parts[-2] if len(parts) >= 2 else ""
    ctr = _port(parts[-1], "container", spec)
    return PortMapping(host_port=_port(host, "host", spec) if host else 0, container_port=ctr,
                       proto=proto, host_ip="" if ip == "0.0.0.0" else ip)


def expose_all(exposed: Iterable[str]) -> list[PortMapping]:
    """``-P``: each EXPOSEd port (image config keys like ``80/tcp``) on a free host port."""
    out = []
    for key in exposed:
        port, _, proto = key.partition("/")
        out.append(parse_publish(f"{port}/{proto or 'tcp'}"))
    return out


class Reservation:
    """Sockets bound on published host ports; close() (or the holder's exit) frees them."""

    def __init__(self) -> None:
        self.sockets: list[_socket.socket] = []

    def close(self) -> None:
        for s in self.sockets:
            s.close()
        self.sockets.clear()

    def fds(self) -> list[int]:
        return [s.fileno() for s in self.sockets]


def _bind(ip: str, port: int, proto: str) -> _socket.socket:
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM if proto == "tcp" else _socket.SOCK_DGRAM)
    try:
        s.bind((ip or "0.0.0.0", port))
        if proto == "tcp":
            s.listen(1)  # a listener also blocks SO_REUSEADDR binders
    except OSError as e:
        s.close()
        where = f"{ip}:{port}" if ip else str(port)
        raise Conflict(f"host port {where}/{proto} is not available: {e.strerror}") from None
    return s


def _overlaps(a: PortMapping, b: PortMapping) -> bool:
    return (a.proto == b.proto and a.host_port == b.host_port
            and (not a.host_ip or not b.host_ip or a.host_ip == b.host_ip))


def claim(wanted: Iterable[PortMapping], taken: Iterable[PortMapping], res: Reservation) -> list[PortMapping]:
    """Concrete mappings for WANTED: free host ports picked, each checked against TAKEN (other
    containers' published ports) and by binding it; bound sockets go into RES. On error RES
    keeps what it bound so far: the caller closes it."""
    taken = list(taken)
    out: list[PortMapping] = []
    for w in wanted:
        if w.host_port:
            m = w
            clash = next((t for t in taken if _overlaps(m, t)), None)
            if clash is not None:
                raise Conflict(f"host port {m.host_ip or '0.0.0.0'}:{m.host_port}/{m.proto} is already"
                               " published by another container")
            res.sockets.append(_bind(m.host_ip, m.host_port, m.proto))
        else:
            for _ in range(64):  # bounded: retry if the kernel's pick is one pallet publishes
                s = _bind(w.host_ip, 0, w.proto)
                m = PortMapping(s.getsockname()[1], w.container_port, w.proto, w.host_ip)
                if not any(_overlaps(m, t) for t in taken):
                    res.sockets.append(s)
                    break
                s.close()
            else:
                raise Conflict(f"no free host port for {w.container_port}/{w.proto}")
        taken.append(m)
        out.append(m)
    return out
