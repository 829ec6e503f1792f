"""``pallet container VERB``: docker's management command over the container verbs
(``container ls|ps|list``, ``container prune``, ``container inspect`` and every top-level verb)."""
from __future__ import annotations

import sys
from typing import Any


def add_parser(sub: Any) -> None:
    from pallet.cli import container_cmd, container_ops, exec_cmd, logs_cmd, ps_cmd

    p = sub.add_parser("container", help="manage containers")
    cs = p.add_subparsers(dest="container_verb", metavar="COMMAND", parser_class=type(p))
    for mod in (container_cmd, container_ops, exec_cmd, logs_cmd, ps_cmd):
        mod.add_parser(cs)
    ps_cmd.add_container_verbs(cs)
    container_ops.add_container_verbs(cs)
    p.set_defaults(func=lambda g, ns: (p.print_help(sys.stderr), 125)[1])
