"""``pallet pull``, ``push``, ``login``, ``logout`` (docker's flags and output)."""
from __future__ import annotations

import argparse
import sys
from typing import Any


def _tls(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-verify", default=None, type=_bool, metavar="BOOL",
                   help="require HTTPS and verify certificates (false: plain HTTP / no verification)")


def _bool(text: str) -> bool:
    t = text.lower()
    if t in ("true", "1", "yes"):
        return True
    if t in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("pull", help="download an image from a registry")
    p.add_argument("--platform", help="os/arch[/variant] to pick from a multi-platform image")
    p.add_argument("-a", "--all-tags", action="store_true", help="download every tagged image of the repository")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image reference")
    _tls(p)
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    p.set_defaults(func=_pull)

    p = sub.add_parser("push", help="upload an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    _tls(p)
    p.add_argument("name", metavar="NAME[:TAG]")
    p.add_argument("destination", nargs="?", help="push to this reference instead of NAME")
    p.set_defaults(func=_push)

    p = sub.add_parser("login", help="log in to a registry")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _tls(p)
    p.add_argument("server", nargs="?", metavar="REGISTRY")
    p.set_defaults(func=_login)

    p = sub.add_parser("logout", help="log out from a registry")
    p.add_argument("server", nargs="?", metavar="REGISTRY")
    p.set_defaults(func=_logout)


def _store(g: Any) -> Any:
    from pallet.store import Store

    return Store.open(g.root, g.runroot)


def _pull(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine.distribution import pull

    from .pull_progress import make_progress

    prog = make_progress(ns.quiet)
    try:
        with _store(g) as st:
            recs = pull(st, ns.name, platform=ns.platform, all_tags=ns.all_tags,
                        tls_verify=ns.tls_verify, progress=prog)
    finally:
        prog.close() if hasattr(prog, "close") else None
    for p in recs:
        if not ns.quiet:
            if p.downloaded:
                print(f"Status: Downloaded newer image for {p.ref.familiar}")
            else:
                print(f"Status: Image is up to date for {p.ref.familiar}")
        print(str(p.ref))
    return 0


def _push(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine.distribution import push

    from .pull_progress import make_progress

    prog = make_progress(ns.quiet)
    try:
        with _store(g) as st:
            push(st, ns.name, ns.destination, tls_verify=ns.tls_verify, progress=prog)
    finally:
        prog.close() if hasattr(prog, "close") else None
    return 0


def _login(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine.distribution import login, stored_username
    from pallet.errors import InvalidArgument

    user, pw = ns.username, ns.password
    if ns.password_stdin:
        if pw:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        if not user:
            raise InvalidArgument("must provide --username with --password-stdin")
        pw = sys.stdin.read().rstrip("\r\n")
    elif pw:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    if not user or not pw:
        if not sys.stdin.isatty():
            raise InvalidArgument("cannot prompt for credentials: stdin is not a terminal (use -u and --password-stdin)")
        import getpass

        if not user:
            default = stored_username(ns.server) or ""
            user = input(f"Username{f' ({default})' if default else ''}: ").strip() or default
        if not pw:
            pw = getpass.getpass("Password: ")
    path = login(ns.server, user, pw, tls_verify=ns.tls_verify)
    if _stored_plain(path, ns.server):
        print(f"WARNING! Your password will be stored unencrypted in {path}.", file=sys.stderr)
        print("Configure a credential helper to remove this warning (credsStore in that file).", file=sys.stderr)
    print("Login Succeeded")  # docker prints exactly this
    return 0


def _stored_plain(path: Any, server: str | None) -> bool:
    """True when login wrote the secret into the file itself (no credential helper)."""
    import json

    from pallet.distribution.client.hosts import auth_key
    from pallet.engine.distribution import registry_domain

    try:
        ent = json.loads(path.read_text()).get("auths", {}).get(auth_key(registry_domain(server)), {})
    except (OSError, ValueError, AttributeError):
        return False
    return bool(ent.get("auth"))


def _logout(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine.distribution import logout

    domain, removed = logout(ns.server)
    if removed:
        print(f"Removing login credentials for {domain}")
    else:
        print(f"Not logged in to {domain}")
    return 0
