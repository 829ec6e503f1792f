"""Capabilities: names <-> bits, and applying the OCI ``process.capabilities`` sets.

Order of operations (runtime-spec config.md "capabilities"; runc's finalizeNamespace):
drop the bounding set first (needs CAP_SETPCAP), keep permitted caps across the uid change
(PR_SET_KEEPCAPS), change ids, then capset the effective/permitted/inheritable masks and raise
the ambient ones. Caps the host itself lacks (here CAP_SYS_RESOURCE is missing from the
bounding set) are clamped away silently, as a privileged container can only get what we have.
"""
from __future__ import annotations

from pallet.errors import InvalidArgument, OSFailure
from pallet.runtime.linux import syscalls as sc

CAPS: dict[str, int] = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
    "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23, "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}
LAST_CAP = 40


def normalize(name: str) -> str:
    """``net_admin`` / ``NET_ADMIN`` / ``CAP_NET_ADMIN`` -> ``CAP_NET_ADMIN`` (or InvalidArgument)."""
    n = name.strip().upper()
    if not n.startswith("CAP_"):
        n = "CAP_" + n
    if n not in CAPS and n != "CAP_ALL":
        raise InvalidArgument(f"unknown capability: {name!r}")
    return n


def mask(names: list[str] | None) -> int:
    m = 0
    for n in names or ():
        if n.upper() in ("ALL", "CAP_ALL"):
            return (1 << (LAST_CAP + 1)) - 1
        m |= 1 << CAPS[normalize(n)]
    return m


def names(m: int) -> list[str]:
    return [n for n, b in CAPS.items() if m >> b & 1]


_HOST_BOUNDING: list[int] = []


def host_bounding() -> int:
    """The bounding set of the calling process (what a container can have at most); read once
    (41 prctl calls): pallet's own processes never drop from it, only their container children,
    after the fork (a fork's copy of the cache is not read again there)."""
    if _HOST_BOUNDING:
        return _HOST_BOUNDING[0]
    m = 0
    for b in range(LAST_CAP + 1):
        try:
            if sc.prctl(sc.PR_CAPBSET_READ, b):
                m |= 1 << b
        except OSFailure:
            break
    _HOST_BOUNDING.append(m)
    return m


class CapPlan:
    """The masks to apply, computed (and clamped) in the parent before the fork."""

    __slots__ = ("bounding", "effective", "permitted", "inheritable", "ambient", "keep")

    def __init__(self, spec_caps: dict | None, limit: int) -> None:
        self.keep = spec_caps is None  # no "capabilities" in the spec: leave them as they are (runc)
        c = spec_caps or {}
        self.bounding = mask(c.get("bounding")) & limit
        self.effective = mask(c.get("effective")) & limit
        self.permitted = mask(c.get("permitted")) & limit
        self.inheritable = mask(c.get("inheritable")) & limit
        self.ambient = mask(c.get("ambient")) & self.permitted & self.inheritable

    def drop_bounding(self) -> None:
        """Before the uid change: needs CAP_SETPCAP, which we still hold."""
        if self.keep:
            return
        for b in range(LAST_CAP + 1):
            if not self.bounding >> b & 1:
                try:
                    sc.prctl(sc.PR_CAPBSET_DROP, b, what=f"PR_CAPBSET_DROP {b}")
                except OSFailure as e:
                    if e.errno != 22:  # EINVAL: cap unknown to this kernel
                        raise

    def apply(self) -> None:
        """After the uid change (PR_SET_KEEPCAPS kept permitted): set the masks, raise ambient."""
        if self.keep:
            return
        sc.capset(self.effective, self.permitted, self.inheritable)
        if self.ambient:
            for b in range(LAST_CAP + 1):
                if self.ambient >> b & 1:
                    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, b, what=f"PR_CAP_AMBIENT_RAISE {b}")
