"""``pallet stats``: NET I/O (the container's interfaces but lo) and BLOCK I/O (its blkio/io
cgroup), formatted as docker's CLI (go-units HumanSizeWithPrecision(n, 3)), in the table,
``--format '{{.NetIO}}'`` and ``{{json .}}``.

This kernel (6.10+) creates v1 blkio's throttle statistics only on a disk queue that has a
throttle rule (blk-throttle is set up lazily): docker shows 0B there too. The block test gives
the container's cgroup a rule that limits nothing (100 GB/s on the volume's disk) before the
writes, so the kernel counts them."""
from __future__ import annotations

import json
import os
import re
import shutil

import pytest
from engine_helpers import bb_fixture, wait_until  # noqa: F401  (bb_fixture registers the 'bb' fixture)

pytestmark = pytest.mark.privileged

_UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def _bytes(s: str) -> float:
    m = re.fullmatch(r"([0-9.e+]+)(B|kB|MB|GB)", s)
    assert m, s
    return float(m.group(1)) * _UNITS[m.group(2)]


def _pair(s: str) -> tuple[float, float]:
    a, b = s.strip().split(" / ")
    return _bytes(a), _bytes(b)


def test_size_format_is_docker_s() -> None:
    from pallet.cli.container_ops import _size3

    cases = {0: "0B", 648: "648B", 999: "999B", 1000: "1kB", 1234: "1.23kB", 4194304: "4.19MB",
             12_345_678_901: "12.3GB", 999_999: "1e+03kB"}  # the last as Go's %.3g prints it
    assert {n: _size3(n) for n in cases} == cases


PING = "gw=$(ip route | awk '/default/ {print $3}'); ping -c 3 -W 1 \"$gw\"; echo pinged; sleep 60"


def test_net_io_on_the_bridge(bb) -> None:  # type: ignore[no-untyped-def]
    bb("run", "-d", "--name", "pinger", "busybox", "sh", "-c", PING)
    runc = shutil.which("runc") is not None
    if runc:  # the counters do not depend on the runtime
        bb("run", "-d", "--name", "rpinger", "--runtime", "runc", "busybox", "sh", "-c", PING)
    bb("run", "-d", "--name", "quiet", "--network", "none", "busybox", "sleep", "60")
    bb("run", "-d", "--name", "onhost", "--network", "host", "busybox", "sleep", "60")
    assert wait_until(lambda: "pinged" in bb("logs", "pinger").out, 15), bb("logs", "pinger").out
    assert "3 packets received" in bb("logs", "pinger").out
    rx, tx = _pair(bb("stats", "--no-stream", "--format", "{{.NetIO}}", "pinger").out)
    assert rx >= 3 * 98 and tx >= 3 * 98, (rx, tx)  # three echo requests and replies: 98 bytes each
    # the same counters the kernel shows in the container's namespace
    pid = int(bb("inspect", "-f", "{{.State.Pid}}", "pinger").out)
    with open(f"/proc/{pid}/net/dev") as f:
        eth0 = next(ln for ln in f if ln.strip().startswith("eth0:")).split(":", 1)[1].split()
    assert abs(int(eth0[8]) - tx) <= max(0.01 * tx, 1)
    assert bb("stats", "--no-stream", "--format", "{{.NetIO}}", "quiet").out.strip() == "0B / 0B"
    assert bb("stats", "--no-stream", "--format", "{{.NetIO}}", "onhost").out.strip() == "0B / 0B"
    # the table and {{json .}} (docker's keys, sorted)
    table = bb("stats", "--no-stream", "pinger").out.splitlines()
    assert "NET I/O" in table[0] and "BLOCK I/O" in table[0]
    obj = json.loads(bb("stats", "--no-stream", "--format", "{{json .}}", "pinger").out)
    assert list(obj) == sorted(obj) == ["BlockIO", "CPUPerc", "Container", "ID", "MemPerc", "MemUsage", "Name",
                                        "NetIO", "PIDs"]
    assert _pair(obj["NetIO"])[1] >= 3 * 98
    if runc:
        assert wait_until(lambda: "pinged" in bb("logs", "rpinger").out, 15)
        assert min(_pair(bb("stats", "--no-stream", "--format", "{{.NetIO}}", "rpinger").out)) >= 3 * 98
        bb("rm", "-f", "rpinger")
    bb("rm", "-f", "pinger", "quiet", "onhost")


def _whole_disk(dev: int) -> str | None:
    """"MAJ:MIN" of the disk holding device ``dev`` (a partition's parent); None without one."""
    mm = f"{os.major(dev)}:{os.minor(dev)}"
    base = f"/sys/dev/block/{mm}"
    if not os.path.exists(base):
        return None
    if os.path.exists(base + "/partition"):
        with open(os.path.realpath(base) + "/../dev") as f:
            return f.read().strip()
    return mm


def test_block_io_of_writes_to_a_volume(bb) -> None:  # type: ignore[no-untyped-def]
    bb("run", "-d", "--name", "writer", "--network", "none", "-v", "statvol:/data", "busybox", "sh", "-c",
       "i=0; while [ ! -e /data/go ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; "
       "dd if=/dev/zero of=/data/f bs=1M count=4 oflag=direct 2>/dev/null; "
       "dd if=/data/f of=/dev/null bs=1M iflag=direct 2>/dev/null; touch /data/done; sleep 60")
    pid = int(bb("inspect", "-f", "{{.State.Pid}}", "writer").out)
    vol = bb("volume", "inspect", "-f", "{{.Mountpoint}}", "statvol").out.strip()
    blkio = None
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctls, path = line.rstrip("\n").split(":", 2)
            if "blkio" in ctls.split(","):
                blkio = f"/sys/fs/cgroup/blkio{path}"
    disk = _whole_disk(os.stat(vol).st_dev)
    if blkio is not None and disk is not None:
        with open(f"{blkio}/blkio.throttle.write_bps_device", "w") as f:
            f.write(f"{disk} 100000000000\n")  # 100 GB/s: counts, limits nothing
    open(os.path.join(vol, "go"), "w").close()
    assert wait_until(lambda: os.path.exists(os.path.join(vol, "done")), 20)
    rd, wr = _pair(bb("stats", "--no-stream", "--format", "{{.BlockIO}}", "writer").out)
    if blkio is None or disk is None:
        # no v1 blkio controller (or a volume on no block device): docker shows 0B / 0B
        assert (rd, wr) == (0, 0)
        pytest.skip("no blkio controller or no block device under the volume: BLOCK I/O is 0B / 0B")
    assert wr >= 4_190_000 and rd >= 4_190_000, (rd, wr)  # 4 MiB each way, O_DIRECT
    bb("rm", "-f", "-v", "writer")
    bb("volume", "rm", "statvol")


def test_stats_all_and_stopped(bb) -> None:  # type: ignore[no-untyped-def]
    bb("create", "--name", "idle", "--network", "none", "busybox", "true")
    out = bb("stats", "--no-stream", "-a", "--format", "{{.Name}} {{.NetIO}} {{.BlockIO}}").out
    assert out.strip() == "idle 0B / 0B 0B / 0B"
    bb("rm", "idle")
