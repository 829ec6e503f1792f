"""``pallet create``, ``run``, ``start``: docker's flags, parsed here, validated in the engine."""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and argparse: not on the run path (pallet.cli.fastargs)
    import argparse
    from typing import Any


# The flags of create/run, declared once: argparse is built from this table (``add_parser``)
# and so is the fast path of ``pallet run`` (``pallet.cli.fastargs``): they cannot drift.
# (option strings, kind, default, choices); kind: "flag" store_true, "one" store, "many" append.
CREATE_FLAGS: tuple[tuple, ...] = (
    (("--name",), "one", None, None),
    (("-e", "--env"), "many", None, None),
    (("--env-file",), "many", None, None),
    (("-w", "--workdir"), "one", None, None),
    (("-u", "--user"), "one", None, None),
    (("--entrypoint",), "one", None, None),
    (("-h", "--hostname"), "one", None, None),
    (("--init",), "flag", None, None),
    (("--restart",), "one", None, None),
    (("--rm",), "flag", None, None),
    (("--stop-signal",), "one", None, None),
    (("--stop-timeout",), "one", None, None),
    (("-l", "--label"), "many", None, None),
    (("-m", "--memory"), "one", None, None),
    (("--memory-swap",), "one", None, None),
    (("--cpus",), "one", None, None),
    (("-c", "--cpu-shares"), "one", None, None),
    (("--pids-limit",), "one", None, None),
    (("--cap-add",), "many", None, None),
    (("--cap-drop",), "many", None, None),
    (("--privileged",), "flag", None, None),
    (("--security-opt",), "many", None, None),
    (("--read-only",), "flag", None, None),
    (("--tmpfs",), "many", None, None),
    (("-v", "--volume"), "many", None, None),
    (("--mount",), "many", None, None),
    (("--volumes-from",), "many", None, None),
    (("--runtime",), "one", "pallet", None),
    (("--network", "--net"), "one", None, None),
    (("--network-alias",), "many", None, None),
    (("-p", "--publish"), "many", None, None),
    (("-P", "--publish-all"), "flag", None, None),
    (("--dns",), "many", None, None),
    (("--dns-search",), "many", None, None),
    (("--dns-option",), "many", None, None),
    (("--add-host",), "many", None, None),
    (("--group-add",), "many", None, None),
    (("--pull",), "one", "missing", ("always", "missing", "never")),
    (("-q", "--quiet"), "flag", None, None),
    (("-i", "--interactive"), "flag", None, None),
    (("-t", "--tty"), "flag", None, None),
)
RUN_FLAGS: tuple[tuple, ...] = ((("-d", "--detach"), "flag", None, None), *CREATE_FLAGS)


def add_flags(p: Any, flags: tuple[tuple, ...]) -> None:
    """Register a flag table with argparse (the same table ``pallet.cli.fastargs`` reads)."""
    for names, kind, default, choices in flags:
        if kind == "flag":
            p.add_argument(*names, action="store_true")
        elif kind == "many":
            p.add_argument(*names, action="append", default=[])
        elif choices is not None:
            p.add_argument(*names, default=default, choices=list(choices))
        else:
            p.add_argument(*names, default=default)


def _add_create_flags(p: Any, flags: tuple[tuple, ...]) -> None:
    p.add_argument("--help", action="help", help="show this help message and exit")
    add_flags(p, flags)
    p.add_argument("image")
    p.add_argument("command", nargs="...")  # argparse.REMAINDER


def func_of(verb: str) -> Any:
    return {"create": _create_func, "run": _run_func, "start": _start_func}[verb]


def _create_func(g: Any, ns: Any) -> int:
    return _create(g, ns)


def _run_func(g: Any, ns: Any) -> int:
    return _run(g, ns)


def _start_func(g: Any, ns: Any) -> int:
    return _start(g, ns)


def add_parser(sub: Any) -> None:
    from pallet.cli.fastfmt import FastFormatter

    p = sub.add_parser("create", help="create a container", add_help=False, formatter_class=FastFormatter)
    _add_create_flags(p, CREATE_FLAGS)
    p.set_defaults(func=_create_func)
    p = sub.add_parser("run", help="create and start a container", add_help=False, formatter_class=FastFormatter)
    p.add_argument("-d", "--detach", action="store_true")
    _add_create_flags(p, CREATE_FLAGS)
    p.set_defaults(func=_run_func)
    p = sub.add_parser("start", help="start one or more stopped containers", formatter_class=FastFormatter)
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=_start_func)


def options(ns: argparse.Namespace) -> Any:
    from pallet.engine.create import CreateOptions

    return CreateOptions(**option_kwargs(ns))


def option_kwargs(ns: argparse.Namespace) -> dict[str, Any]:
    """CreateOptions' keywords from the parsed flags (plain JSON values: the served run sends them
    to the monitor, pallet.engine.served)."""
    return dict(
        image=ns.image, command=list(ns.command), name=ns.name, env=ns.env, env_file=ns.env_file,
        workdir=ns.workdir, user=ns.user, entrypoint=ns.entrypoint, hostname=ns.hostname, init=ns.init,
        restart=ns.restart, rm=ns.rm, stop_signal=ns.stop_signal, stop_timeout=ns.stop_timeout,
        labels=ns.label, memory=ns.memory, memory_swap=ns.memory_swap, cpus=ns.cpus, cpu_shares=ns.cpu_shares,
        pids_limit=ns.pids_limit, cap_add=ns.cap_add, cap_drop=ns.cap_drop, privileged=ns.privileged,
        security_opt=ns.security_opt, read_only=ns.read_only, tmpfs=ns.tmpfs, volumes=ns.volume,
        mounts=ns.mount, volumes_from=ns.volumes_from, runtime=ns.runtime, network=ns.network,
        interactive=ns.interactive, tty=ns.tty, detach=getattr(ns, "detach", False), publish=ns.publish,
        publish_all=ns.publish_all, network_alias=ns.network_alias, dns=ns.dns, add_host=ns.add_host,
        dns_search=ns.dns_search, dns_option=ns.dns_option, group_add=ns.group_add)


def _pull(g: Any, ns: argparse.Namespace, store: Any) -> None:
    """``--pull always|missing|never``: a missing image is pulled with docker's messages on stderr
    ("Unable to find image 'REF' locally", the layer lines, the Digest and Status lines); ``-q``
    silences them. Only reached when pulling: the registry client is imported lazily."""
    from pallet.errors import NotFound

    if ns.pull == "never":
        return
    missing = False
    try:
        store.resolve_image(ns.image)
        if ns.pull == "missing":
            return
    except NotFound:
        missing = True
    try:
        from pallet.engine.distribution import pull
    except ImportError:
        return  # no registry client: create fails with "No such image"
    import sys

    from pallet.distribution.client.progress import NullProgress
    from pallet.errors import PalletError
    from pallet.oci.reference import Reference

    from .pull_progress import PlainProgress

    quiet = getattr(ns, "quiet", False)
    if missing and not quiet:
        try:
            shown = Reference.parse(ns.image).familiar
        except PalletError:
            shown = ns.image
        print(f"Unable to find image '{shown}' locally", file=sys.stderr, flush=True)
    prog = NullProgress() if quiet else PlainProgress(sys.stderr)
    try:
        recs = pull(store.full(), ns.image, progress=prog)
    except PalletError as e:
        raise NotFound(f"No such image: {ns.image} (not stored locally; pulling it failed: {e})") from None
    if not quiet:
        for p in recs:
            word = "Downloaded newer image" if p.downloaded else "Image is up to date"
            print(f"Status: {word} for {p.ref.familiar}", file=sys.stderr, flush=True)


def _warn(ns: argparse.Namespace) -> None:
    if ns.publish and ns.network == "host":  # docker's CLI warns (stderr); the engine drops them
        import sys

        print("WARNING: Published ports are discarded when using host network mode", file=sys.stderr)


def _create(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import session

    with session.open(g) as s:
        _warn(ns)
        _pull(g, ns, s.store)
        c = s.create(options(ns))
    print(c.id)
    return 0


def _run(g: Any, ns: argparse.Namespace) -> int:
    import os

    if ns.tty and ns.interactive and not ns.detach and not os.isatty(0):
        from pallet.errors import InvalidArgument

        raise InvalidArgument("the input device is not a TTY")

    if not (ns.tty or ns.detach) and ns.pull == "missing" and not (ns.publish and ns.network == "host"):
        from pallet.engine import served, units

        kw = option_kwargs(ns)
        kw["env"], kw["env_file"] = units.parse_env(ns.env, ns.env_file), []  # the CLI's environment
        rc = served.run(g.runroot, kw)  # by the monitor when one listens (pallet.engine.served)
        if rc is not None:
            return rc
    from pallet.engine import session

    with session.open(g) as s:
        _warn(ns)
        _pull(g, ns, s.store)
        c = s.create(options(ns))
        if ns.detach:
            s.start_detached(c)
            print(c.id)
            return 0
        rc = s.run_attached(c, stdin=ns.interactive)
    from pallet.engine import served

    served.warm(g.root, g.runroot)  # no monitor listened: start one for the next run/exec
    return rc


def _start(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import session
    from pallet.errors import PalletError

    rc = 0
    with session.open(g) as s:
        if ns.attach or ns.interactive:
            if len(ns.containers) > 1:
                from pallet.errors import InvalidArgument

                raise InvalidArgument("you cannot start and attach multiple containers at once")
            c = s.get(ns.containers[0])
            return s.attach(c, stdin=ns.interactive, start=True)
        for ref in ns.containers:
            try:
                c = s.get(ref)
                if c.status not in ("running", "paused"):
                    s.start_detached(c)
                print(ref)
            except PalletError as e:
                import sys

                print(f"Error: {e}", file=sys.stderr)
                rc = e.exit_code
    return rc
