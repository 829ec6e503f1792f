"""``pallet commit`` and ``pallet diff`` (docker's flags and output).

commit: the container's upper dir becomes a new layer on top of its image (whiteouts and
opaque dirs in OCI form: build/commit.py + image/diff.py); the new image's config is the
container's, with ``-c`` instructions applied; the history entry records ``-m``/``-a``.
The container is paused while its upper dir is read (``-p``, default true), as docker does.
diff: A/C/D lines as ``docker diff`` prints them.
"""
from __future__ import annotations

import argparse
from typing import Any

IMAGE_KEYS = ("Hostname", "Domainname", "User", "ExposedPorts", "Env", "Cmd", "Healthcheck", "ArgsEscaped",
              "Volumes", "WorkingDir", "Entrypoint", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("commit", help="create a new image from a container's changes")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-m", "--message", default="", help="commit message")
    p.add_argument("-a", "--author", default="", help='author (e.g. "Jane <jane@example.com>")')
    p.add_argument("-c", "--change", action="append", default=[], help="apply a Dockerfile instruction")
    p.add_argument("-p", "--pause", default=True, type=_bool, nargs="?", const=True,
                   help="pause the container during the commit (default true)")
    p.set_defaults(func=_commit)
    d = sub.add_parser("diff", help="show the changes to a container's filesystem")
    d.add_argument("container", metavar="CONTAINER")
    d.set_defaults(func=_diff)


def _bool(v: str) -> bool:
    return v.lower() not in ("false", "0", "no")


def _commit(g: Any, ns: argparse.Namespace) -> int:
    from pallet.build.changes import apply_changes
    from pallet.build.commit import commit_upper
    from pallet.engine import session
    from pallet.engine.containers import Dirs
    from pallet.oci.digest import Digest
    from pallet.oci.reference import Reference
    from pallet.store import Store

    tags = [Reference.parse(ns.reference)] if ns.reference else []
    with session.open(g) as s:
        c = s.get(ns.container)
        base = s.store.get_image(Digest.parse(c.image_id))
        ccfg = {k: v for k, v in (c.cfg or {}).items() if k in IMAGE_KEYS and v not in (None, "", [], {})}
        cfg = apply_changes(ccfg, ns.change)   # bad -c fails here, before anything is written
        upper = str(Dirs(s.root, s.runroot, c.id).upper)
        paused = False
        if ns.pause and c.status == "running":
            s.pause(c, True)
            paused = True
        try:
            with Store.open(g.root, g.runroot) as store:
                rec = commit_upper(store, store.get_image(base.id), upper, config=cfg,
                                   created_by=" ".join(ccfg.get("Cmd") or []), comment=ns.message,
                                   author=ns.author, tags=tags)
        finally:
            if paused:
                s.pause(c, False)
    print(str(rec.id))
    return 0


def _diff(g: Any, ns: argparse.Namespace) -> int:
    from pallet.engine import session
    from pallet.engine.containers import Dirs
    from pallet.image.diff import changes, engine_mountpoints

    with session.open(g) as s:
        c = s.get(ns.container)
        upper = str(Dirs(s.root, s.runroot, c.id).upper)
        lowers = list(c.config.get("Lowerdirs", []))
        for ch in changes(upper, lowers, engine_mountpoints(upper)):
            print(ch)
    return 0
