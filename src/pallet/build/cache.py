"""The build cache: step key -> the image state after that step (config + layer descriptors).

A key is sha256(parent state key, the instruction after substitution, and for COPY/ADD the
checksum of the sources: content, type, mode, owner, never mtime). Entries live in the store's
database (table ``build_cache``, created here with CREATE TABLE IF NOT EXISTS, as store/db.py
invites). An entry whose layers are no longer in the store (an image was removed and gc ran)
is a miss. Intermediate states are not images: ``pallet images`` shows only what builds tag.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS build_cache (
  key TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
)
"""


def step_key(parent: str, *parts: str) -> str:
    h = hashlib.sha256(parent.encode())
    for p in parts:
        h.update(b"\0")
        h.update(p.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


class BuildCache:
    def __init__(self, store: Any) -> None:
        self.store = store
        self._ready = False

    def _init(self) -> None:
        if not self._ready:
            if not self._query("SELECT 1 FROM sqlite_master WHERE type='table' AND name='build_cache'"):
                with self.store.db.write() as c:
                    c.execute(_SCHEMA)
            self._ready = True

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        q = getattr(self.store, "query", None)   # a QuickStore reads without loading the Store
        return q(sql, args) if q is not None else self.store.db.query(sql, args)

    def _has(self, what: str, digest: str) -> bool:
        if hasattr(self.store, "query"):          # QuickStore: plain strings
            return bool(getattr(self.store, what)(digest))
        from pallet.oci.digest import Digest

        return bool(getattr(self.store, what)(Digest.parse(digest)))

    def get(self, key: str) -> dict[str, Any] | None:
        self._init()
        rows = self._query("SELECT state FROM build_cache WHERE key=?", (key,))
        if not rows:
            return None
        state = json.loads(rows[0][0])
        for d in state.get("config", {}).get("rootfs", {}).get("diff_ids", []):
            if not self._has("has_layer", d):
                return None
        for desc in state.get("layers", []):
            if not self._has("has_blob", desc["digest"]):
                return None
        return state

    def put(self, key: str, state: dict[str, Any]) -> None:
        self._init()
        with self.store.db.write() as c:
            c.execute("INSERT OR REPLACE INTO build_cache (key, state) VALUES (?,?)",
                      (key, json.dumps(state, separators=(",", ":"))))
