"""Removing content: image deletion with reference counts, rollback of a failed write,
temp cleanup, ``check`` (``pallet system check [--repair]``) and disk usage (``system df``).

Every function that removes anything runs with the store lock held EXCLUSIVE (the callers in
store.py take it), so no in-flight writer can depend on what is removed.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pallet.oci.digest import Digest

if TYPE_CHECKING:
    from pallet.store.store import Store

CHUNK = 1 << 20


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)   # corruption: the store cannot be trusted there
    garbage: list[str] = field(default_factory=list)    # unreferenced leftovers (harmless, reclaimable)
    repaired: list[str] = field(default_factory=list)
    fixed: bool = False  # a repair ran: everything in problems was removed or corrected

    @property
    def ok(self) -> bool:
        return not self.problems or self.fixed


@dataclass
class Usage:
    blob_bytes: int
    blob_count: int
    layer_bytes: int                  # sum of uncompressed layer sizes
    layer_count: int
    layers: dict[str, tuple[int, int]]  # diff_id -> (size, refcount)


STORE_PREFIX = "st-"          # temp entries the store itself makes (only under the shared store lock)
FOREIGN_MIN_AGE = 600         # seconds: other users' temp entries younger than this are left alone


def clean_tmp(st: Store, blocking: bool) -> list[str]:
    """Remove the store's own leftovers in ROOT/tmp (``st-*``) when no writer holds the store
    lock. Other entries belong to other users of ROOT/tmp (build, import spools) and are left
    to ``check(repair=True)``."""
    if not st.lock.acquire(True, blocking=blocking):
        return []
    try:
        _clean_layer_locks(st)
        return _clean_tmp_locked(st, foreign=False)
    finally:
        st.lock.release()


def _clean_layer_locks(st: Store) -> None:
    """Lock files of layers that are not there (a failed or killed extraction). Only layer
    writers take them, and they hold the store lock shared: with it exclusive, none is held."""
    for name in os.listdir(st.paths.locks):
        if name.startswith("layer-") and name.endswith(".lock"):
            if not os.path.isdir(os.path.join(st.paths.layers, name[6:-5])):
                try:
                    os.unlink(os.path.join(st.paths.locks, name))
                except FileNotFoundError:
                    pass


def _locked_by_someone(p: str) -> bool:
    """True when another process holds an flock on the entry (Store.temp_dir does)."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _clean_tmp_locked(st: Store, foreign: bool) -> list[str]:
    """Caller holds the store lock exclusively: no store writer owns an ``st-*`` entry. Foreign
    entries (with ``foreign``) go only when older than FOREIGN_MIN_AGE and not flock'ed."""
    removed = []
    now = time.time()
    for name in os.listdir(st.paths.tmp):
        p = os.path.join(st.paths.tmp, name)
        if not name.startswith(STORE_PREFIX):
            try:
                young = now - os.lstat(p).st_mtime < FOREIGN_MIN_AGE
            except FileNotFoundError:
                continue
            if not foreign or young or _locked_by_someone(p):
                continue
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        removed.append(name)
    return removed


def _referenced_blobs(st: Store) -> set[str]:
    q = st.db.query
    refs = {r[0] for r in q("SELECT id FROM images")}
    refs |= {r[0] for r in q("SELECT manifest_digest FROM images")}
    refs |= {r[0] for r in q("SELECT blob_digest FROM image_layers")}
    return refs


def rollback(st: Store, created: list[tuple[str, Digest]]) -> None:
    """Undo what a failed write_image created, unless rows reference it by now. When the
    caller still holds the store lock shared (an outer ``with st.lock.shared()``), the lock
    cannot be upgraded safely: the leftovers stay as garbage for ``check(repair=True)``."""
    if st.lock.held:
        return
    with st.lock.exclusive():
        blobs = _referenced_blobs(st)
        layers = {r[0] for r in st.db.query("SELECT diff_id FROM layers")}
        for kind, d in created:
            if kind == "layer" and str(d) not in layers:
                st.layers.remove(d)
            elif kind == "blob" and str(d) not in blobs:
                st.blobs.remove(d)


def delete_image(st: Store, image_id: Digest) -> None:
    from pallet.errors import NotFound

    iid = str(image_id)
    with st.db.write() as c:
        row = c.execute("SELECT manifest_digest FROM images WHERE id=?", (iid,)).fetchone()
        if not row:
            raise NotFound(f"no such image: {image_id}")
        rows = c.execute("SELECT diff_id, blob_digest FROM image_layers WHERE image_id=?", (iid,)).fetchall()
        for diff_id, _ in rows:
            c.execute("UPDATE layers SET refcount=refcount-1 WHERE diff_id=?", (diff_id,))
        gone_layers = [r[0] for r in c.execute("SELECT diff_id FROM layers WHERE refcount<=0")]
        c.execute("DELETE FROM layers WHERE refcount<=0")
        c.execute("DELETE FROM tags WHERE image_id=?", (iid,))
        c.execute("DELETE FROM repo_digests WHERE image_id=?", (iid,))
        c.execute("DELETE FROM image_layers WHERE image_id=?", (iid,))
        c.execute("DELETE FROM images WHERE id=?", (iid,))
    candidates = {iid, row[0], *(r[1] for r in rows)}
    keep = _referenced_blobs(st)
    for d in gone_layers:
        st.layers.remove(Digest.parse(d))
    for d in candidates - keep:
        st.blobs.remove(Digest.parse(d))


def _hash_file(path: str, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb", buffering=0) as f:
        while b := f.read(CHUNK):
            h.update(b)
    return h.hexdigest()


def check(st: Store, repair: bool, deep: bool = False) -> CheckReport:
    """Verify blobs (rehash), layers (complete marker, named right; with ``deep``, every file
    against the layer's blob: verify.py) and rows (no dangling references, refcounts). With
    ``repair``: remove what cannot be trusted (corrupt blobs and layers, images that depend on
    missing content) and reclaim garbage."""
    from pallet.store.verify import verify_layer  # lazy: the extractor modules are not needed otherwise

    rep = CheckReport()
    if repair:
        _clean_layer_locks(st)
        rep.repaired += [f"removed temp file {n}" for n in _clean_tmp_locked(st, foreign=True)]
    rep.garbage += [f"temp file {n}" for n in os.listdir(st.paths.tmp)]
    bad_blobs: set[str] = set()
    for d in st.blobs.all():
        p = str(st.paths.blob(d))
        if len(d.encoded) != {"sha256": 64, "sha512": 128}[d.algorithm] or _hash_file(p, d.algorithm) != d.encoded:
            bad_blobs.add(str(d))
            rep.problems.append(f"blob {d} does not match its digest")
            if repair:
                os.unlink(p)
                rep.repaired.append(f"removed corrupt blob {d}")
    have_blobs = {str(d) for d in st.blobs.all()}
    bad_layers: set[str] = set()
    layer_rows = {r[0]: r[1] for r in st.db.query("SELECT diff_id, refcount FROM layers")}
    present = set()
    for name in st.layers.all():
        lid = f"sha256:{name}"
        ok = (st.paths.layers / name / "layer.json").is_file() and (st.paths.layers / name / "diff").is_dir()
        if not ok:
            bad_layers.add(lid)
            rep.problems.append(f"layer {lid} is incomplete")
        elif lid not in layer_rows:
            rep.garbage.append(f"layer {lid} is not used by any image")
        elif deep and (diffs := verify_layer(st, Digest("sha256", name))):
            ok = False
            bad_layers.add(lid)
            rep.problems += diffs
        else:
            present.add(lid)
        if repair and (not ok or lid not in layer_rows):
            st.layers.remove(Digest("sha256", name))
            rep.repaired.append(f"removed {'untrustworthy' if not ok else 'unused'} layer {lid}")
    counts: dict[str, int] = {}
    broken: set[str] = set()
    for iid, mdig in st.db.query("SELECT id, manifest_digest FROM images"):
        for what, d in (("config", iid), ("manifest", mdig)):
            if d not in have_blobs:
                rep.problems.append(f"image {iid}: {what} blob {d} is missing")
                broken.add(iid)
        for diff_id, blob in st.db.query("SELECT diff_id, blob_digest FROM image_layers WHERE image_id=?", (iid,)):
            counts[diff_id] = counts.get(diff_id, 0) + 1
            if diff_id not in present:
                rep.problems.append(f"image {iid}: layer {diff_id} is missing")
                broken.add(iid)
            if blob not in have_blobs:
                rep.problems.append(f"image {iid}: layer blob {blob} is missing")
                broken.add(iid)
    for d, n in layer_rows.items():
        if counts.get(d, 0) != n:
            rep.problems.append(f"layer {d}: reference count {n}, but {counts.get(d, 0)} image layers use it")
            if repair:
                with st.db.write() as c:
                    c.execute("UPDATE layers SET refcount=? WHERE diff_id=?", (counts.get(d, 0), d))
                rep.repaired.append(f"fixed the reference count of layer {d}")
    if repair:
        rep.fixed = True
        for iid in sorted(broken):
            delete_image(st, Digest.parse(iid))
            rep.repaired.append(f"removed image {iid} (its content is missing or corrupt)")
        keep = _referenced_blobs(st)
        for d in st.blobs.all():
            if str(d) not in keep:
                st.blobs.remove(d)
                rep.repaired.append(f"removed unused blob {d}")
    else:
        keep = _referenced_blobs(st)
        rep.garbage += [f"blob {d} is not used by any image" for d in st.blobs.all() if str(d) not in keep]
    return rep


def usage(st: Store) -> Usage:
    blob_bytes = blob_count = 0
    for d in st.blobs.all():
        try:
            blob_bytes += st.paths.blob(d).stat().st_size
            blob_count += 1
        except FileNotFoundError:
            pass
    layers = {r[0]: (r[1], r[2]) for r in st.db.query("SELECT diff_id, size, refcount FROM layers")}
    return Usage(blob_bytes, blob_count, sum(s for s, _ in layers.values()), len(layers), layers)
