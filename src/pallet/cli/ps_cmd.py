"""``pallet ps`` (``container ls``) and ``container inspect``."""
from __future__ import annotations

import argparse
import json
import re
from typing import Any

from pallet.cli.fastfmt import FastFormatter
from pallet.engine.containers import tree_size

# docker's column names for `ps --format 'table ...'`
_HEADERS = {"ID": "CONTAINER ID", "RunningFor": "CREATED", "CreatedAt": "CREATED AT",
            "LocalVolumes": "LOCAL VOLUMES"}


def add_parser(sub: Any) -> None:
    for name, aliases in (("ps", list[str]()),):
        p = sub.add_parser(name, aliases=aliases, help="list containers")
        _ps_flags(p)


def _ps_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("-n", "--last", type=int, default=-1)
    p.add_argument("-l", "--latest", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.set_defaults(func=_ps)


def add_container_verbs(sub: Any) -> None:
    p = sub.add_parser("ls", aliases=["list"], help="list containers", formatter_class=FastFormatter)
    _ps_flags(p)
    p = sub.add_parser("inspect", help="display detailed information on containers", formatter_class=FastFormatter)
    p.add_argument("-f", "--format")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=lambda g, ns: inspect_containers(g, ns.containers, ns.format, strict=True))


def _match(c: Any, filters: list[tuple[str, str]]) -> bool:
    by: dict[str, list[str]] = {}
    for k, v in filters:
        by.setdefault(k, []).append(v)
    for k, vals in by.items():
        ok = False
        for v in vals:
            if k == "id":
                ok = c.id.startswith(v)
            elif k == "name":
                ok = re.search(v, c.name) is not None
            elif k == "label":
                key, eq, val = v.partition("=")
                labels = c.cfg.get("Labels") or {}
                ok = key in labels and (not eq or labels[key] == val)
            elif k == "status":
                ok = c.status == v
            elif k == "exited":
                ok = c.status == "exited" and str(c.exit_code) == v
            elif k == "ancestor":
                ok = c.cfg.get("Image") == v or c.image_id.startswith(v) or c.image_id.split(":")[-1].startswith(v)
            elif k == "volume":
                ok = any(m.get("Name") == v or m.get("Destination") == v for m in c.mounts)
            elif k == "network":
                ok = c.host.get("NetworkMode") == v
            if ok:
                break
        if not ok:
            return False
    return True


def _ps(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import inspect as ei
    from pallet.engine import session
    from pallet.errors import InvalidArgument

    filters = []
    for f in ns.filter:
        k, eq, v = f.partition("=")
        if not eq or k not in ("id", "name", "label", "status", "exited", "ancestor", "volume", "network"):
            raise InvalidArgument(f"invalid filter '{f}'")
        if k == "status" and v not in ("created", "restarting", "running", "removing", "paused", "exited", "dead"):
            raise InvalidArgument(f"invalid filter 'status={v}'")
        filters.append((k, v))
    with session.open(g) as s:
        cs = s.list()
        show_all = ns.all or ns.last >= 0 or ns.latest or any(k in ("status", "exited") for k, _ in filters)
        if not show_all:
            cs = [c for c in cs if c.status in ("running", "paused", "restarting")]
        cs = [c for c in cs if _match(c, filters)]
        if ns.latest:
            cs = cs[:1]
        elif ns.last >= 0:
            cs = cs[: ns.last]
        rows = []
        for c in cs:
            size = ""
            if ns.size:
                from pallet.cli import fmt

                size = f"{fmt.human_size(tree_size(s.dirs(c).upper))} (virtual {fmt.human_size(_image_size(s, c))})"
            r = ei.ps_row(c, size)
            r["LocalVolumes"] = str(sum(1 for m in c.mounts if m.get("Driver") == "local"))  # docker's count
            if ns.no_trunc:
                r["ID"] = c.id
            # docker's .Command is quoted, and cut to 20 characters unless --no-trunc
            cmd = r["Command"]
            if not ns.no_trunc and len(cmd) > 20:
                cmd = cmd[:19] + "…"
            r["Command"] = json.dumps(cmd, ensure_ascii=False)
            rows.append(r)
    if ns.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    from pallet.cli import fmt

    if ns.format:
        out = fmt.render(ns.format, rows, _HEADERS)
        if out:
            print(out)
        return 0
    headers = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    if ns.size:
        headers.append("SIZE")
    table = []
    for r in rows:
        line = [r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"], r["Names"]]
        if ns.size:
            line.append(r["Size"])
        table.append(line)
    print(fmt.table(headers, table))
    return 0


def _image_size(s: Any, c: Any) -> int:
    try:
        from pallet.oci.digest import Digest

        return int(s.store.get_image(Digest.parse(c.image_id)).size)
    except Exception:  # noqa: BLE001 - the image may be gone
        return 0


def inspect_containers(g: Any, refs: list[str], format: str | None, *, strict: bool) -> int:
    """Print docker-shaped JSON for containers; with ``strict`` False, return 2 when any ref is
    not a container so ``pallet inspect`` can try images."""
    from pallet.engine import inspect as ei
    from pallet.engine import session
    from pallet.errors import NotFound

    out = []
    with session.open(g) as s:
        for r in refs:
            try:
                c = s.get(r)
            except NotFound:
                if not strict:
                    return 2
                raise
            out.append(ei.inspect(c, s.root, s.runroot))
    from pallet.cli.fmt import inspect_text

    print(inspect_text(format, out))
    return 0
