"""A fast, read-mostly view of the store for builds, so a fully cached ``pallet build`` does not
import the whole Store (~60-90 ms of imports, most of such a build).

It reads the store's documented layout (store/paths.py: ``ROOT/db.sqlite`` with the ``images``,
``image_layers`` and ``tags`` tables, ``ROOT/layers/<hex>/layer.json``, ``ROOT/blobs/sha256/<hex>``),
exactly as engine/lightstore.py does for ``run``. Every write, and every lookup it does not handle
itself (digests, ID prefixes, a missing database), goes to the real ``Store`` (``full()``), which
stays the one authority. Records it returns carry the fields the builder uses (``id``, ``config``,
``diff_ids``, ``layer_blobs``, ``repo_tags``), with the same types' behaviour (``str(id)``).
"""
from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from pallet.errors import NotFound
from pallet.oci.tagkey import tag_key

__all__ = ["QuickStore", "familiar", "tag_key"]

def familiar(key: str) -> str:
    """docker.io/library/busybox:latest -> busybox:latest (what docker prints)."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


class ImageId(str):
    """An image ID string (``sha256:<hex>``) with Digest's ``encoded``."""

    @property
    def encoded(self) -> str:
        return self.split(":", 1)[1]


class LayerBlob:
    __slots__ = ("media_type", "digest", "size")

    def __init__(self, media_type: str, digest: str, size: int) -> None:
        self.media_type, self.digest, self.size = media_type, digest, size


class QuickRecord:
    __slots__ = ("id", "config", "diff_ids", "layer_blobs", "repo_tags")

    def __init__(self, id: str, config: dict[str, Any], diff_ids: list[str],  # noqa: A002
                 layer_blobs: list[LayerBlob], repo_tags: list[str]) -> None:
        self.id = ImageId(id)
        self.config, self.diff_ids, self.layer_blobs, self.repo_tags = config, diff_ids, layer_blobs, repo_tags


class QuickStore:
    def __init__(self, root: str, runroot: str) -> None:
        self.root = os.path.abspath(root)
        self.runroot = os.path.abspath(runroot)
        self._full: Any = None
        self._conn: sqlite3.Connection | None = None

    # -- the real store, on demand ----------------------------------------------------------
    def full(self) -> Any:
        if self._full is None:
            from pallet.store import Store

            self._full = Store.open(self.root, self.runroot)
        return self._full

    def __getattr__(self, name: str) -> Any:
        # paths, lock, db, write_image, add_layer, tag, image, put_blob...: the Store's own
        return getattr(self.full(), name)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._full is not None:
            self._full.close()
            self._full = None

    def __enter__(self) -> QuickStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads ------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection | None:
        if self._conn is None:
            path = os.path.join(self.root, "db.sqlite")
            if not os.path.exists(path):
                return None
            self._conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout=60000")
        return self._conn

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        db = self._db()
        if db is None:
            return list(self.full().db.query(sql, args))
        return db.execute(sql, args).fetchall()

    def has_layer(self, diff_id: Any) -> bool:
        return os.path.isfile(os.path.join(self.root, "layers", str(diff_id).split(":", 1)[1], "layer.json"))

    def has_blob(self, digest: Any) -> bool:
        algo, _, hexpart = str(digest).partition(":")
        return os.path.isfile(os.path.join(self.root, "blobs", algo, hexpart))

    def layer_dir(self, diff_id: Any) -> str:
        if not self.has_layer(diff_id):
            raise NotFound(f"layer {diff_id} not found in the store")
        return os.path.join(self.root, "layers", str(diff_id).split(":", 1)[1], "diff")

    def lowerdirs(self, rec: Any) -> list[str]:
        return [self.layer_dir(d) for d in reversed(rec.diff_ids)]

    def get_image(self, image_id: Any) -> Any:
        rec = self._record(str(image_id)) if self._db() is not None else None
        if rec is None:
            raise NotFound(f"no such image: {image_id}")
        return rec

    def resolve_image(self, text: str) -> Any:
        key = tag_key(text)
        if key is not None and self._db() is not None:
            rows = self.query("SELECT image_id FROM tags WHERE ref=?", (key,))
            if rows:
                rec = self._record(rows[0][0])
                if rec is not None:
                    return rec
        return self.full().resolve_image(text)

    def _record(self, iid: str) -> QuickRecord | None:
        rows = self.query("SELECT config FROM images WHERE id=?", (iid,))
        if not rows:
            return None
        ls = self.query("SELECT diff_id, blob_digest, blob_media_type, blob_size FROM image_layers "
                        "WHERE image_id=? ORDER BY idx", (iid,))
        tags = [r[0] for r in self.query("SELECT ref FROM tags WHERE image_id=? ORDER BY ref", (iid,))]
        return QuickRecord(iid, json.loads(rows[0][0]), [r[0] for r in ls],
                           [LayerBlob(r[2], r[1], r[3]) for r in ls], tags)

    def tmp_dir(self) -> str:
        p = os.path.join(self.root, "tmp")
        if not os.path.isdir(p):
            self.full()
        return p
