"""The engine's tables in the store's SQLite database (a small idempotent migration).

``containers``: one row per container. ``config`` is the immutable part (docker's Config,
HostConfig, the resolved Mounts, the image), written once at create; the other columns are
the mutable state, changed only through ``pallet.engine.state`` (the one place transitions happen).
``volumes``: named volumes (data under ``<root>/volumes/<name>/_data``, docker's layout).
"""
from __future__ import annotations

import _sqlite3 as sqlite3  # not `sqlite3`: its dbapi2 imports datetime (~3-5 ms); same classes

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL,
    created TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'created',
    pid INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER NOT NULL DEFAULT 0,
    oom_killed INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
    finished_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
    restart_count INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    rt TEXT NOT NULL DEFAULT '{}',
    waiter INTEGER NOT NULL DEFAULT 0,
    stopped_by_user INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS containers_image ON containers(image_id);
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL DEFAULT 'local',
    created TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}',
    anonymous INTEGER NOT NULL DEFAULT 0,
    populated INTEGER NOT NULL DEFAULT 0
);
"""

_done: set[int] = set()


def connection(store: Any) -> sqlite3.Connection:
    """The store's connection with the engine's tables present (the migration runs once per process)."""
    conn: sqlite3.Connection | None = None
    for attr in ("db", "conn", "connection", "_db", "_conn"):
        c = getattr(store, attr, None)
        if isinstance(c, sqlite3.Connection):
            conn = c
            break
        inner = getattr(c, "conn", None) if c is not None else None
        if isinstance(inner, sqlite3.Connection):
            conn = inner
            break
    if conn is None:
        raise RuntimeError("the store exposes no sqlite3 connection")
    if id(conn) not in _done:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='volumes'").fetchone()
        if not exists:
            conn.executescript(SCHEMA)
        _done.add(id(conn))
    return conn
