"""The built-in runtime (``pallet.runtime.container``) behind ``pallet.engine.rt``, in-process.

The bundle is ``<runroot>/containers/<id>/bundle`` holding only an empty ``rootfs`` mount
point: the overlay (the image's layers + the container's upper dir) is mounted by the runtime
inside the container's mount namespace, so nothing is mounted on the host. Runtime state lives in
``<runroot>/runtime/<id>`` (the runtime's ``--root``).
"""
from __future__ import annotations

import os

from pallet.engine.containers import Container, Dirs
from pallet.engine.stdio import Stdio, console_size, copy_winsize
from pallet.errors import NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    from typing import Any


def _root(dirs: Dirs) -> str:
    return str(dirs.run.parent.parent / "runtime")


def bundle_dir(dirs: Dirs) -> str:
    """One shared, empty bundle per runroot: the overlay is mounted on its rootfs inside each
    container's own mount namespace, so one mount point serves every container (and there is
    no per-container directory to make and remove on the run path)."""
    bundle = dirs.run.parent.parent / "bundle"
    if not os.path.isdir(bundle / "rootfs"):
        os.makedirs(bundle / "rootfs", exist_ok=True)
    return str(bundle)


def overlay(c: Container, dirs: Dirs) -> Any:
    from pallet.runtime.linux.mounts import RootfsOverlay

    return RootfsOverlay(list(c.config.get("Lowerdirs", [])), str(dirs.upper), str(dirs.work))


def start(c: Container, dirs: Dirs, spec: dict[str, Any], io: Stdio) -> dict[str, Any]:
    """(A container set up ahead for this id, engine.prestart, is taken by ``rc.create``.)"""
    from pallet.runtime import container as rc

    bundle = bundle_dir(dirs)
    spec["root"]["path"] = "rootfs"
    if io.tty:
        console_size(spec["process"])  # set on the pty before the command runs
    h = rc.create(c.id, bundle, spec, root=_root(dirs), stdio=None if io.tty else io.child,
                  rootfs_overlay=overlay(c, dirs), start=True)
    if io.tty and h.console_fd is not None:
        io.master = h.console_fd
        os.set_inheritable(io.master, False)
        for fd in (0, 1):
            if os.isatty(fd):
                copy_winsize(fd, io.master)
                break
    return {"pid": h.pid}


def _load(c: Container, dirs: Dirs) -> Any:
    from pallet.runtime import container as rc

    return rc.load(c.id, root=_root(dirs))


_EXEC_HANDLES: dict[str, tuple[tuple[int, int, int], Any]] = {}


def _exec_handle(c: Container, dirs: Dirs) -> Any:
    """The runtime's handle, kept while the container's state.json is unchanged (same inode, size,
    mtime): a process serving many execs (the monitor) reads and parses it, and looks up its
    cgroup hierarchies, once. exec only reads the handle."""
    try:
        st = os.stat(f"{_root(dirs)}/{c.id}/state.json")
    except OSError:
        return _load(c, dirs)  # (its error)
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _EXEC_HANDLES.get(c.id)
    if hit is not None and hit[0] == key:
        return hit[1]
    h = _load(c, dirs)
    if len(_EXEC_HANDLES) >= 64:
        _EXEC_HANDLES.clear()
    _EXEC_HANDLES[c.id] = (key, h)
    return h


def exec_(c: Container, dirs: Dirs, proc: dict[str, Any], io: Stdio, privileged: bool, keep: float = 0.0) -> int:
    """``keep``: the caller serves many execs and reaps every child (runtime.enter.exec_in)."""
    h = _exec_handle(c, dirs)  # (its exec starts cgroup v1's attach wait early: cgroupfs.prewarm_attach)
    if privileged:
        from pallet.runtime.linux.caps import CAPS

        proc["capabilities"] = {k: list(CAPS) for k in ("bounding", "effective", "permitted")}
    import resource  # noqa: F401 - the exec child needs it after joining the mount ns (not importable there)

    if io.tty:
        console_size(proc)  # set on the pty before the command runs
    helper = None
    if keep:
        from pallet.engine.prestart import init_helper

        helper = init_helper()  # native/pallet-init, when built (runtime.entered.exec_native)
    p = h.exec(proc, stdio=None if io.tty else io.child, tty=io.tty, keep=keep, helper=helper)
    if io.tty and p.console_fd is not None:
        io.master = p.console_fd
        os.set_inheritable(io.master, False)
        for fd in (0, 1):
            if os.isatty(fd):
                copy_winsize(fd, io.master)
                break
    return int(p.pid)


def freeze(c: Container, dirs: Dirs, on: bool) -> None:
    h = _load(c, dirs)
    h.pause() if on else h.resume()


def oom_killed(c: Container, dirs: Dirs) -> bool:
    return bool(_load(c, dirs).cgroup.oom_killed())


def stats(c: Container, dirs: Dirs) -> dict[str, Any]:
    raw = _load(c, dirs).stats()
    mem = raw.get("memory") or {}
    return {"memory_usage": int(mem.get("usage", 0)), "memory_limit": int(mem.get("limit", 0)),
            "cpu_ns": int((raw.get("cpu") or {}).get("usage_ns", 0)),
            "pids": int((raw.get("pids") or {}).get("current", 0))}


def pids(c: Container, dirs: Dirs) -> list[int]:
    return list(_load(c, dirs).cgroup.pids())


def _drop_dead_spares(dirs: Dirs) -> None:
    """The spare cgroups of a monitor that was killed (engine.spare)."""
    from pallet.engine import spare
    from pallet.runtime.linux import cgroupfs

    runroot = str(dirs.run.parent.parent)
    if cgroupfs.SPARE or runroot in spare.SWEPT or os.path.exists(cgroupfs.CGROUP_ROOT + "/cgroup.controllers"):
        return  # (the monitor itself: it swept when it started, and its own spare is alive)
    spare.sweep(runroot)


def cleanup(c: Container, dirs: Dirs) -> None:
    """Idempotent, and safe when the waiter and a ``rm -f`` clean up at the same time."""
    import errno

    from pallet.errors import OSFailure

    _drop_dead_spares(dirs)
    for _attempt in range(3):
        try:
            _load(c, dirs).delete(force=True)
            return
        except (NotFound, FileNotFoundError):
            return
        except OSFailure as e:
            if e.errno not in (errno.ENOENT, errno.EBUSY):
                raise
            import time

            time.sleep(0.01)
