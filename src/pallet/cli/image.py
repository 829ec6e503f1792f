"""Image verbs with docker's names, flags and output: ``images``, ``import``, ``load``, ``save``,
``tag``, ``rmi``, ``history``, and the ``image`` group (``ls``, ``inspect``, ``rm``, ``prune``,
``history``, ``tag``, ``import``, ``load``, ``save``) as aliases of the same handlers."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

Handler = Callable[[Any, argparse.Namespace], int | None]


def _store(g: Any) -> Any:
    from pallet.store import Store

    return Store.open(g.root, g.runroot)


# -- argument sets (one per verb, shared by the top-level verb and its ``image`` alias) -----------

def _args_ls(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("repository", nargs="?", help="only images of this repository[:tag]")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("-a", "--all", action="store_true", help="show all images (default hides intermediate)")
    p.add_argument("--digests", action="store_true", help="show digests")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE")
    p.add_argument("--format", help="json, or a template such as '{{.Repository}}:{{.Tag}}'")
    return _images


def _args_import(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("file", metavar="FILE|-", help="rootfs tarball (plain, gzip, zstd, xz, bzip2) or - for stdin")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-c", "--change", action="append", default=[], help="apply a Dockerfile instruction")
    p.add_argument("-m", "--message", default="", help="commit message for the imported image")
    p.add_argument("--platform", default="", help="os/arch[/variant] recorded in the config")
    return _import


def _args_load(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("-i", "--input", default="-", help="read from an archive file (or OCI layout dir), not stdin")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress the load output")
    return _load


def _args_save(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", help="write to a file instead of stdout")
    p.add_argument("--format", default="docker-archive", choices=["docker-archive", "oci-archive", "oci-dir"],
                   help="archive format (default docker-archive; oci-dir writes an OCI layout directory, needs -o)")
    return _save


def _args_tag(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    return _tag


def _args_rmi(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--force", action="store_true", help="force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="accepted for docker compatibility")
    return _rmi


def _args_history(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("-H", "--human", default=True, type=lambda v: v.lower() in ("1", "true", "yes"),
                   nargs="?", const=True, help="sizes and dates in human-readable form (default true)")
    p.add_argument("--format", help="json, or a template")
    return _history


def _args_inspect(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--format", help="a template such as '{{.Id}}', or json")
    return _inspect


def _args_prune(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("-a", "--all", action="store_true", help="remove all unused images, not just dangling")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    return _prune


TOP = {"images": _args_ls, "import": _args_import, "load": _args_load, "save": _args_save,
       "tag": _args_tag, "rmi": _args_rmi, "history": _args_history}
GROUP = {"ls": _args_ls, "list": _args_ls, "import": _args_import, "load": _args_load,
         "save": _args_save, "tag": _args_tag, "rm": _args_rmi, "remove": _args_rmi,
         "history": _args_history, "inspect": _args_inspect, "prune": _args_prune}


HELP = {
    _args_ls: "list images", _args_import: "import a rootfs tarball as an image",
    _args_load: "load images from a docker-archive or oci-archive", _args_save: "save images to an archive",
    _args_tag: "create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", _args_rmi: "remove images",
    _args_history: "show the history of an image", _args_inspect: "show images as JSON",
    _args_prune: "remove unused images",
}


def add_parser(sub: Any) -> None:
    for verb, fn in TOP.items():
        p = sub.add_parser(verb, help=HELP[fn], description=HELP[fn])
        p.set_defaults(func=fn(p))
    grp = sub.add_parser("image", help="manage images")
    gsub = grp.add_subparsers(dest="image_verb", metavar="COMMAND", parser_class=type(grp))
    for verb, fn in GROUP.items():
        p = gsub.add_parser(verb, help=HELP[fn], description=HELP[fn])
        p.set_defaults(func=fn(p))


# -- handlers --------------------------------------------------------------------------------

def _images(g: Any, ns: argparse.Namespace) -> int:
    from pallet.cli.fmt import ago, human_size, render, table
    from pallet.engine.image_info import list_rows, parse_filters

    filters = parse_filters(ns.filter)
    if ns.repository:
        filters.setdefault("reference", []).append(ns.repository)
    with _store(g) as st:
        rows = list_rows(st, filters, ns.all)
    if ns.quiet:
        seen: list[str] = []
        for r in rows:
            i = str(r.rec.id) if ns.no_trunc else r.rec.id.short
            if i not in seen:
                seen.append(i)
        _out("\n".join(seen))
        return 0
    objs = [{"Containers": "N/A", "CreatedAt": _stamp(r.created, "%Y-%m-%d %H:%M:%S +0000 UTC"),
             "CreatedSince": ago(r.created),
             "Digest": r.digest, "ID": str(r.rec.id) if ns.no_trunc else r.rec.id.short,
             "Repository": r.repository, "SharedSize": "N/A", "Size": human_size(r.rec.size),
             "Tag": r.tag, "UniqueSize": "N/A", "VirtualSize": human_size(r.rec.size)} for r in rows]
    if ns.format:
        _out(render(ns.format, objs))
        return 0
    head = ["REPOSITORY", "TAG"] + (["DIGEST"] if ns.digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    body = [[o["Repository"], o["Tag"]] + ([o["Digest"]] if ns.digests else [])
            + [o["ID"], o["CreatedSince"], o["Size"]] for o in objs]
    _out(table(head, body))
    return 0


def _import(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine.images import import_image

    with _store(g) as st:
        rec = import_image(st, ns.file, ns.reference, ns.change, ns.message, platform=ns.platform or None)
    _out(str(rec.id))
    return 0


def _load(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine.images import load

    with _store(g) as st:
        lines = load(st, ns.input)
    if not ns.quiet:
        _out("\n".join(lines))
    return 0


def _save(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine.images import save

    with _store(g) as st:
        save(st, ns.images, ns.output, ns.format)
    return 0


def _tag(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine.images import tag

    with _store(g) as st:
        tag(st, ns.source, ns.target)
    return 0


def _rmi(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine.images import rmi

    with _store(g) as st:
        res = rmi(st, ns.images, ns.force)
    _out("\n".join(res.lines))
    for e in res.errors:
        print(f"Error: {e}", file=sys.stderr)
    return 1 if res.errors else 0


def _history(g: Any, ns: argparse.Namespace) -> int:
    from pallet.cli.fmt import ago, human_size, render, table
    from pallet.engine.image_info import history, parse_time

    with _store(g) as st:
        entries = history(st, ns.image)
    objs = []
    for h in entries:
        i = h["Id"]
        if i != "<missing>" and not ns.no_trunc:
            i = i.split(":", 1)[1][:12]
        by = h["CreatedBy"]
        if not ns.no_trunc and len(by) > 45:
            by = by[:44] + "…"
        at = _stamp(parse_time(h["Created"]), "%Y-%m-%dT%H:%M:%SZ")
        objs.append({"ID": i, "CreatedSince": ago(parse_time(h["Created"])) if ns.human else at,
                     "CreatedAt": at, "CreatedBy": by,
                     "Size": human_size(h["Size"]) if ns.human else str(h["Size"]), "Comment": h["Comment"]})
    if ns.quiet:
        _out("\n".join(o["ID"] for o in objs))
    elif ns.format:
        _out(render(ns.format, objs))
    else:
        _out(table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                   [[o["ID"], o["CreatedSince"], o["CreatedBy"], o["Size"], o["Comment"]] for o in objs]))
    return 0


def inspect_images(g: Any, names: list[str], fmt: str | None) -> int:
    """``pallet image inspect`` / ``pallet inspect``: a JSON array; a missing name is an error
    after the found ones are printed (as docker)."""
    from pallet.cli.fmt import inspect_text
    from pallet.engine.image_info import inspect
    from pallet.errors import NotFound

    out, missing = [], []
    with _store(g) as st:
        for n in names:
            try:
                out.append(inspect(st, st.resolve_image(n)))
            except NotFound:
                missing.append(n)
    if out or not fmt:
        _out(inspect_text(fmt, out))
    for n in missing:
        print(f"Error: No such image: {n}", file=sys.stderr)
    return 1 if missing else 0


def _inspect(g: Any, ns: argparse.Namespace) -> int:
    return inspect_images(g, ns.images, ns.format)


def _prune(g: Any, ns: argparse.Namespace) -> int:
    from pallet.cli.fmt import human_size
    from pallet.engine.images import prune

    if not ns.force:
        what = "all images without at least one container associated to them" if ns.all \
            else "all dangling images"
        sys.stdout.write(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    with _store(g) as st:
        lines, freed = prune(st, ns.all)
    if lines:
        _out("Deleted Images:\n" + "\n".join(lines) + "\n")
    _out(f"Total reclaimed space: {human_size(freed)}")
    return 0


def _stamp(epoch: float, layout: str) -> str:
    """docker's CreatedAt: ``images`` prints Go's time.String(), ``history`` RFC 3339 (both in UTC here)."""
    import time

    return time.strftime(layout, time.gmtime(epoch))


def _out(text: str) -> None:
    if text:
        sys.stdout.write(text + "\n")
