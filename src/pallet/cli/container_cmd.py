"""``pallet create``, ``run``, ``start``: docker's flags, parsed here, validated in the engine."""
from __future__ import annotations

import argparse
from typing import Any

from pallet.cli.fastfmt import FastFormatter


def _add_create_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--help", action="help", help="show this help message and exit")
    a("--name")
    a("-e", "--env", action="append", default=[])
    a("--env-file", action="append", default=[])
    a("-w", "--workdir")
    a("-u", "--user")
    a("--entrypoint")
    a("-h", "--hostname")
    a("--init", action="store_true")
    a("--restart")
    a("--rm", action="store_true")
    a("--stop-signal")
    a("--stop-timeout")
    a("-l", "--label", action="append", default=[])
    a("-m", "--memory")
    a("--memory-swap")
    a("--cpus")
    a("-c", "--cpu-shares")
    a("--pids-limit")
    a("--cap-add", action="append", default=[])
    a("--cap-drop", action="append", default=[])
    a("--privileged", action="store_true")
    a("--security-opt", action="append", default=[])
    a("--read-only", action="store_true")
    a("--tmpfs", action="append", default=[])
    a("-v", "--volume", action="append", default=[])
    a("--mount", action="append", default=[])
    a("--volumes-from", action="append", default=[])
    a("--runtime", default="pallet")
    a("--network", "--net")
    a("--network-alias", action="append", default=[])
    a("-p", "--publish", action="append", default=[])
    a("-P", "--publish-all", action="store_true")
    a("--dns", action="append", default=[])
    a("--add-host", action="append", default=[])
    a("--pull", choices=["always", "missing", "never"], default="missing")
    a("-i", "--interactive", action="store_true")
    a("-t", "--tty", action="store_true")
    a("image")
    a("command", nargs=argparse.REMAINDER)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("create", help="create a container", add_help=False, formatter_class=FastFormatter)
    _add_create_flags(p)
    p.set_defaults(func=lambda g, ns: _create(g, ns))
    p = sub.add_parser("run", help="create and start a container", add_help=False, formatter_class=FastFormatter)
    p.add_argument("-d", "--detach", action="store_true")
    _add_create_flags(p)
    p.set_defaults(func=lambda g, ns: _run(g, ns))
    p = sub.add_parser("start", help="start one or more stopped containers", formatter_class=FastFormatter)
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=lambda g, ns: _start(g, ns))


def options(ns: argparse.Namespace) -> Any:
    from pallet.engine.create import CreateOptions

    return CreateOptions(
        image=ns.image, command=list(ns.command), name=ns.name, env=ns.env, env_file=ns.env_file,
        workdir=ns.workdir, user=ns.user, entrypoint=ns.entrypoint, hostname=ns.hostname, init=ns.init,
        restart=ns.restart, rm=ns.rm, stop_signal=ns.stop_signal, stop_timeout=ns.stop_timeout,
        labels=ns.label, memory=ns.memory, memory_swap=ns.memory_swap, cpus=ns.cpus, cpu_shares=ns.cpu_shares,
        pids_limit=ns.pids_limit, cap_add=ns.cap_add, cap_drop=ns.cap_drop, privileged=ns.privileged,
        security_opt=ns.security_opt, read_only=ns.read_only, tmpfs=ns.tmpfs, volumes=ns.volume,
        mounts=ns.mount, volumes_from=ns.volumes_from, runtime=ns.runtime, network=ns.network,
        interactive=ns.interactive, tty=ns.tty, detach=getattr(ns, "detach", False), publish=ns.publish,
        publish_all=ns.publish_all, network_alias=ns.network_alias, dns=ns.dns, add_host=ns.add_host)


def _pull(g: Any, ns: argparse.Namespace, store: Any) -> None:
    """``--pull always|missing|never`` through the registry client's ``ensure_image``."""
    from pallet.errors import NotFound

    if ns.pull == "never":
        return
    if ns.pull == "missing":
        try:
            store.resolve_image(ns.image)
            return
        except NotFound:
            pass
    try:
        from pallet.engine.distribution import ensure_image
    except ImportError:
        return  # no registry client: create fails with "No such image"
    from pallet.errors import PalletError

    try:
        ensure_image(store.full(), ns.image, policy=ns.pull)
    except PalletError as e:
        raise NotFound(f"No such image: {ns.image} (not stored locally; pulling it failed: {e})") from None


def _create(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import session

    with session.open(g) as s:
        _pull(g, ns, s.store)
        c = s.create(options(ns))
    print(c.id)
    return 0


def _run(g: Any, ns: argparse.Namespace) -> int:
    import os

    from pallet.engine import session

    if ns.tty and ns.interactive and not ns.detach and not os.isatty(0):
        from pallet.errors import InvalidArgument

        raise InvalidArgument("the input device is not a TTY")

    with session.open(g) as s:
        _pull(g, ns, s.store)
        c = s.create(options(ns))
        if ns.detach:
            s.start_detached(c)
            print(c.id)
            return 0
        return s.run_attached(c, stdin=ns.interactive)


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
