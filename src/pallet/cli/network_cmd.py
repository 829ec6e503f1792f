"""``pallet network create|ls|inspect|rm|connect|disconnect|prune`` (docker's flags)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from pallet.errors import InvalidArgument, NotFound


def _labels(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        if not k:
            raise InvalidArgument(f"invalid label {it!r}: want KEY=VALUE")
        out[k] = v
    return out


def _nets(g: Any) -> Any:
    from pallet.network.endpoint import Endpoints

    return Endpoints(g.root, g.runroot)


def _create(g: Any, ns: argparse.Namespace) -> None:
    net = _nets(g).create(ns.name, subnet=ns.subnet, gateway=ns.gateway, internal=ns.internal,
                          labels=_labels(ns.label), driver=ns.driver)
    print(net.id)


def _ls(g: Any, ns: argparse.Namespace) -> None:
    nets = _nets(g).ls()
    filters = [f.partition("=") for f in ns.filter]
    for key, _, val in filters:
        if key == "name":
            nets = [n for n in nets if val in n["Name"]]
        elif key == "driver":
            nets = [n for n in nets if n["Driver"] == val]
        elif key == "label":
            k, _, v = val.partition("=")
            nets = [n for n in nets if k in n["Labels"] and (not v or n["Labels"][k] == v)]
        else:
            raise InvalidArgument(f"invalid filter {key!r} (name, driver, label)")
    nets.sort(key=lambda n: n["Name"])
    if ns.format and not ns.quiet:
        from pallet.cli import fmt

        # docker's ls row: ID short unless --no-trunc, Labels as k=v,k=v
        objs = [{"ID": n["Id"] if ns.no_trunc else n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"],
                 "Scope": n["Scope"], "Internal": str(n["Internal"]).lower(), "IPv6": "false",
                 "CreatedAt": n["Created"].replace("T", " ").replace("Z", " +0000 UTC"), "Labels": ",".join(f"{k}={v}" for k, v in n["Labels"].items())}
                for n in nets]
        out = fmt.render(ns.format, objs, {"ID": "NETWORK ID"})
        if out:
            print(out)
        return
    if ns.quiet:
        for n in nets:
            print(n["Id"] if ns.no_trunc else n["Id"][:12])
        return
    rows = [("NETWORK ID", "NAME", "DRIVER", "SCOPE")]
    rows += [(n["Id"] if ns.no_trunc else n["Id"][:12], n["Name"], n["Driver"], n["Scope"]) for n in nets]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "   " + r[3])


def _inspect(g: Any, ns: argparse.Namespace) -> int:
    nets = _nets(g)
    out, rc = [], 0
    for name in ns.names:
        try:
            out.append(nets.inspect(name))
        except NotFound as e:
            print(f"Error: {e}", file=sys.stderr)
            rc = 1
    from pallet.cli.fmt import inspect_text

    if out or not ns.format:  # (a format over no network prints nothing, as image inspect and docker)
        print(inspect_text(ns.format, out))
    return rc


def _rm(g: Any, ns: argparse.Namespace) -> int:
    nets = _nets(g)
    rc = 0
    for name in ns.names:
        try:
            nets.remove(name)
            print(name)
        except NotFound as e:
            print(f"Error: {e}", file=sys.stderr)
            rc = 1
    return rc


def _prune(g: Any, ns: argparse.Namespace) -> None:
    removed = _nets(g).prune()
    if removed:
        print("Deleted Networks:")
        for n in removed:
            print(n)


def _connect(g: Any, ns: argparse.Namespace) -> None:
    from pallet.engine import netconnect, session

    _nets(g).get(ns.network)  # an unknown network is reported first, as docker does
    with session.open(g) as s:
        netconnect.connect(s, ns.network, ns.container, ns.alias, ns.ip)


def _disconnect(g: Any, ns: argparse.Namespace) -> None:
    from pallet.engine import netconnect, session

    _nets(g).get(ns.network)
    with session.open(g) as s:
        netconnect.disconnect(s, ns.network, ns.container)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("network", help="manage networks")
    s = p.add_subparsers(dest="network_verb", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(func=lambda g, ns: (p.print_help(sys.stderr), 125)[1])

    c = s.add_parser("create", help="create a network")
    c.add_argument("--subnet", help="subnet in CIDR form (default: the first free one of 10.89.N.0/24)")
    c.add_argument("--gateway", help="gateway address (default: the subnet's first address)")
    c.add_argument("--internal", action="store_true", help="no access to or from outside the network")
    c.add_argument("--label", action="append", default=[], help="KEY=VALUE label (repeatable)")
    c.add_argument("-d", "--driver", default="bridge", help="driver (only bridge)")
    c.add_argument("name")
    c.set_defaults(func=_create)

    ls = s.add_parser("ls", aliases=["list"], help="list networks")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("--no-trunc", action="store_true")
    ls.add_argument("-f", "--filter", action="append", default=[], help="name=, driver=, label=")
    ls.add_argument("--format", help="Go template ({{.ID}} {{.Name}} {{.Driver}} {{.Scope}} ...), table, json")
    ls.set_defaults(func=_ls)

    i = s.add_parser("inspect", help="show networks as JSON")
    i.add_argument("-f", "--format", help="Go template, as docker's")
    i.add_argument("names", nargs="+")
    i.set_defaults(func=_inspect)

    r = s.add_parser("rm", aliases=["remove"], help="remove networks (refused while in use)")
    r.add_argument("names", nargs="+")
    r.set_defaults(func=_rm)

    pr = s.add_parser("prune", help="remove unused networks")
    pr.add_argument("-f", "--force", action="store_true", help="do not ask (pallet never asks)")
    pr.set_defaults(func=_prune)

    cn = s.add_parser("connect", help="connect a running container to a network")
    cn.add_argument("--alias", action="append", default=[])
    cn.add_argument("--ip")
    cn.add_argument("network")
    cn.add_argument("container")
    cn.set_defaults(func=_connect)

    dc = s.add_parser("disconnect", help="disconnect a container from a network")
    dc.add_argument("-f", "--force", action="store_true")
    dc.add_argument("network")
    dc.add_argument("container")
    dc.set_defaults(func=_disconnect)
