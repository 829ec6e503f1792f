"""``pallet volume create|ls|inspect|rm|prune``."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pallet.cli.fastfmt import FastFormatter
from pallet.engine.containers import tree_size


def add_parser(sub: Any) -> None:
    p = sub.add_parser("volume", help="manage volumes", formatter_class=FastFormatter)
    vs = p.add_subparsers(dest="volume_verb", metavar="COMMAND", parser_class=type(p))
    c = vs.add_parser("create", help="create a volume", formatter_class=FastFormatter)
    c.add_argument("-d", "--driver", default="local")
    c.add_argument("-o", "--opt", action="append", default=[])
    c.add_argument("--label", action="append", default=[])
    c.add_argument("name", nargs="?")
    c.set_defaults(func=_create)
    ls = vs.add_parser("ls", aliases=["list"], help="list volumes", formatter_class=FastFormatter)
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("-f", "--filter", action="append", default=[])
    ls.add_argument("--format")
    ls.set_defaults(func=_ls)
    i = vs.add_parser("inspect", help="display detailed information on volumes", formatter_class=FastFormatter)
    i.add_argument("-f", "--format")
    i.add_argument("names", nargs="+")
    i.set_defaults(func=_inspect)
    r = vs.add_parser("rm", aliases=["remove"], help="remove volumes", formatter_class=FastFormatter)
    r.add_argument("-f", "--force", action="store_true")
    r.add_argument("names", nargs="+")
    r.set_defaults(func=_rm)
    pr = vs.add_parser("prune", help="remove unused volumes", formatter_class=FastFormatter)
    pr.add_argument("-f", "--force", action="store_true")
    pr.add_argument("-a", "--all", action="store_true")
    pr.add_argument("--filter", action="append", default=[])
    pr.set_defaults(func=_prune)
    p.set_defaults(func=lambda g, ns: (p.print_help(sys.stderr), 125)[1])


def _create(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import session, units, volumes

    opts = units.parse_labels(ns.opt)
    with session.open(g) as s:
        name, _ = volumes.create(s.conn, s.root, ns.name, labels=units.parse_labels(ns.label), driver=ns.driver,
                                 options=opts)
    print(name)
    return 0


def _ls(g: Any, ns: argparse.Namespace) -> int:
    from pallet.cli import fmt
    from pallet.engine import session, volumes

    with session.open(g) as s:
        rows = volumes.list_all(s.conn)
        objs = []
        for r in rows:
            ok = True
            for f in ns.filter:
                k, _, v = f.partition("=")
                if k == "name":
                    ok = ok and v in r[0]
                elif k == "dangling":
                    ok = ok and (not volumes.users(s.conn, r[0])) == (v in ("true", "1"))
                elif k == "label":
                    lk, eq, lv = v.partition("=")
                    labels = json.loads(r[3])
                    ok = ok and lk in labels and (not eq or labels[lk] == lv)
            if ok:
                objs.append({"Driver": r[1], "Name": r[0], "Labels": ",".join(f"{k}={v}" for k, v in json.loads(r[3]).items()),
                             "Mountpoint": str(volumes.data_dir(s.root, r[0])), "Scope": "local"})
    if ns.quiet:
        for o in objs:
            print(o["Name"])
    elif ns.format:
        out = fmt.render(ns.format, objs)
        if out:
            print(out)
    else:
        print(fmt.table(["DRIVER", "VOLUME NAME"], [[o["Driver"], o["Name"]] for o in objs]))
    return 0


def _inspect(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import session, volumes

    out = []
    with session.open(g) as s:
        for n in ns.names:
            out.append(volumes.inspect(s.root, volumes.get(s.conn, n)))
    from pallet.cli.fmt import inspect_text

    print(inspect_text(ns.format, out))
    return 0


def _rm(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import session, volumes
    from pallet.errors import PalletError

    rc = 0
    with session.open(g) as s:
        for n in ns.names:
            try:
                volumes.remove(s.conn, s.root, n, force=ns.force)
                print(n)
            except PalletError as e:
                print(f"Error: {e}", file=sys.stderr)
                rc = 1
    return rc


def _prune(g: Any, ns: argparse.Namespace) -> int:
    from pallet.cli.fmt import human_size
    from pallet.engine import session, volumes

    with session.open(g) as s:
        sizes = {r[0]: tree_size(volumes.data_dir(s.root, r[0])) for r in volumes.list_all(s.conn)}
        removed = volumes.prune(s.conn, s.root, all_volumes=True)
    if removed:
        print("Deleted Volumes:")
        for n in removed:
            print(n)
        print()
    print(f"Total reclaimed space: {human_size(sum(sizes.get(n, 0) for n in removed))}")
    return 0
