"""On-disk state of the runtime (one directory per container under the state root).

Layout (``--root``, default ``/run/pallet-runtime``)::

    <root>/<id>/state.json    runtime-spec state (ociVersion, id, status, pid, bundle,
                              annotations) + a private "pallet" object (cgroup, start time)
    <root>/<id>/config.json   the spec the container was created from (exec reads it)
    <root>/<id>/exec.fifo     exists while the container is "created" (runc's contract)

``status`` is never trusted from the file: it is derived from the process (alive, same start
time, not a zombie), the fifo and the freezer (runtime.md "State").
"""
from __future__ import annotations

import os

from pallet.errors import Conflict, InvalidArgument, NotFound
from pallet.runtime import jsonlite

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing imports re, collections, functools: not on the run path
    from typing import Any

DEFAULT_ROOT = os.environ.get("PALLET_RUNTIME_ROOT", "/run/pallet-runtime")
OCI_VERSION = "1.0.2"


def check_id(cid: str) -> str:
    ok = cid and len(cid) <= 1024 and cid[0].isalnum() and all(c.isalnum() or c in "_.-" for c in cid)
    if not ok:
        raise InvalidArgument(f"invalid container id {cid!r}: use [A-Za-z0-9][A-Za-z0-9_.-]*")
    return cid


def container_dir(root: str, cid: str) -> str:
    return os.path.join(root, check_id(cid))


def make_dir(root: str, cid: str) -> str:
    os.makedirs(root, mode=0o711, exist_ok=True)
    d = container_dir(root, cid)
    try:
        os.mkdir(d, 0o711)
    except FileExistsError:
        raise Conflict(f"container {cid} already exists") from None
    return d


def write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(jsonlite.dumps(obj))
    os.replace(tmp, path)


def read(root: str, cid: str) -> dict[str, Any]:
    d = container_dir(root, cid)
    try:
        return jsonlite.load_file(d + "/state.json")  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise NotFound(f"container {cid} does not exist") from None


def remove(root: str, cid: str) -> None:
    """Remove the container's directory (flat: files only; no shutil, which imports re)."""
    d = container_dir(root, cid)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    for n in names:
        try:
            os.unlink(f"{d}/{n}")
        except FileNotFoundError:
            pass
    os.rmdir(d)


def list_ids(root: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(root) if os.path.exists(f"{root}/{n}/state.json"))
    except FileNotFoundError:
        return []


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode()
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    return rest[0], int(rest[19])


def alive(pid: int, starttime: int | None) -> bool:
    st = proc_stat(pid) if pid > 0 else None
    if st is None or st[0] in ("Z", "X"):
        return False
    return starttime is None or st[1] == starttime
