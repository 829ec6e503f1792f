"""Garbage collection: mark every blob a manifest revision of any repository references,
sweep the rest, and abandoned uploads, once older than a grace period.

Safe while the registry serves: reads of referenced content are never touched (an open blob
that is unlinked is still served to the end), and the grace period protects content being
pushed right now: uploads in progress, and blobs uploaded before their manifest (a manifest
push also refreshes the mtime of every blob it references; GC re-checks the mtime right
before it deletes).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pallet.distribution.server.storage.filesystem import FilesystemDriver
from pallet.errors import InvalidArgument
from pallet.oci.digest import Digest
from pallet.oci.manifest import MAX_MANIFEST_SIZE

DEFAULT_GRACE = 3600.0


@dataclass
class Report:
    marked: int = 0
    blobs: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    freed: int = 0


def _references(body: bytes) -> list[Digest]:
    try:
        obj = json.loads(body)
    except ValueError:
        return []
    out: list[Digest] = []
    if not isinstance(obj, dict):
        return out
    descs = [obj.get("config")] + list(obj.get("layers") or []) + list(obj.get("manifests") or [])
    for d in descs:
        if isinstance(d, dict) and isinstance(d.get("digest"), str):
            try:
                out.append(Digest.parse(d["digest"]))
            except InvalidArgument:
                continue
    return out


def collect(root: str, dry_run: bool = False, grace: float = DEFAULT_GRACE,
            say: Callable[[str], None] = lambda s: None) -> Report:
    if not os.path.isdir(os.path.join(root, "blobs")):
        raise InvalidArgument(f"{root} is not a registry root (no blobs/ directory)")
    drv = FilesystemDriver(root)
    rep = Report()
    marked: set[Digest] = set()
    repos = drv.repositories()
    for repo in repos:
        for m in drv.manifest_links(repo):
            marked.add(m)
            body = drv.blob_read(m, MAX_MANIFEST_SIZE)
            if body is not None:
                marked.update(_references(body))
    rep.marked = len(marked)
    now = time.time()
    doomed = [d for d, mtime in drv.blobs() if d not in marked and now - mtime > grace]
    for d in doomed:
        path = drv.blob_path(d) or ""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if time.time() - st.st_mtime <= grace:  # referenced by a push since the mark
            continue
        rep.blobs.append(str(d))
        rep.freed += st.st_size
        say(f"blob {d} ({st.st_size} bytes)")
        if not dry_run:
            for repo in repos:
                drv.layer_unlink(repo, d)
            drv.blob_remove(d)
    for uuid, mtime in drv.uploads():
        if now - mtime > grace:
            rep.uploads.append(uuid)
            say(f"upload {uuid}")
            if not dry_run:
                drv.upload_remove(uuid)
    if not dry_run:
        _sweep_temp(root, now, grace)
    return rep


def _sweep_temp(root: str, now: float, grace: float) -> None:
    """Temp files a crash left between write and rename."""
    for top in ("blobs", "repositories"):
        for dirpath, _dirs, files in os.walk(os.path.join(root, top)):
            for f in files:
                if f.startswith(".tmp-"):
                    p = os.path.join(dirpath, f)
                    try:
                        if now - os.stat(p).st_mtime > grace:
                            os.unlink(p)
                    except OSError:
                        pass
