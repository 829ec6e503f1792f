"""``pallet exec`` and ``pallet attach``."""
from __future__ import annotations

import argparse
from typing import Any

from pallet.cli.fastfmt import FastFormatter


def add_parser(sub: Any) -> None:
    p = sub.add_parser("exec", help="run a command in a running container", formatter_class=FastFormatter)
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("--privileged", action="store_true")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=_exec)
    p = sub.add_parser("attach", help="attach to a running container's output (and input)", formatter_class=FastFormatter)
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--sig-proxy", default="true")
    p.add_argument("container")
    p.set_defaults(func=_attach)


def _exec(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import attach, session, units
    from pallet.errors import InvalidArgument

    if not ns.command:
        raise InvalidArgument("exec needs a command: pallet exec CONTAINER COMMAND [ARG...]")
    env = units.parse_env(ns.env, ns.env_file)
    with session.open(g) as s:
        c = s.get(ns.container)
        return attach.exec_(s, c, ns.command, interactive=ns.interactive, tty=ns.tty, detach=ns.detach,
                            env=env, user=ns.user, workdir=ns.workdir, privileged=ns.privileged)


def _attach(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import session

    with session.open(g) as s:
        c = s.get(ns.container)
        return s.attach(c, stdin=not ns.no_stdin and bool(c.cfg.get("OpenStdin")))
