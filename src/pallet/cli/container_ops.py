"""``stop kill restart rm pause unpause wait rename top stats export`` and ``container prune``."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from pallet.cli.fastfmt import FastFormatter


def _each(g: Any, refs: list[str], fn: Callable[[Any, Any, str], None], quiet: bool = False,
          missing_ok: bool = False) -> int:
    """docker's multi-container verbs: act on each, print the ref on success, an error line otherwise
    (``missing_ok``: an unknown container still prints its error but does not fail, as ``rm -f``)."""
    from pallet.engine import session
    from pallet.errors import NotFound, PalletError

    rc = 0
    with session.open(g) as s:
        for ref in refs:
            try:
                fn(s, s.get(ref), ref)
                if not quiet:
                    print(ref, flush=True)
            except PalletError as e:
                print(f"Error: {e}", file=sys.stderr)
                if not (missing_ok and isinstance(e, NotFound)):
                    rc = 1
    return rc


def add_parser(sub: Any) -> None:
    p = sub.add_parser("stop", help="stop running containers", formatter_class=FastFormatter)
    p.add_argument("-t", "--time", "--timeout", type=int, dest="time")
    p.add_argument("-s", "--signal")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=lambda g, ns: _each(g, ns.containers, lambda s, c, r: s.stop(c, ns.time, ns.signal)))

    p = sub.add_parser("kill", help="kill running containers", formatter_class=FastFormatter)
    p.add_argument("-s", "--signal", default="SIGKILL")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=lambda g, ns: _each(g, ns.containers, lambda s, c, r: s.kill(c, ns.signal)))

    p = sub.add_parser("restart", help="restart containers", formatter_class=FastFormatter)
    p.add_argument("-t", "--time", "--timeout", type=int, dest="time")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=lambda g, ns: _each(g, ns.containers, lambda s, c, r: s.restart(c, ns.time)))

    p = sub.add_parser("rm", help="remove containers", formatter_class=FastFormatter)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=_rm)

    for verb, on in (("pause", True), ("unpause", False)):
        p = sub.add_parser(verb, help=f"{verb} all processes within containers")
        p.add_argument("containers", nargs="+")
        p.set_defaults(func=lambda g, ns, on=on: _each(g, ns.containers, lambda s, c, r: s.pause(c, on)))

    p = sub.add_parser("wait", help="block until containers stop, then print their exit codes", formatter_class=FastFormatter)
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=lambda g, ns: _each(g, ns.containers, lambda s, c, r: print(s.wait(c), flush=True),
                                            quiet=True))

    p = sub.add_parser("rename", help="rename a container", formatter_class=FastFormatter)
    p.add_argument("container")
    p.add_argument("new_name")
    p.set_defaults(func=_rename)

    p = sub.add_parser("top", help="display the running processes of a container", formatter_class=FastFormatter)
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_top)

    p = sub.add_parser("stats", help="display resource usage of containers", formatter_class=FastFormatter)
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--format")
    p.add_argument("containers", nargs="*")
    p.set_defaults(func=_stats)

    p = sub.add_parser("export", help="export a container's filesystem as a tar archive", formatter_class=FastFormatter)
    p.add_argument("-o", "--output")
    p.add_argument("container")
    p.set_defaults(func=_export)

    p = sub.add_parser("port", help="list port mappings of a container", formatter_class=FastFormatter)
    p.add_argument("container")
    p.add_argument("private_port", nargs="?")
    p.set_defaults(func=_port)

    p = sub.add_parser("cp", help="copy files between a container and the local filesystem", formatter_class=FastFormatter)
    p.add_argument("-a", "--archive", action="store_true")
    p.add_argument("-L", "--follow-link", action="store_true")
    p.add_argument("src")
    p.add_argument("dst")
    p.set_defaults(func=_cp)


def add_container_verbs(sub: Any) -> None:
    p = sub.add_parser("prune", help="remove all stopped containers", formatter_class=FastFormatter)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    p.set_defaults(func=_prune)


def _rm(g: Any, ns: argparse.Namespace) -> int:
    return _each(g, ns.containers, lambda s, c, r: s.remove(c, force=ns.force, volumes=ns.volumes),
                 missing_ok=ns.force)


def _port(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import session
    from pallet.errors import NotFound

    with session.open(g) as s:
        c = s.get(ns.container)
        pmap = (c.rt.get("network") or {}).get("ports_map") or {} if c.status in ("running", "paused") else {}
    want = ns.private_port
    if want and "/" not in want:
        want += "/tcp"
    shown = 0
    for key, binds in pmap.items():
        if want and key != want:
            continue
        for b in binds:
            print(f"{b['HostIp']}:{b['HostPort']}" if want else f"{key} -> {b['HostIp']}:{b['HostPort']}")
            shown += 1
    if want and not shown:
        raise NotFound(f"No public port '{want}' published for {ns.container}")
    return 0


def _rename(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import containers, session

    with session.open(g) as s:
        containers.rename(s.conn, s.get(ns.container), ns.new_name)
    return 0


def _prune(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import session

    removed = []
    with session.open(g) as s:
        for c in s.list():
            if c.status in ("exited", "created", "dead"):
                s.remove(c)
                removed.append(c.id)
    if removed:
        print("Deleted Containers:")
        for cid in removed:
            print(cid)
        print()
    print("Total reclaimed space: 0B")
    return 0


def _top(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import rt, session
    from pallet.errors import Conflict

    with session.open(g) as s:
        c = s.get(ns.container)
        if c.status not in ("running", "paused"):
            raise Conflict(f"Container {c.id} is not running")
        pids = rt.pids(s.store, c) or [c.pid]
    import subprocess

    args = ns.ps_args or ["-ef"]
    out = subprocess.run(["ps", *args], capture_output=True, text=True).stdout.splitlines()
    if not out:
        return 0
    cols = out[0].split()
    pid_col = cols.index("PID") if "PID" in cols else 1
    wanted = {str(p) for p in pids}
    rows = [cols]
    for line in out[1:]:
        f = line.split(None, len(cols) - 1)  # the last column (CMD) keeps its spaces
        if len(f) > pid_col and f[pid_col] in wanted:
            rows.append(f)
    # docker's tabwriter for top: minwidth 20, padding 3
    widths = [max(20, max(len(r[i]) for r in rows if i < len(r)) + 3) for i in range(len(cols))]
    for r in rows:
        print("".join(c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)))
    return 0


def _stats(g: Any, ns: argparse.Namespace) -> int:
    import time

    from pallet.cli import fmt
    from pallet.engine import rt, session, stats

    with session.open(g) as s:
        cs = [s.get(r) for r in ns.containers] if ns.containers else s.list()
        # docker's .Container: the name or ID as the user gave it (the short ID otherwise)
        names = dict(zip([c.id for c in cs], ns.containers or [], strict=False))
        if not ns.all and not ns.containers:
            cs = [c for c in cs if c.status in ("running", "paused")]
        for _ in range(1 if ns.no_stream else 1_000_000):
            first = {c.id: (rt.stats(s.store, c) if c.status in ("running", "paused") else {}, time.monotonic())
                     for c in cs}
            time.sleep(0.5)
            rows = []
            for c in cs:
                st = rt.stats(s.store, c) if c.status in ("running", "paused") else {}
                st0, t0 = first[c.id]
                dt = time.monotonic() - t0
                cpu = (st.get("cpu_ns", 0) - st0.get("cpu_ns", 0)) / (dt * 1e9) * 100 if st else 0.0
                use, lim = st.get("memory_usage", 0), st.get("memory_limit", 0)
                if not lim or lim > 1 << 60:
                    lim = _host_mem()
                io = stats.io_counters(c.pid, c.host.get("NetworkMode")) if st else {}
                rows.append({"Container": names.get(c.id, c.id[:12]), "ID": c.id[:12], "Name": c.name,
                             "CPUPerc": f"{cpu:.2f}%",
                             "MemUsage": f"{fmt.binary_size(use)} / {fmt.binary_size(lim)}",
                             "MemPerc": f"{(use / lim * 100 if lim else 0):.2f}%",
                             "NetIO": f"{_size3(io.get('net_rx', 0))} / {_size3(io.get('net_tx', 0))}",
                             "BlockIO": f"{_size3(io.get('blk_read', 0))} / {_size3(io.get('blk_write', 0))}",
                             "PIDs": str(st.get("pids", 0))})
            if ns.format:
                print(fmt.render(ns.format, rows, _STATS_HEADERS), flush=True)
            else:
                heads = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]
                print(fmt.table(heads, [list(r.values())[1:] for r in rows]), flush=True)
            if ns.no_stream:
                break
    return 0


_STATS_HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                  "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
                  "PIDs": "PIDS"}


def _size3(n: float) -> str:
    """go-units HumanSizeWithPrecision(n, 3): docker stats' NET I/O and BLOCK I/O ("1.23kB", "648B")."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    v, i = float(n), 0
    while v >= 1000 and i < len(units) - 1:
        v /= 1000
        i += 1
    return f"{v:.3g}{units[i]}"


def _host_mem() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _export(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import copy, session

    with session.open(g) as s:
        c = s.get(ns.container)
        if ns.output is None and sys.stdout.isatty():
            from pallet.errors import InvalidArgument

            raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        copy.export(s, c, ns.output)
    return 0


def _cp(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import copy, session
    from pallet.errors import InvalidArgument

    def split(p: str) -> tuple[str | None, str]:
        if ":" in p and not p.startswith("/") and not p.startswith("."):
            ref, _, path = p.partition(":")
            return ref, path
        return None, p

    sref, spath = split(ns.src)
    dref, dpath = split(ns.dst)
    if (sref is None) == (dref is None):
        raise InvalidArgument("copying between containers or between local paths is not supported: "
                              "one of SRC and DEST must be CONTAINER:PATH")
    with session.open(g) as s:
        if sref is not None:
            copy.copy_out(s, s.get(sref), spath, dpath, follow=ns.follow_link)
        else:
            copy.copy_in(s, s.get(dref or ""), spath, dpath)
    return 0
