"""The monitor's next served ``run``, set up ahead while it waits (``pallet.runtime.prepared``).

After a foreground ``run`` it served, the monitor guesses that the next one is alike (options of
the same shape: a script's or a loop's next run) and prepares that container under a new id:
directories, /etc files, spec, then the runtime's clone into the namespaces and its own cgroups,
rootfs, pivot_root, masked paths, seccomp filter (runtime.prepared). The next served run of that
shape gets that id; its ``create`` gives the runtime the same spec, and the runtime hands the
waiting process its command and stdio instead of starting from a clone. A run of another shape
gets the spare cgroup set's id (engine.spare) and the usual start; a spec that differs in anything
applied ahead is started the usual way and the prepared process is killed. Measured:
bench/RESULTS.md "Engine, session 3: run". cgroup v1 only (prepared where the spare is made).

What exists meanwhile: the process (a fork of the monitor that exec'd native/pallet-init, in its
own namespaces: nothing mounted on the host), its cgroup set, and ``<root>/containers/<id>``
(upper and work dirs, /etc files) with no row. It goes (``drop``) ``TTL`` seconds after the last
served run, when the monitor exits, and when a run with its id fails before its start.
``<runroot>/monitor.prestart`` names the last one prepared (``PID ROOT ID CGROUP``), so the next
monitor removes a killed monitor's directories and cgroups unless the database has a row with
that id (``sweep``); the process itself dies with its monitor (PR_SET_PDEATHSIG). A served run's
held namespaces and moved-out directory go after the next one is prepared (``exited``, ``flush``).
"""
from __future__ import annotations

import os
import time

from pallet.engine.containers import Dirs

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re): not on the run path
    from typing import Any

TTL = float(os.environ.get("PALLET_PRESTART_TTL", "2.0"))  # 0: never prepare
FILE = "monitor.prestart"


# -- the monitor's side (engine.monitor_loop: Monitor.ahead, .ahead_until, .last_run) -------------

# options that reach only the spec's ``process`` (or nothing the runtime applies ahead): runs that
# differ only in these can use the same prepared container
PROCESS_ONLY = frozenset(("command", "env", "env_file", "workdir", "user", "entrypoint", "interactive", "cap_add",
                          "cap_drop", "stop_signal", "stop_timeout", "labels", "rm", "name", "restart", "group_add",
                          "detach"))
_SHAPE: dict[str, dict[str, Any]] = {}  # prepared id -> the options' shape it was prepared for
_SPEC: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # prepared id -> (its config but the name, its spec)
# prepared id -> descriptors of its mount and ipc namespaces, held until its client has the exit
# code (``exited``): the container's exit then does not wait for their teardown (the unmounts and
# an RCU grace period, 2-4 ms here), which happens when they are closed, off the run's path
_HELD: dict[str, list[int]] = {}
_AFTER: list[tuple[float, list[int], list[str]]] = []  # (since, fds, paths): ``exited``'s work left to ``flush``
_LAYERS: dict[str, list[tuple[int, int]] | None] = {}  # prepared id -> its layer dirs (``_layers``)


def _shape(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if k not in PROCESS_ONLY}


def _likely(kw: dict[str, Any]) -> bool:
    """Options a container can be prepared for (``prepare`` decides; this only picks the guess)."""
    from pallet.engine import netwire

    try:
        mode = netwire.parse_mode(kw.get("network"))
    except Exception:  # noqa: BLE001
        return False
    return (mode in ("none", "host") and not (kw.get("volumes") or kw.get("mounts") or kw.get("volumes_from"))
            and not kw.get("tty") and kw.get("runtime", "pallet") == "pallet")


def tick(m: Any) -> None:
    """After the monitor made its spare: prepare the next served run if one was served lately
    (one prepared for options of another shape than the last run's is dropped first); then what
    the last run's end left (``exited``)."""
    try:
        if m.ahead is not None and m.last_run is not None and _SHAPE.get(m.ahead.cid) != _shape(m.last_run):
            release(m, m.ahead.cid)
        if m.ahead is not None or m.last_run is None or time.monotonic() > m.ahead_until:
            return
        from pallet.engine import names

        m.ahead = prepare(m.store, m.conn, m.last_run, names.new_id())
        if m.ahead is not None:
            _SHAPE[m.ahead.cid] = _shape(m.last_run)
    finally:
        flush()


def served(m: Any, kw: dict[str, Any]) -> str | None:
    """A served run with options ``kw`` is about to be created: the id to give it, the prepared
    container's when it was prepared for options of this shape, else the next id (its spare
    cgroups) or None. The guess for the next one is the last served run's options that a
    container can be prepared for."""
    if _likely(kw):
        m.last_run, m.ahead_until = dict(kw), time.monotonic() + TTL
    p = m.ahead
    if p is not None and _SHAPE.get(p.cid) == _shape(kw):
        if _layers(_SPEC.get(p.cid, ({}, {}))[0]) != _LAYERS.get(p.cid):
            release(m, p.cid)  # its image's layers were removed (and maybe stored again) meanwhile
            return m.next_cid or None
        return str(p.cid)  # (its record stays until the next is prepared: sweep spares a row's id)
    return m.next_cid or None


def _layers(config: dict[str, Any]) -> list[tuple[int, int]] | None:
    """(device, inode) of the layer directories an overlay of ``config`` is made of; None if one
    is missing."""
    try:
        return [(st.st_dev, st.st_ino) for st in map(os.stat, config.get("Lowerdirs") or ())]
    except OSError:
        return None


def release(m: Any, cid: str | None = None) -> None:
    """Drop the monitor's prepared container (only if it is ``cid``'s, when given)."""
    if cid is None:
        flush()
    p = m.ahead
    if p is None and cid is None:
        _record(m.runroot, "")  # (one a run took: its record, not removed on the run's path)
    if p is None or (cid is not None and p.cid != cid):
        return
    m.ahead = None
    _SHAPE.pop(p.cid, None)
    _SPEC.pop(p.cid, None)
    _LAYERS.pop(p.cid, None)
    drop(m.conn, m.root, m.runroot, p)


def expire(m: Any, reaped: int = 0) -> None:
    """From the monitor's reaping: a prepared process that died on its own is not killed again
    (``reaped``: a pid just reaped); none is kept ``TTL`` s after the last served run."""
    flush(0.05)
    if m.ahead is None:
        return
    if reaped and reaped == m.ahead.pid:
        m.ahead.pid = 0
    if time.monotonic() > m.ahead_until:
        release(m)


def prepare(store: Any, conn: Any, kw: dict[str, Any], cid: str) -> Any:
    """The container a served run with options ``kw`` would get as ``cid``, prepared and offered
    to the runtime's ``create``; None when it cannot be (volumes, a bridge network, a tty, an
    error: the run is then started the usual way)."""
    from pallet.engine import rt, rt_builtin, specgen
    from pallet.engine.create import CreateOptions, draft
    from pallet.runtime import prepared

    if TTL <= 0:
        return None
    try:
        c = draft(store, conn, CreateOptions(**dict(kw, name=None)), cid)  # (a name is the run's, not its shape's)
    except Exception:  # noqa: BLE001 - a run that fails its checks: nothing to prepare
        return None
    if c is None or c.host.get("Runtime") != "pallet" or c.host.get("NetworkMode") not in ("none", "host"):
        return None
    root, runroot = str(store.paths.root), str(store.paths.runroot)
    dirs = Dirs(root, runroot, cid)
    _record(runroot, f"{os.getpid()} {root} {cid} /{specgen.cgroup_parent()}/{cid}\n")
    try:
        dirs.make()
        os.close(os.open(dirs.log, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640))  # (a run opens it)
        spec = specgen.build(c, dirs)
        if not prepared.eligible(spec):
            raise LookupError
        bundle = rt_builtin.bundle_dir(dirs)
        spec["root"]["path"] = "rootfs"
        with rt._DefaultSignals():  # the dispositions the container starts with (rt.start does the same)
            p = prepared.prepare(cid, bundle, spec, root=rt_builtin._root(dirs), rootfs_overlay=rt_builtin.overlay(c, dirs),
                                 seccomp_early=((c.config.get("Security") or {}).get("seccomp") or "default") == "default",
                                 init_helper=init_helper())
    except Exception:  # noqa: BLE001 - only an optimisation
        dirs.remove()
        _record(runroot, "")
        return None
    prepared.offer(p)
    _SPEC[cid] = (_unnamed(c.config), spec)
    _LAYERS[cid] = _layers(c.config)
    _HELD[cid] = []
    for ns in ("mnt", "ipc"):
        try:
            _HELD[cid].append(os.open(f"/proc/{p.pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            pass
    return p


def exited(cid: str, paths: list[str] | None = None) -> None:
    """A served run's container is gone and its client answered: its held namespaces (their
    teardown costs 4-6 ms) and ``paths`` (its directory, moved out: containers.Dirs.move_out) go
    after the next container is prepared (``tick``), or within 50 ms (``expire``)."""
    fds = _HELD.pop(cid, [])
    if fds or paths:
        _AFTER.append((time.monotonic(), fds, list(paths or ())))


def flush(older: float = 0.0) -> None:
    """What ``exited`` left to do, if pending for ``older`` seconds."""
    from pallet.engine.containers import remove_tree

    now = time.monotonic()
    while _AFTER and _AFTER[0][0] <= now - older:
        _t, fds, paths = _AFTER.pop(0)
        for fd in fds:
            os.close(fd)
        for path in paths:
            remove_tree(path)


def _unnamed(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "Name"}


def init_helper() -> str | None:
    """native/pallet-init (scripts/setup.sh builds it into the venv's bin; ``PALLET_INIT_BIN``
    names another, ``0`` none: the prepared container then finishes in Python)."""
    from pallet.runtime.sealed import native

    return native("pallet-init", "PALLET_INIT_BIN")


def spec_for(c: Any, netns: str | None) -> dict[str, Any] | None:
    """The spec ``specgen.build`` would give ``c`` when a container was prepared for its very
    config (the name aside): the one built then (its /etc files are written), else None."""
    got = _SPEC.pop(c.id, None)
    if got is None or netns is not None or got[0] != _unnamed(c.config):
        return None
    return dict(got[1], annotations=dict(got[1].get("annotations") or {}, **{"org.pallet.container.name": c.name}))


def drop(conn: Any, root: str, runroot: str, p: Any) -> None:
    """Kill it if it is still waiting; unless a container has its id, remove its directories
    and cgroups."""
    from pallet.engine import containers
    from pallet.runtime import prepared

    prepared.take(p.cid)
    p.discard()
    if not p.used:
        exited(p.cid)
    if p.used or containers.reload(conn, p.cid) is not None:
        return  # a container's now: its directories and cgroups too (its record: see sweep)
    _record(runroot, "")
    Dirs(root, runroot, p.cid).remove()
    try:
        p.cg.destroy()
    except Exception:  # noqa: BLE001 - swept with the monitor's record otherwise
        pass


def sweep(runroot: str) -> None:
    """The directories of a killed monitor's prepared container: removed."""
    try:
        with open(os.path.join(runroot, FILE)) as f:
            pid, root, cid, cgpath = f.read().split()
    except (OSError, ValueError):
        return
    from pallet.engine.state import alive

    if int(pid) != os.getpid() and not alive(int(pid), None):
        if not _has_row(root, cid):  # (a served run took it: the container's now)
            Dirs(root, runroot, cid).remove()
            from pallet.engine.spare import destroy_if_empty

            destroy_if_empty(os.path.dirname(cgpath), os.path.basename(cgpath))  # best effort (v1 only: as prepare)
        _record(runroot, "")


def _has_row(root: str, cid: str) -> bool:
    """Whether the store's database has a container ``cid`` (True when it cannot tell)."""
    import _sqlite3

    try:
        db = _sqlite3.connect(f"file:{os.path.join(root, 'db.sqlite')}?mode=ro", uri=True, timeout=5)
    except Exception:  # noqa: BLE001
        return True
    try:
        return db.execute("SELECT 1 FROM containers WHERE id=?", (cid,)).fetchone() is not None
    except Exception:  # noqa: BLE001
        return True
    finally:
        db.close()


def _record(runroot: str, text: str) -> None:
    path = os.path.join(runroot, FILE)
    try:
        if text:
            with open(path, "w") as f:
                f.write(text)
        else:
            os.unlink(path)
    except OSError:
        pass
