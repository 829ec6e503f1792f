"""The files the engine bind-mounts into a container: /etc/hosts, /etc/hostname,
/etc/resolv.conf, written as docker writes them; and the managed peers section of /etc/hosts.

Name resolution between containers uses managed hosts files, not a DNS server: pallet has
no daemon, so a resolver would be one more long-lived process per network to start on the
run path and to supervise. Each container's hosts file ends with a section listing the
other containers (names and aliases) of every user network it is on; pallet rewrites that
section in every member's file when a container joins or leaves. Rewrites are in place
(same inode) because the file is bind-mounted: a rename would leave the container looking
at the old file.
"""
from __future__ import annotations

import os

from pallet.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re, contextlib, ...) is not imported on the run path
    from collections.abc import Iterable

MARKER = "# pallet: containers on shared networks (rewritten when one joins or leaves)\n"
_BASE = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
         "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")  # docker's fallback when the host only has local resolvers
HOST_GATEWAY = "host-gateway"


def parse_add_host(spec: str, host_gateway: str = "") -> tuple[str, str]:
    """``--add-host NAME:IP`` (also ``NAME=IP``; IP ``host-gateway`` = the network's gateway)."""
    sep = "=" if "=" in spec else ":"
    name, _, ip = spec.partition(sep)
    if ip == HOST_GATEWAY:
        if not host_gateway:
            if not name:
                raise InvalidArgument(f"invalid --add-host {spec!r}: missing host name")
            return name, HOST_GATEWAY  # resolved by hosts_content, which knows the container's address
        ip = host_gateway
    import ipaddress  # (only with --add-host)

    try:
        ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise InvalidArgument(f"invalid --add-host {spec!r}: want NAME:IP") from None
    if not name:
        raise InvalidArgument(f"invalid --add-host {spec!r}: missing host name")
    return name, ip.strip("[]")


def hostname_content(hostname: str) -> str:
    return f"{hostname}\n"


def hosts_content(hostname: str, ip: str | None, extra: Iterable[tuple[str, str]] = (),
                  peers: Iterable[tuple[str, Iterable[str]]] = ()) -> str:
    """docker's /etc/hosts: localhost lines, --add-host lines, then "IP HOSTNAME" (when the
    container has an address), then pallet's peers section (only while there are peers: on the
    default bridge or none the file is byte for byte docker's)."""
    extra = list(extra)
    if any(addr == HOST_GATEWAY for _, addr in extra):
        gw = host_address_towards(ip) if ip else ""
        if not gw:
            raise InvalidArgument("--add-host NAME:host-gateway needs a bridge network")
        extra = [(name, gw if addr == HOST_GATEWAY else addr) for name, addr in extra]
    text = _BASE + "".join(f"{addr}\t{name}\n" for name, addr in extra)
    if ip:
        text += f"{ip}\t{hostname}\n"
    return text + _peer_lines(peers)


def host_address_towards(ip: str, routes: str = "/proc/net/route") -> str:
    """The host's address on the interface its routing table sends IP to (for a container on a
    pallet network: its bridge, whose address is the gateway), or "" if none: docker's
    ``host-gateway``, the host as the container reaches it."""
    import fcntl
    import socket
    import struct

    want = struct.unpack("<I", socket.inet_aton(ip))[0]
    best, dev = -1, ""
    try:
        with open(routes) as f:
            rows = [ln.split() for ln in f.read().splitlines()[1:]]
    except OSError:
        return ""
    for cols in rows:
        if len(cols) < 8 or cols[1] == "00000000":
            continue
        dest, mask = int(cols[1], 16), int(cols[7], 16)
        if want & mask == dest and bin(mask).count("1") > best:
            best, dev = bin(mask).count("1"), cols[0]
    if not dev:
        return ""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", dev.encode()[:15]))  # SIOCGIFADDR
        except OSError:
            return ""
    return socket.inet_ntoa(res[20:24])


def _peer_lines(peers: Iterable[tuple[str, Iterable[str]]]) -> str:
    lines = "".join(f"{ip}\t{' '.join(names)}\n" for ip, names in peers)
    return MARKER + lines if lines else ""


def rewrite_peers(path: str, peers: Iterable[tuple[str, Iterable[str]]]) -> None:
    """Replace the peers section of the hosts file PATH in place (same inode)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # the container is gone; nothing to update
    with os.fdopen(fd, "r+") as f:
        text = f.read()
        head = text.split(MARKER, 1)[0] if MARKER in text else text
        new = head + _peer_lines(peers)
        if new != text:
            f.seek(0)
            f.write(new)
            f.truncate()


def _loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr.split("%")[0] in ("::1", "0:0:0:0:0:0:0:1")


def _host_resolv(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def resolv_conf_content(dns: Iterable[str] = (), search: Iterable[str] = (), options: Iterable[str] = (),
                        host_path: str = "/etc/resolv.conf") -> str:
    """docker's rule: the host's resolv.conf minus loopback nameservers (unreachable from a
    container's netns); with none left, 8.8.8.8 and 8.8.4.4. --dns/--dns-search/--dns-option
    replace the corresponding lines."""
    dns, search, options = list(dns), list(search), list(options)
    flags = bool(dns or search or options)
    if dns:
        import ipaddress  # (only with --dns)
    for d in dns:
        try:
            ipaddress.ip_address(d)
        except ValueError:
            raise InvalidArgument(f"invalid --dns address {d!r}") from None
    lines = _host_resolv(host_path)
    servers = [ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1]
    if not dns:
        dns = [s for s in servers if not _loopback(s)] or list(DEFAULT_DNS)
    if not search:
        search = [w for ln in lines if ln.startswith(("search", "domain")) for w in ln.split()[1:]]
    if not options:
        options = [w for ln in lines if ln.startswith("options") for w in ln.split()[1:]]
    if flags:  # docker's resolvconf.Build: search first, `--dns-search .` means none
        out = f"search {' '.join(search)}\n" if search and " ".join(search).strip(" ") != "." else ""
        out += "".join(f"nameserver {d}\n" for d in dns)
        return out + (f"options {' '.join(options)}\n" if options else "")
    out = "".join(f"nameserver {d}\n" for d in dns)
    if search:
        out += f"search {' '.join(search)}\n"
    if options:
        out += f"options {' '.join(options)}\n"
    return out
