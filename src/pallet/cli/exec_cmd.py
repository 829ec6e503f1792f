"""``pallet exec`` and ``pallet attach``."""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and argparse: not on the exec path (pallet.cli.fastargs)
    import argparse
    from typing import Any

# exec's flags, declared once for argparse and the fast path (see container_cmd.CREATE_FLAGS)
EXEC_FLAGS: tuple[tuple, ...] = (
    (("-i", "--interactive"), "flag", None, None),
    (("-t", "--tty"), "flag", None, None),
    (("-d", "--detach"), "flag", None, None),
    (("-e", "--env"), "many", None, None),
    (("--env-file",), "many", None, None),
    (("-u", "--user"), "one", None, None),
    (("-w", "--workdir"), "one", None, None),
    (("--privileged",), "flag", None, None),
)


def func_of(verb: str) -> Any:
    return {"exec": _exec, "attach": _attach}[verb]


def add_parser(sub: Any) -> None:
    from pallet.cli.container_cmd import add_flags
    from pallet.cli.fastfmt import FastFormatter

    p = sub.add_parser("exec", help="run a command in a running container", formatter_class=FastFormatter)
    add_flags(p, EXEC_FLAGS)
    p.add_argument("container")
    p.add_argument("command", nargs="...")  # argparse.REMAINDER
    p.set_defaults(func=_exec)
    p = sub.add_parser("attach", help="attach to a running container's output (and input)", formatter_class=FastFormatter)
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--sig-proxy", default="true")
    p.add_argument("container")
    p.set_defaults(func=_attach)


def _exec(g: Any, ns: argparse.Namespace) -> int:
    if not ns.command:
        from pallet.errors import InvalidArgument

        raise InvalidArgument("exec needs a command: pallet exec CONTAINER COMMAND [ARG...]")
    env: list[str] = []
    if ns.env or ns.env_file:  # (units is not imported on a plain exec's path)
        from pallet.engine import units

        env = units.parse_env(ns.env, ns.env_file)
    if not ns.tty and (ns.workdir is None or ns.workdir.startswith("/")):
        from pallet.engine import served

        rc = served.exec_(g.runroot, ns.container, list(ns.command), env=env, user=ns.user, workdir=ns.workdir,
                          interactive=ns.interactive, detach=ns.detach, privileged=ns.privileged)
        if rc is not None:  # by the monitor, when one listens (pallet.engine.served)
            return rc
    from pallet.engine import attach, session

    with session.open(g) as s:
        c = s.get(ns.container)
        rc = attach.exec_(s, c, ns.command, interactive=ns.interactive, tty=ns.tty, detach=ns.detach,
                          env=env, user=ns.user, workdir=ns.workdir, privileged=ns.privileged)
    from pallet.engine import served

    served.warm(g.root, g.runroot)  # no monitor listened: start one for the next exec
    return rc


def _attach(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import session

    with session.open(g) as s:
        c = s.get(ns.container)
        return s.attach(c, stdin=not ns.no_stdin and bool(c.cfg.get("OpenStdin")))
