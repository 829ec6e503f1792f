"""``pallet registry serve | token-server | gc``: pallet's own registry (OCI distribution
spec v1.1). Flags win over the YAML config file."""
from __future__ import annotations

import argparse
import os
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("registry", help="run pallet's registry server, its token server, or its GC")
    rs = p.add_subparsers(dest="registry_cmd", metavar="COMMAND", parser_class=type(p))

    s = rs.add_parser("serve", help="serve an OCI distribution registry")
    s.add_argument("--addr", help="HOST:PORT to listen on (default 127.0.0.1:5000)")
    s.add_argument("--root", dest="registry_root", help="storage directory (default <pallet root>/registry)")
    s.add_argument("--config", help="YAML config file (distribution's keys)")
    s.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    s.add_argument("--tls-key", help="PEM private key of --tls-cert")
    s.add_argument("--htpasswd", help="htpasswd file (bcrypt): require Basic auth")
    s.add_argument("--token-realm", help="token server URL: require Bearer tokens")
    s.add_argument("--token-service", help="service name tokens must be issued for (aud)")
    s.add_argument("--token-key", help="PEM public key(s)/certificate(s) that verify tokens")
    s.add_argument("--token-issuer", help="issuer tokens must name (iss); default: any")
    s.add_argument("--workers", type=int, help="worker processes (SO_REUSEPORT), default 1")
    s.add_argument("--max-concurrent", type=int,
                   help="in-flight requests per worker before 429 TOOMANYREQUESTS (default 1024)")
    s.add_argument("--access-log", help="'-' (stderr, default), 'off', or a file to append JSON lines to")
    s.add_argument("--no-delete", dest="delete_enabled", action="store_const", const=False,
                   help="refuse DELETE (405 UNSUPPORTED), like storage.delete.enabled: false")
    s.set_defaults(func=_serve)

    t = rs.add_parser("token-server", help="issue registry tokens against an htpasswd file")
    t.add_argument("--addr", default="127.0.0.1:5001", help="HOST:PORT (default 127.0.0.1:5001)")
    t.add_argument("--htpasswd", required=True, help="htpasswd file (bcrypt)")
    t.add_argument("--key", required=True, help="PEM private key (RSA or EC) that signs tokens")
    t.add_argument("--issuer", default="pallet-token-server", help="iss claim")
    t.add_argument("--service", required=True, help="aud claim: the registry's --token-service")
    t.add_argument("--ttl", type=int, default=300, help="token lifetime in seconds (default 300)")
    t.add_argument("--readonly", action="append", default=[], metavar="USER", help="user granted pull only")
    t.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    t.add_argument("--tls-key", help="PEM private key of --tls-cert")
    t.set_defaults(func=_token_server)

    g = rs.add_parser("gc", help="delete unreferenced blobs and abandoned uploads")
    g.add_argument("--root", dest="registry_root", help="storage directory (default <pallet root>/registry)")
    g.add_argument("--config", help="YAML config file (for storage.filesystem.rootdirectory)")
    g.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")
    g.add_argument("--grace", type=float, default=3600.0,
                   help="only delete content untouched for this many seconds (default 3600)")
    g.set_defaults(func=_gc)
    p.set_defaults(func=lambda g_, ns: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 125


def _config(g: Any, ns: argparse.Namespace) -> Any:
    from pallet.distribution.server import config as cfg

    c = cfg.load(ns.config) if getattr(ns, "config", None) else cfg.Config()
    flags = {k: getattr(ns, k, None) for k in ("addr", "tls_cert", "tls_key", "htpasswd", "token_realm",
                                                "token_service", "token_key", "token_issuer", "workers", "max_concurrent",
                                                "access_log", "delete_enabled")}
    flags["root"] = getattr(ns, "registry_root", None)
    cfg.merge(c, **flags)
    if not c.root:
        c.root = os.path.join(g.root, "registry")
    return c


def _serve(g: Any, ns: argparse.Namespace) -> int:
    from pallet.distribution.server.serve import serve

    return serve(_config(g, ns))


def _token_server(g: Any, ns: argparse.Namespace) -> int:
    from aiohttp import web

    from pallet.distribution.server.config import Config
    from pallet.distribution.server.serve import _check_bind, ssl_context
    from pallet.distribution.server.tokenserver import TokenIssuer, make_token_app

    c = Config(addr=ns.addr, root="-", tls_cert=ns.tls_cert or "", tls_key=ns.tls_key or "")
    c.validate()
    host, port = c.host_port()
    issuer = TokenIssuer(ns.htpasswd, ns.key, ns.issuer, ns.service, ns.ttl, tuple(ns.readonly))
    ctx = ssl_context(c)
    _check_bind(host, port)
    import sys

    print(f"pallet token server listening on {'https' if ctx else 'http'}://{host}:{port}",
          file=sys.stderr, flush=True)
    web.run_app(make_token_app(issuer), host=host, port=port, ssl_context=ctx, print=None, access_log=None)
    return 0


def _gc(g: Any, ns: argparse.Namespace) -> int:
    from pallet.distribution.server.gc import collect

    c = _config(g, ns)
    prefix = "would delete" if ns.dry_run else "deleted"
    rep = collect(c.root, dry_run=ns.dry_run, grace=ns.grace, say=lambda s: print(f"{prefix} {s}"))
    print(f"{len(rep.blobs)} blob(s) ({rep.freed} bytes) and {len(rep.uploads)} upload(s) "
          f"{prefix}; {rep.marked} blob(s) in use")
    return 0
