"""A read-only view of the store for the container path (``run``, ``ps``, ``rm``, ``exec``...).

Why: importing ``pallet.store`` loads the whole Store (dataclasses, tempfile, datetime, the
image and manifest types): ~25 ms of the ~40 ms a ``run --rm`` may cost. Containers only need
"which image is this name, what is its config, where are its layer trees", which this module
reads from the store's documented layout (``pallet/store/paths.py``: ``ROOT/db.sqlite`` with
the ``images``, ``image_layers`` and ``tags`` tables; ``ROOT/layers/<hex>/diff``). Anything it
does not handle itself (digests, ID prefixes, a missing database) goes to the real
``Store`` (``full()``), which stays the one authority that writes.
"""
from __future__ import annotations

import _sqlite3 as sqlite3  # not `sqlite3`: its dbapi2 imports datetime (~3-5 ms); same classes
import os

from pallet.engine.containers import FsPath
from pallet.errors import NotFound
from pallet.oci.tagkey import tag_key
from pallet.runtime import jsonlite as json  # not `json`: it imports re and enum (~3 ms)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    from typing import Any


class ImageInfo:
    """The subset of ``pallet.store.ImageRecord`` the engine uses."""

    __slots__ = ("id", "config", "diff_ids", "size")

    def __init__(self, id: str, config: dict[str, Any], diff_ids: list[str], size: int) -> None:  # noqa: A002
        self.id, self.config, self.diff_ids, self.size = id, config, diff_ids, size


class _Paths:
    __slots__ = ("root", "runroot")

    def __init__(self, root: str, runroot: str) -> None:
        self.root = FsPath(os.path.abspath(root))
        self.runroot = FsPath(os.path.abspath(runroot))


class LightStore:
    def __init__(self, root: str, runroot: str) -> None:
        self.paths = _Paths(root, runroot)
        self._full: Any = None
        self._resolved: dict[str, ImageInfo] = {}
        dbpath = str(self.paths.root / "db.sqlite")
        if not os.path.exists(dbpath):
            self.full()  # first use of this root: the Store makes the layout and the schema
        self.conn = sqlite3.connect(dbpath, timeout=60, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout=60000")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        # Skip the checkpoint (and its fsync) at close, but keep the WAL short: the next lone
        # opener rebuilds its index by reading the whole WAL, so it is checkpointed every ~64 pages.
        self.conn.execute("PRAGMA wal_autocheckpoint=64")
        _no_checkpoint_on_close(self.conn)
        os.makedirs(self.paths.root / "containers", exist_ok=True)
        os.makedirs(self.paths.runroot / "containers", exist_ok=True)

    def full(self) -> Any:
        """The real ``pallet.store.Store`` (opened on first need)."""
        if self._full is None:
            from pallet.store import Store

            self._full = Store.open(self.paths.root, self.paths.runroot)
        return self._full

    def close(self) -> None:
        self.conn.close()
        if self._full is not None:
            self._full.close()

    def get_image(self, image_id: Any) -> ImageInfo:
        iid = str(image_id)
        row = self.conn.execute("SELECT config, size FROM images WHERE id=?", (iid,)).fetchone()
        if row is None:
            raise NotFound(f"no such image: {iid}")
        diff_ids = [r[0] for r in self.conn.execute(
            "SELECT diff_id FROM image_layers WHERE image_id=? ORDER BY idx", (iid,))]
        return ImageInfo(iid, json.loads(row[0]), diff_ids, int(row[1]))

    def resolve_image(self, text: str) -> ImageInfo:
        hit = self._resolved.get(text)
        if hit is not None:
            return hit
        key = tag_key(text)
        rec = None
        if key is not None:
            row = self.conn.execute("SELECT image_id FROM tags WHERE ref=?", (key,)).fetchone()
            if row is not None:
                rec = self.get_image(row[0])
        if rec is None:  # digests, IDs, unusual names: the store decides
            rec = self.get_image(self.full().resolve_image(text).id)
        self._resolved[text] = rec
        return rec

    def lowerdirs(self, rec: ImageInfo) -> list[FsPath]:
        """Layer trees, top layer first (overlayfs order). A layer that appears twice in the
        image (two steps that made the same tree) is listed once, at its top-most place:
        overlayfs refuses a repeated lowerdir (ELOOP), and the top copy shows all the lower would."""
        out = []
        seen: set[str] = set()
        for d in reversed(rec.diff_ids):
            if d in seen:
                continue
            seen.add(d)
            p = self.paths.root / "layers" / d.split(":", 1)[-1] / "diff"
            if not os.path.exists(self.paths.root / "layers" / d.split(":", 1)[-1] / "layer.json"):
                raise NotFound(f"layer {d} not found in the store")
            out.append(p)
        return out


def _no_checkpoint_on_close(conn: sqlite3.Connection) -> None:
    """SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE: the last connection to close would otherwise checkpoint
    the WAL (and fsync) on every CLI exit, ~5-15 ms of a ``run``; checkpoints still happen as the
    WAL grows (wal_autocheckpoint, kept small because the next lone opener reads the whole WAL to
    rebuild its index), so durability is unchanged. Python 3.11's sqlite3 has no
    ``setconfig``: reach ``sqlite3_db_config`` through ctypes on the connection's ``db`` pointer
    (the first field after PyObject_HEAD); any doubt and it is simply skipped."""
    import sys

    if sys.version_info[:2] != (3, 11) or sys.implementation.name != "cpython" or sys.maxsize != 2**63 - 1:
        return
    try:
        import ctypes

        lib = ctypes.CDLL("libsqlite3.so.0")
        if lib.sqlite3_libversion_number() < 3016002:
            return
        db = ctypes.c_void_p.from_address(id(conn) + 16).value
        lib.sqlite3_db_handle.restype = ctypes.c_void_p
        lib.sqlite3_db_filename.restype = ctypes.c_char_p
        lib.sqlite3_db_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        name = lib.sqlite3_db_filename(db, b"main") if db else None
        if not name or not name.endswith(b"db.sqlite"):
            return  # not the pointer we think it is
        lib.sqlite3_db_config(ctypes.c_void_p(db), ctypes.c_int(1006), ctypes.c_int(1),
                              ctypes.c_void_p(0))
    except (OSError, AttributeError, ValueError):
        return
