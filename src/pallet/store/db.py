"""The metadata database: ROOT/db.sqlite (SQLite in WAL mode, busy_timeout for many processes).

Tables (schema version 1):
  images(id, manifest_digest, manifest_media_type, config, created, size, added)
      id = config digest (the image ID docker shows); config = the config JSON text
  image_layers(image_id, idx, diff_id, blob_digest)   one row per layer, base first (idx 0)
  layers(diff_id, size, refcount)                     refcount = image_layers rows naming it
  tags(ref, image_id)                                 ref = normalised name:tag
  repo_digests(ref, image_id)                         ref = normalised name@digest

Every write is one ``BEGIN IMMEDIATE`` transaction (``Database.write()``). The engine adds its own
tables (containers, ...) with ``CREATE TABLE IF NOT EXISTS`` through ``Database.write()``; table
names here are reserved.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pallet.errors import DataCorruption, PalletError, Unavailable

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    config TEXT NOT NULL,
    created TEXT NOT NULL,
    size INTEGER NOT NULL,
    added TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    diff_id TEXT NOT NULL,
    blob_digest TEXT NOT NULL,
    blob_media_type TEXT NOT NULL,
    blob_size INTEGER NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE INDEX IF NOT EXISTS image_layers_diff ON image_layers(diff_id);
CREATE TABLE IF NOT EXISTS layers (
    diff_id TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    refcount INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tags (
    ref TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS repo_digests (
    ref TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS repo_digests_image ON repo_digests(image_id);
"""


def _error(e: sqlite3.Error, path: Path) -> PalletError:
    """sqlite errors as pallet's: 'locked'/'busy' past the timeout -> Unavailable, anything
    else (not a database, malformed, I/O) -> DataCorruption naming the file."""
    msg = str(e)
    if "locked" in msg or "busy" in msg:
        return Unavailable(f"store database {path} is busy: {msg}")
    return DataCorruption(f"store database {path}: {msg}")


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        for attempt in range(100):  # bounded: ~5 s
            try:
                self._open(path)
                return
            except sqlite3.Error as e:
                if getattr(self, "conn", None) is not None:
                    self.conn.close()
                # two processes opening a new store at once: switching it to WAL takes a lock
                # for which sqlite does not wait (no busy handler): "database is locked" at once
                if attempt == 99 or not isinstance(e, sqlite3.OperationalError) or "locked" not in str(e):
                    raise _error(e, path) from None
                import time

                time.sleep(0.05)

    def _open(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout=60000")
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        if self.conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            with self.write() as c:
                if c.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    for stmt in SCHEMA.split(";"):
                        if stmt.strip():
                            c.execute(stmt)
                    c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT; ROLLBACK on any exception)."""
        c = self.conn
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _error(e, self.path) from None
        try:
            yield c
        except BaseException as e:
            try:
                c.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(e, sqlite3.Error):
                raise _error(e, self.path) from None
            raise
        try:
            c.execute("COMMIT")
        except sqlite3.Error as e:
            raise _error(e, self.path) from None

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:  # type: ignore[type-arg]
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise _error(e, self.path) from None

    def close(self) -> None:
        self.conn.close()
