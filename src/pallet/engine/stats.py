"""``stats``' network and block I/O counters of a running container, read as docker's daemon reads them.

- NET I/O: received/sent bytes of the container's network interfaces (its init's
  ``/proc/PID/net/dev``, every interface but ``lo``); none with ``--network host`` (docker counts
  only the sandbox's endpoints: a host-network container has none).
- BLOCK I/O: read/written bytes from the container's cgroup, found through its init's
  ``/proc/PID/cgroup`` (so it does not matter which runtime or cgroup parent made it). v1: the
  first of blkio's ``io_service_bytes`` files that has entries, in libcontainer's order (bfq,
  cfq, throttle recursive, throttle), summing the Read and Write rows; v2: ``io.stat``'s
  ``rbytes``/``wbytes``. No blkio/io controller: 0 and 0, as docker shows.

Both work for either runtime (``pallet``, ``runc``) and need no runtime call.
"""
from __future__ import annotations

import os

from pallet.runtime.linux.cgroupfs import CGROUP_ROOT

_V1_FILES = ("blkio.bfq.io_service_bytes_recursive", "blkio.io_service_bytes_recursive",
             "blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes")


def net_io(pid: int) -> tuple[int, int]:
    """(rx bytes, tx bytes) summed over the interfaces of ``pid``'s network namespace but ``lo``."""
    rx = tx = 0
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]  # two header lines
    except OSError:
        return 0, 0
    for line in lines:
        name, sep, rest = line.partition(":")
        if not sep or name.strip() == "lo":
            continue
        fields = rest.split()
        if len(fields) >= 9:
            rx += int(fields[0])
            tx += int(fields[8])
    return rx, tx


def _cgroups(pid: int) -> dict[str, str]:
    """``/proc/PID/cgroup`` as {controller: path} ("" for the v2 hierarchy)."""
    out: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, ctls, path = line.rstrip("\n").split(":", 2)
                for ctl in ctls.split(",") if ctls else [""]:
                    out[ctl] = path
    except (OSError, ValueError):
        pass
    return out


def _v1_entries(path: str) -> tuple[int, int] | None:
    """Read/Write sums of one blkio stat file; None when it has no device entries."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    read = write = 0
    seen = False
    for line in lines:
        fields = line.split()
        if len(fields) != 3:  # "Total N" (and blank lines)
            continue
        seen = True
        op = fields[1].lower()
        if op == "read":
            read += int(fields[2])
        elif op == "write":
            write += int(fields[2])
    return (read, write) if seen else None


def block_io(pid: int) -> tuple[int, int]:
    """(read bytes, written bytes) of ``pid``'s cgroup; (0, 0) where no controller counts them."""
    cg = _cgroups(pid)
    if os.path.exists(CGROUP_ROOT + "/cgroup.controllers"):  # unified (v2) host
        rd = wr = 0
        try:
            with open(f"{CGROUP_ROOT}{cg.get('', '/')}/io.stat".replace("//", "/")) as f:
                for line in f:
                    for kv in line.split()[1:]:
                        k, _, v = kv.partition("=")
                        if k == "rbytes":
                            rd += int(v)
                        elif k == "wbytes":
                            wr += int(v)
        except (OSError, ValueError):
            pass
        return rd, wr
    if "blkio" not in cg or not os.path.isdir(CGROUP_ROOT + "/blkio"):
        return 0, 0
    base = f"{CGROUP_ROOT}/blkio{cg['blkio']}".rstrip("/")
    for name in _V1_FILES:
        got = _v1_entries(f"{base}/{name}")
        if got is not None:
            return got
    return 0, 0


def io_counters(pid: int, network_mode: str | None) -> dict[str, int]:
    """{"net_rx", "net_tx", "blk_read", "blk_write"} of a running container's init ``pid``."""
    rx, tx = (0, 0) if network_mode == "host" or pid <= 0 else net_io(pid)
    rd, wr = block_io(pid) if pid > 0 else (0, 0)
    return {"net_rx": rx, "net_tx": tx, "blk_read": rd, "blk_write": wr}

