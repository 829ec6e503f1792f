"""IPv4 addresses as integers: the few operations the run path needs, without the stdlib's
``ipaddress`` (its import costs more than a container's whole netlink work here).
``subnets`` (network create, not on the run path) keeps using ``ipaddress``."""
from __future__ import annotations


def to_int(ip: str) -> int:
    """``a.b.c.d`` -> int; ValueError for anything else (no short or octal forms)."""
    parts = ip.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        raise ValueError(f"not an IPv4 address: {ip!r}")
    a, b, c, d = (int(p) for p in parts)
    return (a << 24) | (b << 16) | (c << 8) | d


def from_int(n: int) -> str:
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def cidr(text: str) -> tuple[int, int]:
    """``10.88.0.0/16`` -> (network as int, prefix length)."""
    ip, _, plen = text.partition("/")
    p = int(plen)
    mask = (0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF
    return to_int(ip) & mask, p


def broadcast(text: str) -> str:
    net, p = cidr(text)
    return from_int(net | ((1 << (32 - p)) - 1))


def prefixlen(text: str) -> int:
    return int(text.partition("/")[2])


def is_v4(text: str) -> bool:
    try:
        to_int(text)
    except ValueError:
        return False
    return True
