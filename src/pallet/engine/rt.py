"""The engine's one door to OCI runtimes: ``start``, ``exec_``, ``kill``, ``pause``, ``resume``,
``oom_killed``, ``stats``, ``cleanup``, by the container's ``HostConfig.Runtime``.

``pallet`` is the built-in runtime, called in-process (no second interpreter, the overlay mounted
inside the container's mount namespace: nothing to unmount on the host). ``runc``/``crun`` get a
bundle in ``<runroot>/containers/<id>/bundle`` whose rootfs is an overlay mounted on the host
(unmounted by ``cleanup``); they run detached and their init is adopted by the caller, a
subreaper. Either way the container's init is a child of the calling process when ``start``
returns, and ``start`` returns a JSON-able dict (``pid``, ``start_time``, backend state) that
the engine stores so any later process can exec/kill/pause/clean up.
"""
from __future__ import annotations

import _signal as signal  # not `signal`: its enums import enum (~3 ms); same functions, int handlers
import ctypes
import os

from pallet.engine.containers import Container, Dirs
from pallet.engine.stdio import Stdio
from pallet.errors import Conflict, NotImplementedFeature, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    from typing import Any

PR_SET_CHILD_SUBREAPER = 36
_subreaper = False
# seconds a served exec's entered process (runtime.entered) is kept after the last exec; 0: none
EXEC_KEEP = float(os.environ.get("PALLET_EXEC_KEEP", "2") or 0)


def become_subreaper() -> None:
    global _subreaper
    if not _subreaper:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        _subreaper = True


class _DefaultSignals:
    """Python ignores SIGPIPE and SIGXFSZ (and a shell may start us with SIGINT/SIGQUIT/SIGHUP
    ignored); ignored signals survive fork and exec, and a shell cannot even trap them. Around the
    runtime's clone the dispositions are put back to default, so the container starts with none
    ignored (as under runc/docker), then restored for this process."""

    _SIGS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM)

    def __enter__(self) -> None:
        self.saved = {}
        for s in self._SIGS:
            h = signal.getsignal(s)
            if h == signal.SIG_IGN:
                self.saved[s] = h
                signal.signal(s, signal.SIG_DFL)

    def __exit__(self, *exc: object) -> None:
        for s, h in self.saved.items():
            signal.signal(s, h)


def _dirs(store: Any, c: Container) -> Dirs:
    return Dirs(store.paths.root, store.paths.runroot, c.id)


def _backend(name: str) -> Any:
    if name == "pallet":
        from pallet.engine import rt_builtin

        return rt_builtin
    if name in ("runc", "crun"):
        from pallet.engine import rt_external

        return rt_external
    raise Unavailable(f"unknown runtime {name!r}")


def start(store: Any, c: Container, io: Stdio, conn: Any = None) -> dict[str, Any]:
    """Network (``netwire``), spec, runtime. The port reservation is put in ``io.keep``: the
    waiter closes it with the stdio when the container is gone. Nothing is left when it raises."""
    become_subreaper()
    from pallet.engine import netwire, prestart, specgen
    from pallet.engine.state import proc_start_time

    dirs = _dirs(store, c)
    w = netwire.setup(store, conn, c, dirs)
    try:
        spec = prestart.spec_for(c, w.netns) or specgen.build(c, dirs, netns=w.netns, ip=w.info.get("ip"))
        netwire.after_hosts_written(store, c, w)
        name = c.host.get("Runtime", "pallet")
        with _DefaultSignals():
            info = _backend(name).start(c, dirs, spec, io)
    except BaseException:
        if w.keep is not None:
            w.keep.close()
        netwire.teardown(str(store.paths.root), str(store.paths.runroot), c.id, w.info)
        raise
    if w.keep is not None:
        io.keep.append(w.keep)
    info["runtime"] = name
    info["root"], info["runroot"] = str(store.paths.root), str(store.paths.runroot)
    info["start_time"] = proc_start_time(info["pid"])
    if w.info:
        info["network"] = w.info
        info["ports"] = w.info.get("ports", [])
    return info


def exec_(store: Any, c: Container, args: list[str], *, env: list[str], cwd: str | None, user: str | None,
          io: Stdio, privileged: bool = False, keep: float = 0.0) -> int:
    """Start ``args`` in the running container ``c``; its pid (the caller's child). ``keep`` > 0
    (the monitor, which serves many and reaps every child): the built-in runtime keeps a process
    entered in the container that long after the last exec and forks the next one from it
    (runtime.entered; ``EXEC_KEEP``)."""
    if c.status != "running":
        raise Conflict(f"Container {c.id} is not running" if c.status != "paused"
                       else f"Container {c.id} is paused, unpause the container before exec")
    become_subreaper()
    from pallet.engine import specgen, units

    dirs = _dirs(store, c)
    uid, gid, extra = specgen.resolve_user(c, dirs, user if user is not None else c.cfg.get("User") or "")
    base = list(c.cfg.get("Env") or [])
    if not any(e.startswith("PATH=") for e in base):
        base.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    proc = {"args": args, "env": units.merge_env(base, env), "cwd": cwd or c.cfg.get("WorkingDir") or "/",
            "user": {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})},
            "terminal": io.tty}
    name = c.rt.get("runtime", "pallet")
    with _DefaultSignals():
        return int(_backend(name).exec_(c, dirs, proc, io, privileged, keep=keep))


def kill(c: Container, sig: int) -> None:
    if c.pid <= 0:
        raise Conflict(f"Container {c.id} is not running")
    try:
        os.kill(c.pid, sig)
    except ProcessLookupError:
        pass


def pause(store: Any, c: Container) -> None:
    _backend(c.rt.get("runtime", "pallet")).freeze(c, _dirs(store, c), True)


def resume(store: Any, c: Container) -> None:
    _backend(c.rt.get("runtime", "pallet")).freeze(c, _dirs(store, c), False)


def oom_killed(store: Any, c: Container) -> bool:
    try:
        return bool(_backend(c.rt.get("runtime", "pallet")).oom_killed(c, _dirs(store, c)))
    except Exception:  # noqa: BLE001 - a missing cgroup means no OOM record
        return False


def stats(store: Any, c: Container) -> dict[str, Any]:
    return dict(_backend(c.rt.get("runtime", "pallet")).stats(c, _dirs(store, c)))


def pids(store: Any, c: Container) -> list[int]:
    return list(_backend(c.rt.get("runtime", "pallet")).pids(c, _dirs(store, c)))


def cleanup(c: Container, store: Any = None) -> None:
    """Free what the runtime holds for a stopped container (cgroups, host mounts, state, its
    network endpoint and netns). Idempotent."""
    if not c.rt:
        return
    root = str(store.paths.root) if store is not None else c.rt.get("root", "")
    runroot = str(store.paths.runroot) if store is not None else c.rt.get("runroot", "")
    try:
        _backend(c.rt.get("runtime", "pallet")).cleanup(c, Dirs(root, runroot, c.id))
    finally:
        from pallet.engine import netwire

        netwire.teardown(root, runroot, c.id, c.rt.get("network") or {})


__all__ = ["start", "exec_", "kill", "pause", "resume", "oom_killed", "stats", "pids", "cleanup",
           "NotImplementedFeature", "signal"]
