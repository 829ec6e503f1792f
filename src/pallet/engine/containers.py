"""Containers: immutable config + mutable state, stored in the ``containers`` table.

A ``Container`` is a snapshot of one row. ``config`` holds docker's ``Config``, ``HostConfig``,
the resolved ``Mounts`` and the image reference, and never changes after create (except the
name, via ``rename``). Mutable fields change only through ``pallet.engine.state``.

On-disk (see ``Dirs``): ``<root>/containers/<id>/`` keeps what outlives a boot (upper and work
dirs of the overlay, the json-file log, hostname/hosts files); ``<runroot>/containers/<id>/``
keeps what dies with the machine (runtime state, the bundle of external runtimes).
"""
from __future__ import annotations

import os
import time

from pallet.errors import Conflict, InvalidArgument, NotFound
from pallet.runtime import jsonlite as json  # not `json`: it imports re and enum (~3 ms)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    import sqlite3
    from typing import Any

COLUMNS = ("id", "name", "image_id", "created", "config", "status", "pid", "exit_code", "oom_killed",
           "started_at", "finished_at", "restart_count", "error", "rt", "waiter", "stopped_by_user")
ZERO_TIME = "0001-01-01T00:00:00Z"


class Container:
    """One row. (A plain class: ``dataclasses`` costs ~10 ms of imports on the run path.)"""

    __slots__ = COLUMNS

    def __init__(self, id: str, name: str, image_id: str, created: str, config: dict[str, Any],  # noqa: A002
                 status: str = "created", pid: int = 0, exit_code: int = 0, oom_killed: bool = False,
                 started_at: str = ZERO_TIME, finished_at: str = ZERO_TIME, restart_count: int = 0,
                 error: str = "", rt: dict[str, Any] | None = None, waiter: int = 0,
                 stopped_by_user: bool = False) -> None:
        self.id, self.name, self.image_id, self.created, self.config = id, name, image_id, created, config
        self.status, self.pid, self.exit_code, self.oom_killed = status, pid, exit_code, oom_killed
        self.started_at, self.finished_at, self.restart_count = started_at, finished_at, restart_count
        self.error, self.rt, self.waiter, self.stopped_by_user = error, rt or {}, waiter, stopped_by_user

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Container:
        d = dict(zip(COLUMNS, row, strict=True))
        d["config"] = json.loads(d["config"])
        d["rt"] = json.loads(d["rt"])
        d["oom_killed"] = bool(d["oom_killed"])
        d["stopped_by_user"] = bool(d["stopped_by_user"])
        return cls(**d)

    # convenience views of the immutable config
    @property
    def cfg(self) -> dict[str, Any]:
        return self.config["Config"]

    @property
    def host(self) -> dict[str, Any]:
        return self.config["HostConfig"]

    @property
    def mounts(self) -> list[dict[str, Any]]:
        return self.config.get("Mounts", [])

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")


class FsPath(str):
    """The few ``pathlib.Path`` operations the engine uses, on a ``str`` (pathlib pulls in
    urllib.parse and ipaddress: a few ms of ``pallet run``'s start-up)."""

    __slots__ = ()

    def __truediv__(self, other: object) -> FsPath:
        return FsPath(os.path.join(self, str(other)))

    @property
    def parent(self) -> FsPath:
        return FsPath(os.path.dirname(self))

    @property
    def name(self) -> str:
        return os.path.basename(self)

    def exists(self) -> bool:
        return os.path.exists(self)

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        if parents:
            os.makedirs(self, mode, exist_ok=exist_ok)
        elif not (exist_ok and os.path.isdir(self)):
            os.mkdir(self, mode)

    def read_text(self) -> str:
        with open(self) as f:
            return f.read()

    def write_text(self, text: str) -> int:
        with open(self, "w") as f:
            return f.write(text)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            os.unlink(self)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def iterdir(self) -> list[FsPath]:
        return [FsPath(os.path.join(self, n)) for n in os.listdir(self)]


class Dirs:
    """Where one container's files live."""

    def __init__(self, root: str | os.PathLike[str], runroot: str | os.PathLike[str], cid: str) -> None:
        self.dir = FsPath(os.path.join(root, "containers", cid))
        self.run = FsPath(os.path.join(runroot, "containers", cid))
        self.upper = self.dir / "upper"
        self.work = self.dir / "work"
        self.log = self.dir / f"{cid}-json.log"

    def make(self) -> None:
        """The persistent dirs. ``run`` is made by who needs it (external runtimes, cp): the
        built-in runtime shares one empty bundle per runroot (see rt_builtin)."""
        os.makedirs(self.upper, exist_ok=True)
        os.makedirs(self.work, exist_ok=True)

    def remove(self) -> None:
        for d in (self.dir, self.run):
            remove_tree(d)

    def move_out(self, trash: str) -> list[str]:
        """``remove`` in two steps: the root's directory is renamed out of the layout into
        ``trash`` (``<root>/tmp``: the same filesystem) now, and returned for ``remove_tree``
        later (a served ``run --rm`` answers its client in between: one rename instead of a
        dozen unlinks on its path). Named ``gone-<pid>-<id>``: a killed process's are removed by
        ``sweep_gone``. What cannot be renamed is removed now."""
        moved = []
        if os.path.exists(self.dir):
            dest = os.path.join(trash, f"gone-{os.getpid()}-{os.path.basename(self.dir)}")
            try:
                os.rename(self.dir, dest)
                moved.append(dest)
            except OSError:
                pass
        self.remove()
        return moved


def remove_tree(d: str) -> None:
    if not os.path.exists(d):
        return
    try:
        _rmtree_quick(d)  # the common case, without importing shutil (bz2, lzma, fnmatch: ~5 ms)
        return
    except OSError:
        pass
    import shutil

    shutil.rmtree(d, ignore_errors=True)
    if os.path.exists(d):  # overlay work dirs can hold a d--------- 'work' dir: chmod and retry
        for dp, dns, _ in os.walk(d):
            for n in dns:
                try:
                    os.chmod(os.path.join(dp, n), 0o700)
                except OSError:
                    pass
        shutil.rmtree(d, ignore_errors=True)


def sweep_gone(trash: str) -> None:
    """``Dirs.move_out``'s directories whose process is gone (killed before its removal)."""
    try:
        names = [n for n in os.listdir(trash) if n.startswith("gone-")]
    except OSError:
        return
    from pallet.engine.state import alive  # (state imports this module)

    for n in names:
        pid = n.split("-")[1]
        try:
            live = int(pid) == os.getpid() or alive(int(pid), None)
        except ValueError:
            live = False
        if not live:
            remove_tree(os.path.join(trash, n))


def _rmtree_quick(d: str) -> None:
    """Remove a tree without following symlinks; any error (a mount, a d--------- overlay work
    dir) raises, and ``Dirs.remove`` falls back to shutil."""
    with os.scandir(d) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False):
                _rmtree_quick(e.path)
            else:
                os.unlink(e.path)
    os.rmdir(d)


def tree_size(path: str | os.PathLike[str]) -> int:
    """Apparent size of a directory tree, as docker's directory.Size: every entry but
    directories at its lstat size, hard links once, unreadable entries skipped. What ``ps -s``
    (SizeRw), ``system df`` and ``volume prune`` report."""
    total, seen = 0, set()
    for dp, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dp, f))
            except OSError:
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def now() -> str:
    """RFC 3339 with nanoseconds in UTC, as docker prints it."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def insert(conn: sqlite3.Connection, c: Container) -> None:
    try:
        with conn:
            conn.execute(
                f"INSERT INTO containers ({','.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})",
                (c.id, c.name, c.image_id, c.created, json.dumps(c.config), c.status, c.pid, c.exit_code,
                 int(c.oom_killed), c.started_at, c.finished_at, c.restart_count, c.error, json.dumps(c.rt),
                 c.waiter, int(c.stopped_by_user)))
    except Exception as e:
        import _sqlite3  # here, not at the top: the served run's client (engine.served) has no database

        if not isinstance(e, _sqlite3.IntegrityError):
            raise
        other = conn.execute("SELECT id FROM containers WHERE name=?", (c.name,)).fetchone()
        if other:
            raise name_conflict(c.name, other[0]) from None
        raise


def name_conflict(name: str, cid: str) -> Conflict:
    return Conflict(f'Conflict. The container name "/{name}" is already in use by container "{cid}". '
                    "You have to remove (or rename) that container to be able to reuse that name.")


def get(conn: sqlite3.Connection, ref: str) -> Container:
    """By full id, name (with or without the leading /), or unique id prefix."""
    if not ref:
        raise InvalidArgument("container name or ID is empty")
    q = f"SELECT {','.join(COLUMNS)} FROM containers WHERE "
    row = conn.execute(q + "id=? OR name=?", (ref, ref.lstrip("/"))).fetchone()
    if row is None and all(ch in "0123456789abcdef" for ch in ref):
        rows = conn.execute(q + "id LIKE ?", (ref + "%",)).fetchmany(2)
        if len(rows) > 1:
            raise Conflict(f"multiple containers match the ID prefix {ref!r}")
        row = rows[0] if rows else None
    if row is None:
        raise NotFound(f"No such container: {ref}")
    return Container.from_row(row)


def reload(conn: sqlite3.Connection, cid: str) -> Container | None:
    row = conn.execute(f"SELECT {','.join(COLUMNS)} FROM containers WHERE id=?", (cid,)).fetchone()
    return Container.from_row(row) if row else None


def list_all(conn: sqlite3.Connection) -> list[Container]:
    rows = conn.execute(f"SELECT {','.join(COLUMNS)} FROM containers ORDER BY created DESC").fetchall()
    return [Container.from_row(r) for r in rows]


def delete_row(conn: sqlite3.Connection, cid: str) -> None:
    with conn:
        conn.execute("DELETE FROM containers WHERE id=?", (cid,))


def rename(conn: sqlite3.Connection, c: Container, new: str) -> None:
    from pallet.engine import names

    if not names.valid(new):
        raise InvalidArgument(f"Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    new = new.lstrip("/")
    if new == c.name:
        raise InvalidArgument("Renaming a container with the same name as its current name")
    other = conn.execute("SELECT id FROM containers WHERE name=?", (new,)).fetchone()
    if other:
        raise name_conflict(new, other[0])
    c.config["Name"] = "/" + new
    with conn:
        conn.execute("UPDATE containers SET name=?, config=? WHERE id=?", (new, json.dumps(c.config), c.id))
    c.name = new


def image_in_use(conn: sqlite3.Connection, image_id: str) -> list[str]:
    """Ids of the containers (any state) made from the image."""
    return [r[0] for r in conn.execute("SELECT id FROM containers WHERE image_id=?", (image_id,))]
