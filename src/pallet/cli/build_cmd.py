"""``pallet build``: docker build's flags and output (the legacy builder's step lines)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("build", help="build an image from a Dockerfile")
    p.add_argument("context", metavar="CONTEXT|-", nargs="?",
                   help="context directory, or - (a tar or a Dockerfile on stdin)")
    p.add_argument("-t", "--tag", action="append", default=[], help="name and optionally a tag (name:tag)")
    p.add_argument("-f", "--file", help="name of the Dockerfile (default CONTEXT/Dockerfile; - for stdin)")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V", help="set a build-time variable")
    p.add_argument("--target", help="build this stage (and only what it needs)")
    p.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    p.add_argument("--pull", nargs="?", const="always", default="missing", metavar="always|missing|never",
                   help="pull base images: always (bare --pull, docker's), missing (default), never")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image ID")
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="set a label on the image")
    p.add_argument("--network", default="none", choices=["none", "host", "default"],
                   help="network of RUN steps (default none)")
    p.set_defaults(func=_build)


_POLICIES = {"always": "always", "true": "always", "missing": "missing", "false": "missing", "never": "never"}


def _pull_policy(ns: argparse.Namespace) -> str:
    """``--pull`` alone means always (docker); ``--pull=VALUE`` takes podman's values. A bare ``--pull``
    right before CONTEXT swallows it (argparse's optional value), so it is handed back."""
    from pallet.errors import InvalidArgument

    value = ns.pull
    if value not in _POLICIES and ns.context is None:
        ns.context, value = value, "always"
    if ns.context is None:
        raise InvalidArgument("\"pallet build\" requires exactly 1 argument: CONTEXT")
    if value not in _POLICIES:
        raise InvalidArgument(f"invalid --pull {value!r}: expected always, missing or never")
    return _POLICIES[value]


def _kv(items: list[str], what: str, allow_bare: bool) -> dict[str, str | None]:
    from pallet.errors import InvalidArgument

    out: dict[str, str | None] = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not k:
            raise InvalidArgument(f"invalid {what} {it!r}: the name is empty")
        if not eq:
            if not allow_bare:
                raise InvalidArgument(f"invalid {what} {it!r}: expected KEY=VALUE")
            out[k] = os.environ.get(k)   # docker: --build-arg K takes K from the environment
        else:
            out[k] = v
    return out


def _build(g: Any, ns: argparse.Namespace) -> int:
    from pallet.build.context import BuildContext, read_stdin_context
    from pallet.build.executor import Builder, BuildOptions
    from pallet.build.quickstore import QuickStore, tag_key
    from pallet.build.stages import load
    from pallet.errors import InvalidArgument, NotFound

    policy = _pull_policy(ns)
    for t in ns.tag:
        if tag_key(t) is None:  # not a plain name: let the full parser validate it (one-line error)
            from pallet.oci.reference import Reference

            Reference.parse(t)
    tags = list(ns.tag)
    build_args = _kv(ns.build_arg, "build-arg", True)
    labels = {k: v or "" for k, v in _kv(ns.label, "label", False).items()}
    opts = BuildOptions(tags=tags, build_args=build_args, target=ns.target, no_cache=ns.no_cache,
                        quiet=ns.quiet, labels=labels, network=ns.network)
    with QuickStore(g.root, g.runroot) as store:
        tmp = store.tmp_dir()
        text: str | None = None
        if ns.context == "-":
            if ns.file == "-":
                raise InvalidArgument("cannot read both the context and the Dockerfile from stdin")
            ctx, text = read_stdin_context(sys.stdin.buffer, tmp)
            name = "Dockerfile"
        else:
            if not os.path.isdir(ns.context):
                raise NotFound(f"unable to prepare context: path {ns.context!r} not found")
            ctx = BuildContext(ns.context)
            name = os.path.basename(ns.file) if ns.file and ns.file != "-" else "Dockerfile"
        try:
            if ns.file == "-":
                text = sys.stdin.read()
            elif text is None:
                path = ns.file or "Dockerfile"
                if not os.path.isabs(path) and not ns.file:
                    path = os.path.join(ctx.root, path)
                elif ns.file and not os.path.isabs(path) and not os.path.exists(path):
                    path = os.path.join(ctx.root, ns.file)
                try:
                    with open(path, encoding="utf-8", errors="surrogateescape") as f:
                        text = f.read()
                except FileNotFoundError:
                    raise NotFound(f"unable to prepare context: unable to evaluate symlinks in Dockerfile "
                                   f"path: lstat {path}: no such file or directory") from None
                except OSError as e:
                    raise InvalidArgument(f"cannot read Dockerfile {path}: {e.strerror}") from None
            df = load(text, name)
            out = sys.stdout
            pulled: set[str] = set()

            def resolve_base(ref: str) -> Any:
                if policy == "always" and ref not in pulled:
                    _pull(store, ref, out if not ns.quiet else None)
                    pulled.add(ref)
                try:
                    return store.resolve_image(ref)
                except NotFound:
                    if ref in pulled:
                        raise
                    if policy == "never":
                        raise NotFound(f"no such image: {ref} (and --pull=never)") from None
                    _pull(store, ref, out if not ns.quiet else None)
                    pulled.add(ref)
                    return store.resolve_image(ref)

            if not ns.quiet:
                out.write(f"Sending build context to pallet  {_ctx_size(ctx.root)}\n")
            rec = Builder(store, g.runroot, ctx, df, opts, out, resolve_base).build()
            if ns.quiet:
                print(str(rec.id))
        finally:
            ctx.close()
    return 0


def _pull(store: Any, ref: str, out: Any) -> None:
    from pallet.errors import NotFound, PalletError

    try:
        from pallet.engine.distribution import pull
    except ImportError as e:  # pragma: no cover
        raise NotFound(f"no such image: {ref} (and pulling is unavailable: {e})") from None
    from pallet.cli.pull_progress import PlainProgress
    from pallet.distribution.client.progress import NullProgress

    try:  # docker's legacy builder shows the pull's plain lines under the FROM step
        pulled = pull(store.full(), ref, progress=PlainProgress(out) if out is not None else NullProgress())
    except PalletError as e:
        raise NotFound(f"pull access denied or image not found for {ref}: {e}") from None
    if out is not None:
        for p in pulled:
            state = "Downloaded newer image" if p.downloaded else "Image is up to date"
            out.write(f"Status: {state} for {p.ref.familiar}\n")


def _ctx_size(root: str) -> str:
    total = 0
    for i, (dirpath, _dirs, files) in enumerate(os.walk(root)):
        if i > 20000:
            break
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    for unit in ("B", "kB", "MB", "GB"):
        if total < 1000 or unit == "GB":
            return f"{total:.4g}{unit}" if unit != "B" else f"{total}B"
        total /= 1000  # type: ignore[assignment]
    return f"{total}B"
