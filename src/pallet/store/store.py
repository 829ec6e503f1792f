"""The local store facade (the contract is /work/team/STORE_API.md; the layout is paths.py).

Concurrency: any number of pallet processes may use one ROOT at once. Writers hold the store
lock shared, removers hold it exclusive (locks.py); SQLite (WAL, busy_timeout) serialises rows.
Crash safety: blobs and layers appear by atomic rename only; rows are written in one transaction
after the content they name is in place AND synced (write_image: one syncfs per image, see
durable.py for why an unsynced layer can never be reused after a crash); a failed write_image
removes what it alone created.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from pallet.errors import Conflict, DataCorruption, InvalidArgument, NotFound
from pallet.image.base import Image, Layer
from pallet.oci.digest import Digest, is_hex_id
from pallet.oci.manifest import Descriptor
from pallet.oci.reference import Reference
from pallet.store import durable, gc
from pallet.store.blobs import BlobStore
from pallet.store.db import Database
from pallet.store.locks import FileLock
from pallet.store.paths import Paths


@dataclass
class ImageRecord:
    id: Digest                       # config digest (the image ID)
    manifest_digest: Digest
    manifest_media_type: str
    config: dict[str, Any]
    diff_ids: list[Digest]           # base first
    layer_blobs: list[Descriptor]    # the manifest's layer descriptors, base first
    created: str
    size: int                        # sum of uncompressed layer sizes
    repo_tags: list[Reference] = field(default_factory=list)
    repo_digests: list[Reference] = field(default_factory=list)
    added: str = ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Store:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        paths.create()
        self.lock = FileLock(paths.store_lock)
        self.blobs = BlobStore(paths)
        self._layers: Any = None
        self.db = Database(paths.db)
        self.blobs.named = self._blob_named
        gc.clean_tmp(self, blocking=False)

    @classmethod
    def open(cls, root: str | os.PathLike[str], runroot: str | os.PathLike[str]) -> Store:
        return cls(Paths.of(root, runroot))

    def close(self) -> None:
        self.db.close()
        self.lock.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def layers(self) -> Any:
        if self._layers is None:  # lazy: the extractor is not needed to read the store
            from pallet.store.layers import LayerStore

            self._layers = LayerStore(self.paths, self.blobs, self._layer_named)
        return self._layers

    def _layer_named(self, diff_id: Digest) -> bool:
        return bool(self.db.query("SELECT 1 FROM layers WHERE diff_id=?", (str(diff_id),)))

    def _blob_named(self, d: Digest) -> bool:
        k = str(d)
        return bool(self.db.query("SELECT 1 FROM images WHERE id=? OR manifest_digest=? UNION ALL "
                                  "SELECT 1 FROM image_layers WHERE blob_digest=? LIMIT 1", (k, k, k)))

    # -- blobs ------------------------------------------------------------------------------
    def has_blob(self, d: Digest) -> bool:
        return self.blobs.has(d)

    def blob_path(self, d: Digest) -> Path:
        return Path(self.blobs.path(d))

    def open_blob(self, d: Digest) -> BinaryIO:
        return self.blobs.open(d)

    def put_blob(self, src: bytes | BinaryIO, expected: Digest | None = None,
                 size: int | None = None) -> tuple[Digest, int]:
        with self.lock.shared():
            return self.blobs.put(src, expected, size)

    # -- layers -----------------------------------------------------------------------------
    def has_layer(self, diff_id: Digest) -> bool:
        """Present and trusted (durable.py: an unsynced layer of an earlier boot is not)."""
        return durable.trusted(self.paths.layer(diff_id) / "layer.json", lambda: self._layer_named(diff_id))

    def layer_dir(self, diff_id: Digest) -> Path:
        if not self.has_layer(diff_id):
            raise NotFound(f"layer {diff_id} not found in the store")
        return self.paths.layer_diff(diff_id)

    def add_layer(self, layer: Layer) -> None:
        """Store the blob and extract it (one pass, both digests verified). A layer no image
        references is garbage for ``gc``/``check --repair``: call write_image soon after."""
        with self.lock.shared():
            self.layers.add(layer)

    # -- images -----------------------------------------------------------------------------
    def write_image(self, img: Image, tags: Sequence[Reference] = (),
                    repo_digests: Sequence[Reference] = ()) -> ImageRecord:
        created: list[tuple[str, Digest]] = []
        try:
            with self.lock.shared():
                rec = self._write_image(img, tags, repo_digests, created)
        except BaseException:
            if created:
                gc.rollback(self, created)
            raise
        if created:  # another process stored the same image meanwhile: ours are spare copies
            gc.rollback(self, created)
        return rec

    def _write_image(self, img: Image, tags: Sequence[Reference], repo_digests: Sequence[Reference],
                     created: list[tuple[str, Digest]]) -> ImageRecord:
        raw_config = img.raw_config()
        image_id = img.config_digest()
        if Digest.of(raw_config, image_id.algorithm) != image_id:
            raise DataCorruption(f"image config does not match its digest {image_id}")
        try:
            config = json.loads(raw_config)
            diff_ids = [Digest.parse(d) for d in config["rootfs"]["diff_ids"]]
        except (ValueError, KeyError, TypeError, InvalidArgument) as e:
            raise InvalidArgument(f"image config {image_id} has no valid rootfs.diff_ids ({e})") from None
        if self.db.query("SELECT 1 FROM images WHERE id=?", (str(image_id),)) and all(
                self.has_layer(d) for d in diff_ids):
            # already stored (the first manifest written for a config is the one kept): names only
            with self.db.write() as c:
                self._names(c, image_id, tags, repo_digests)
            return self.get_image(image_id)
        layers = img.layers()
        if len(layers) != len(diff_ids):
            raise DataCorruption(f"image {image_id}: {len(layers)} layers but {len(diff_ids)} diff_ids")
        raw_manifest = img.raw_manifest()
        manifest = img.manifest()
        mdigest = Digest.of(raw_manifest)
        for kind, data in (("blob", raw_config), ("blob", raw_manifest)):
            d = Digest.of(data)
            if not self.blobs.has(d):
                self.blobs.put(data, d, lazy=True)
                created.append((kind, d))
        sizes = self._add_layers(layers, diff_ids, created)
        descs = list(manifest.layers)
        if len(descs) != len(layers):
            raise DataCorruption(f"image {image_id}: manifest lists {len(descs)} layers, expected {len(layers)}")
        self._make_durable([self.paths.blob(image_id), self.paths.blob(mdigest)]
                           + [self.paths.blob(desc.digest) for desc in descs]
                           + [self.paths.layer(d) / "layer.json" for d in diff_ids])
        with self.db.write() as c:
            if not c.execute("SELECT 1 FROM images WHERE id=?", (str(image_id),)).fetchone():
                created.clear()  # referenced by the rows below: nothing to roll back
                c.execute("INSERT INTO images VALUES (?,?,?,?,?,?,?)",
                          (str(image_id), str(mdigest), manifest.media_type, raw_config.decode(),
                           str(config.get("created") or ""), sum(sizes), _now()))
                for i, (desc, d, sz) in enumerate(zip(descs, diff_ids, sizes, strict=True)):
                    c.execute("INSERT INTO image_layers VALUES (?,?,?,?,?,?)",
                              (str(image_id), i, str(d), str(desc.digest), desc.media_type, desc.size))
                    c.execute("INSERT OR IGNORE INTO layers VALUES (?,?,0)", (str(d), sz))
                    c.execute("UPDATE layers SET refcount=refcount+1 WHERE diff_id=?", (str(d),))
            self._names(c, image_id, tags, repo_digests)
        return self.get_image(image_id)

    def _make_durable(self, paths: list[Path]) -> None:
        """ONE syncfs when any of ``paths`` (the image's blobs and layer markers) is marked
        unsynced, then the marks go: every byte the rows will name is on disk first. The marks
        are cleared only after a sync that began after the content was complete, so a mark
        cleared by another writer's sync is just as durable."""
        marked = []
        for p in paths:
            try:
                if durable.state(p) is not None:
                    marked.append(p)
            except OSError:
                pass
        if not marked:
            return
        durable.syncfs(self.paths.root)
        for p in marked:
            durable.clear(p)

    def _add_layers(self, layers: list[Layer], diff_ids: list[Digest], created: list[tuple[str, Digest]]) -> list[int]:
        """Extract each layer in turn; each one's publication (sync + rename) overlaps the
        next one's extraction. Waits for all of them, recording what was created, then
        raises the first error."""
        pending = []
        err: BaseException | None = None
        try:
            for layer, want in zip(layers, diff_ids, strict=True):
                if layer.diff_id() != want:
                    raise DataCorruption(f"layer {layer.digest()} has diff-id {layer.diff_id()}, "
                                         f"the config says {want}")
                had_blob = self.blobs.has(layer.digest())
                pending.append((want, layer.digest(), had_blob, self.layers.add_async(layer)))
        except BaseException as e:
            err = e
        sizes = []
        for want, digest, had_blob, p in pending:
            if not had_blob:
                created.append(("blob", digest))
            try:
                info = p.wait()
            except BaseException as e:
                err = err or e
                continue
            if info.created:
                created.append(("layer", want))
            sizes.append(info.size)
        if err is not None:
            raise err
        return sizes

    @staticmethod
    def _names(c: sqlite3.Connection, image_id: Digest, tags: Sequence[Reference],
               repo_digests: Sequence[Reference]) -> None:
        for ref in tags:
            c.execute("INSERT OR REPLACE INTO tags VALUES (?,?)", (str(_tagged(ref)), str(image_id)))
        for ref in repo_digests:
            if ref.digest is None:
                raise InvalidArgument(f"repo digest {ref} has no digest")
            c.execute("INSERT OR REPLACE INTO repo_digests VALUES (?,?)",
                      (str(Reference(ref.domain, ref.path, None, ref.digest)), str(image_id)))

    def get_image(self, image_id: Digest) -> ImageRecord:
        row = self.db.query("SELECT * FROM images WHERE id=?", (str(image_id),))
        if not row:
            raise NotFound(f"no such image: {image_id}")
        return self._record(row[0])

    def _record(self, row: sqlite3.Row | tuple) -> ImageRecord:  # type: ignore[type-arg]
        iid, mdig, mmt, cfg, created, size, added = row
        ls = self.db.query("SELECT diff_id, blob_digest, blob_media_type, blob_size FROM image_layers "
                           "WHERE image_id=? ORDER BY idx", (iid,))
        tags = [Reference.parse(r[0]) for r in self.db.query("SELECT ref FROM tags WHERE image_id=? "
                                                             "ORDER BY ref", (iid,))]
        digs = [Reference.parse(r[0]) for r in self.db.query("SELECT ref FROM repo_digests WHERE "
                                                             "image_id=? ORDER BY ref", (iid,))]
        return ImageRecord(Digest.parse(iid), Digest.parse(mdig), mmt, json.loads(cfg),
                           [Digest.parse(r[0]) for r in ls],
                           [Descriptor(r[2], Digest.parse(r[1]), r[3]) for r in ls],
                           created, size, tags, digs, added)

    def list_images(self) -> list[ImageRecord]:
        return [self._record(r) for r in self.db.query("SELECT * FROM images ORDER BY added DESC, id")]

    def resolve_image(self, text: str) -> ImageRecord:
        """A reference, name@digest, a full ID (sha256:... or 64 hex) or a unique ID prefix."""
        hexpart = text[7:] if text.startswith("sha256:") else text
        if len(hexpart) == 64 and is_hex_id(hexpart):
            row = self.db.query("SELECT * FROM images WHERE id=?", (f"sha256:{hexpart}",))
            if row:
                return self._record(row[0])
        ref = None
        if not text.startswith("sha256:"):
            try:
                ref = Reference.parse(text)
            except InvalidArgument:
                if not is_hex_id(text):
                    raise
        if ref is not None:
            if ref.digest is not None:
                rows = self.db.query("SELECT image_id FROM repo_digests WHERE ref=?",
                                     (str(Reference(ref.domain, ref.path, None, ref.digest)),))
                rows = rows or self.db.query("SELECT id FROM images WHERE manifest_digest=?",
                                             (str(ref.digest),))
            else:
                rows = self.db.query("SELECT image_id FROM tags WHERE ref=?", (str(ref),))
            if rows:
                return self.get_image(Digest.parse(rows[0][0]))
        if is_hex_id(hexpart):
            rows = self.db.query("SELECT id FROM images WHERE id >= ? AND id < ? LIMIT 2",
                                 (f"sha256:{hexpart}", f"sha256:{hexpart}g"))
            if len(rows) > 1:
                raise Conflict(f"image ID prefix {text!r} is ambiguous")
            if rows:
                return self.get_image(Digest.parse(rows[0][0]))
        raise NotFound(f"no such image: {text}")

    def image(self, rec: ImageRecord) -> Image:
        from pallet.store.view import StoredImage

        return StoredImage(self, rec)  # type: ignore[return-value]

    def tag(self, image_id: Digest, ref: Reference) -> None:
        with self.db.write() as c:
            if not c.execute("SELECT 1 FROM images WHERE id=?", (str(image_id),)).fetchone():
                raise NotFound(f"no such image: {image_id}")
            c.execute("INSERT OR REPLACE INTO tags VALUES (?,?)", (str(_tagged(ref)), str(image_id)))

    def untag(self, ref: Reference) -> Digest:
        key = str(_tagged(ref))
        with self.db.write() as c:
            row = c.execute("SELECT image_id FROM tags WHERE ref=?", (key,)).fetchone()
            if not row:
                raise NotFound(f"no such image: {ref.familiar}")
            c.execute("DELETE FROM tags WHERE ref=?", (key,))
        return Digest.parse(row[0])

    def delete_image(self, image_id: Digest) -> None:
        """Remove the image's rows (tags included); layers and blobs nothing else uses go too."""
        with self.lock.exclusive():
            gc.delete_image(self, image_id)

    def lowerdirs(self, rec: ImageRecord) -> list[Path]:
        """Layer trees, TOP layer first (the order overlayfs lowerdir= wants). A layer repeated
        in the image is listed once, at its top-most place (overlayfs refuses a repeated
        lowerdir with ELOOP; the top copy already shows everything the lower one would)."""
        return [self.layer_dir(d) for d in dict.fromkeys(reversed(rec.diff_ids))]

    @contextmanager
    def temp_dir(self, prefix: str = "tmp-") -> Iterator[Path]:
        """A private temp dir under ROOT/tmp (same filesystem as the store, so a finished file
        can be renamed into place), removed on exit. It holds an flock for its lifetime, so
        no other process's Store.open/check removes it while in use. Use this (not bare
        ``paths.tmp``) for spools and scratch trees."""
        with self.lock.shared():  # no cleaner runs between mkdtemp and the flock
            d = tempfile.mkdtemp(prefix=prefix, dir=self.paths.tmp)
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield Path(d)
        finally:
            shutil.rmtree(d, ignore_errors=True)
            os.close(fd)

    # -- maintenance ------------------------------------------------------------------------
    def check(self, repair: bool = False, deep: bool = False) -> gc.CheckReport:
        with self.lock.exclusive():
            return gc.check(self, repair, deep)

    def usage(self) -> gc.Usage:
        return gc.usage(self)


def _tagged(ref: Reference) -> Reference:
    if ref.digest is not None and ref.tag is None:
        raise InvalidArgument(f"cannot tag with a digest reference {ref}")
    return Reference(ref.domain, ref.path, ref.tag or "latest", None)
