"""Named volumes (docker's ``local`` driver): data in ``<root>/volumes/<name>/_data``, rows in the
``volumes`` table.

A volume is created on demand by ``-v NAME:/path`` and, the first time a container mounts it
while it is empty, filled from the image's content at that path (docker's copy-up). A volume
in use by any container (running or not) cannot be removed; ``rm -v`` of a container removes
its anonymous volumes.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

from pallet.engine.containers import now
from pallet.engine.names import NAME_RE
from pallet.errors import Conflict, InvalidArgument, NotFound


def data_dir(root: str | os.PathLike[str], name: str) -> Path:
    return Path(root) / "volumes" / name / "_data"


def _row(conn: sqlite3.Connection, name: str) -> tuple[Any, ...] | None:
    return conn.execute("SELECT name, driver, created, labels, options, anonymous, populated FROM volumes "
                        "WHERE name=?", (name,)).fetchone()


def inspect(root: str | os.PathLike[str], row: tuple[Any, ...]) -> dict[str, Any]:
    name, driver, created, labels, options, anonymous, _ = row
    return {"CreatedAt": created, "Driver": driver, "Labels": json.loads(labels) or None,
            "Mountpoint": str(data_dir(root, name)), "Name": name, "Options": json.loads(options) or None,
            "Scope": "local"}


def create(conn: sqlite3.Connection, root: str | os.PathLike[str], name: str | None = None, *,
           labels: dict[str, str] | None = None, driver: str = "local",
           options: dict[str, str] | None = None) -> tuple[str, bool]:
    """Create (or find) a volume. Returns (name, created_now)."""
    if driver != "local":
        raise InvalidArgument(f"volume driver {driver!r} is not supported (only 'local')")
    if options:
        raise InvalidArgument("volume driver options are not supported by the local driver here")
    anonymous = name is None
    if name is None:
        name = os.urandom(32).hex()
    elif not NAME_RE.match(name) or name.startswith("/"):
        raise InvalidArgument(f"create {name}: {name!r} includes invalid characters for a local volume name, "
                              "only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed")
    if _row(conn, name):
        return name, False
    d = data_dir(root, name)
    d.mkdir(parents=True, exist_ok=True)
    try:
        with conn:
            conn.execute("INSERT INTO volumes (name, created, labels, options, anonymous) VALUES (?,?,?,?,?)",
                         (name, now()[:19] + "Z", json.dumps(labels or {}), json.dumps(options or {}),
                          int(anonymous)))
    except sqlite3.IntegrityError:
        return name, False  # created concurrently by another process: same volume
    return name, True


def get(conn: sqlite3.Connection, name: str) -> tuple[Any, ...]:
    row = _row(conn, name)
    if row is None:
        raise NotFound(f"get {name}: no such volume")
    return row


def list_all(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT name, driver, created, labels, options, anonymous, populated FROM volumes "
                        "ORDER BY name").fetchall()


def users(conn: sqlite3.Connection, name: str) -> list[str]:
    """Ids of the containers whose mounts name the volume."""
    out = []
    for cid, cfg in conn.execute("SELECT id, config FROM containers WHERE config LIKE ?", (f"%{name}%",)):
        for m in json.loads(cfg).get("Mounts", []):
            if m.get("Type") == "volume" and m.get("Name") == name:
                out.append(cid)
                break
    return out


def remove(conn: sqlite3.Connection, root: str | os.PathLike[str], name: str, *, force: bool = False) -> None:
    get(conn, name)
    using = users(conn, name)
    if using:
        raise Conflict(f"remove {name}: volume is in use - [{', '.join(using)}]")
    with conn:
        conn.execute("DELETE FROM volumes WHERE name=?", (name,))
    shutil.rmtree(Path(root) / "volumes" / name, ignore_errors=True)


def prune(conn: sqlite3.Connection, root: str | os.PathLike[str], *, all_volumes: bool = True) -> list[str]:
    removed = []
    for row in list_all(conn):
        if not all_volumes and not row[5]:
            continue
        if not users(conn, row[0]):
            remove(conn, root, row[0])
            removed.append(row[0])
    return removed


def populate(conn: sqlite3.Connection, root: str | os.PathLike[str], name: str, lowerdirs: list[Path], path: str) -> None:
    """docker's copy-up: fill an empty, never-populated volume from the image's content at ``path``.

    ``lowerdirs`` are top layer first (overlay order); layers are applied bottom-up, honouring
    whiteouts (char 0/0) and opaque dirs, and never following a symlink: a layer path whose
    parent is a symlink is not the image's directory and is skipped."""
    row = get(conn, name)
    if row[6]:
        return
    dest = data_dir(root, name)
    if not any(dest.iterdir()):
        rel = path.strip("/")
        for layer in reversed(lowerdirs):
            src = _inside(layer, rel)
            if src is None:
                continue
            st = os.lstat(src)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                _clear(dest)
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            if _opaque(src):
                _clear(dest)
            _merge(src, dest)
    with conn:
        conn.execute("UPDATE volumes SET populated=1 WHERE name=?", (name,))


def _inside(layer: Path, rel: str) -> str | None:
    cur = str(layer)
    for part in [p for p in rel.split("/") if p]:
        if part == "..":
            return None
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return None
    return cur


def _opaque(p: str) -> bool:
    try:
        return os.getxattr(p, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _clear(d: Path) -> None:
    for e in list(d.iterdir()):
        if e.is_dir() and not e.is_symlink():
            shutil.rmtree(e)
        else:
            e.unlink()


def _merge(src: str, dst: Path) -> None:
    for entry in os.scandir(src):
        target = dst / entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # whiteout
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            continue
        if entry.is_dir(follow_symlinks=False):
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                target.unlink()
            if _opaque(entry.path) and target.is_dir():
                shutil.rmtree(target)
            target.mkdir(exist_ok=True)
            shutil.copystat(entry.path, target, follow_symlinks=False)
            os.lchown(target, st.st_uid, st.st_gid)
            _merge(entry.path, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
            elif stat.S_ISREG(st.st_mode):
                shutil.copy2(entry.path, target, follow_symlinks=False)
            else:
                os.mknod(target, st.st_mode, st.st_rdev)
            os.lchown(target, st.st_uid, st.st_gid)
