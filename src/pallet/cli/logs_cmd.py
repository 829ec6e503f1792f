"""``pallet logs [-f] [--tail N] [--since T] [--until T] [-t] CONTAINER`` (json-file)."""
from __future__ import annotations

import argparse
import os
from typing import Any

from pallet.cli.fastfmt import FastFormatter


def add_parser(sub: Any) -> None:
    p = sub.add_parser("logs", help="fetch the logs of a container", formatter_class=FastFormatter)
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--details", action="store_true")
    p.add_argument("container")
    p.set_defaults(func=_logs)


def _logs(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import containers, logs, session
    from pallet.errors import InvalidArgument

    if ns.tail == "all":
        tail = None
    else:
        try:
            tail = int(ns.tail)
        except ValueError:
            raise InvalidArgument(f"invalid value for \"tail\": {ns.tail!r}") from None
    since = logs.parse_since(ns.since)
    until = logs.parse_since(ns.until)
    with session.open(g) as s:
        c = s.get(ns.container)
        path = s.dirs(c).log

        def running() -> bool:
            cur = containers.reload(s.conn, c.id)
            return cur is not None and cur.status in ("running", "paused", "restarting")

        for stream, text, ts in logs.read(path, tail=tail, since=since, follow=ns.follow, running=running):
            if until and ts > until:
                break
            data = (f"{ts} {text}" if ns.timestamps else text).encode()
            fd = 2 if stream == "stderr" else 1
            try:
                os.write(fd, data)
            except BrokenPipeError:
                return 0
    return 0
