"""``-v``, ``--mount``, ``--tmpfs`` and ``--volumes-from`` resolved to docker's ``Mounts`` entries.

Each entry: ``{"Type": bind|volume|tmpfs, "Name"?, "Source", "Destination", "Mode", "RW",
"Propagation", "Options"?}``. Bind sources must exist (a clear error otherwise; pallet does not
create host directories). Named volumes are created on demand; ``resolve`` reports which it
created so a failed create can remove them again (nothing left behind).
"""
from __future__ import annotations

import os

from pallet.errors import InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    import sqlite3
    from typing import Any


def _check_dst(dst: str, what: str) -> str:
    if not dst.startswith("/"):
        raise InvalidArgument(f"invalid mount config for {what}: mount path must be absolute: {dst!r}")
    norm = os.path.normpath(dst)
    if norm == "/":
        raise InvalidArgument(f"invalid mount config for {what}: destination can't be '/'")
    return norm


def _bind(src: str, dst: str, ro: bool, what: str, mode: str = "") -> dict[str, Any]:
    src = os.path.abspath(src)
    if not os.path.exists(src):
        raise InvalidArgument(f"invalid mount config for {what}: bind source path does not exist: {src}")
    return {"Type": "bind", "Source": src, "Destination": _check_dst(dst, what), "Mode": mode,
            "RW": not ro, "Propagation": "rprivate"}


def _volume(name: str | None, dst: str, ro: bool, what: str, mode: str = "") -> dict[str, Any]:
    return {"Type": "volume", "Name": name, "Source": "", "Destination": _check_dst(dst, what),
            "Driver": "local", "Mode": mode, "RW": not ro, "Propagation": ""}


def parse_v(spec: str) -> dict[str, Any]:
    parts = spec.split(":")
    if len(parts) == 1:
        return _volume(None, parts[0], False, "-v " + spec)
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid volume specification: {spec!r}")
    mode = parts[2] if len(parts) == 3 else ""
    opts = set(mode.split(",")) if mode else set()
    bad = opts - {"ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "shared", "rshared", "slave", "rslave"}
    if bad or {"ro", "rw"} <= opts:
        raise InvalidArgument(f"invalid mode: {mode}")
    ro = "ro" in opts
    src = parts[0]
    if src.startswith("/") or src.startswith("."):
        return _bind(src, parts[1], ro, "-v " + spec, mode)
    m = _volume(src, parts[1], ro, "-v " + spec, mode)
    m["NoCopy"] = "nocopy" in opts
    return m


_MOUNT_KEYS = frozenset((
    "type source src target destination dst readonly ro consistency bind-propagation bind-nonrecursive "
    "volume-nocopy volume-driver volume-label volume-opt tmpfs-size tmpfs-mode").split())


def parse_mount(spec: str) -> dict[str, Any]:
    kv: dict[str, str] = {}
    for item in spec.split(","):
        k, eq, v = item.partition("=")
        k = k.strip().lower()
        if not eq and k in ("readonly", "ro", "volume-nocopy"):
            v = "true"
        if k not in _MOUNT_KEYS:
            raise InvalidArgument(f"invalid argument {spec!r} for \"--mount\" flag: unexpected key {k!r} in {item!r}")
        kv[k] = v
    typ = kv.get("type", "volume")
    dst = kv.get("destination") or kv.get("dst") or kv.get("target") or ""
    src = kv.get("source") or kv.get("src") or ""
    ro = kv.get("readonly", kv.get("ro", "false")).lower() in ("1", "true")
    what = "--mount " + spec
    if not dst:
        raise InvalidArgument(f"invalid argument {spec!r} for \"--mount\" flag: target is required")
    if typ == "bind":
        if not src:
            raise InvalidArgument(f"invalid mount config for {what}: source is required for a bind mount")
        return _bind(src, dst, ro, what)
    if typ == "volume":
        if ro and not src:
            raise InvalidArgument(f"invalid mount config for {what}: must not set ReadOnly mode when using "
                                  "anonymous volumes")
        m = _volume(src or None, dst, ro, what)
        m["NoCopy"] = kv.get("volume-nocopy", "false").lower() in ("1", "true", "")
        return m
    if typ == "tmpfs":
        if src:
            raise InvalidArgument(f"invalid mount config for {what}: source is not allowed for tmpfs")
        opts = []
        if "tmpfs-size" in kv:
            from pallet.engine.units import parse_bytes

            opts.append(f"size={parse_bytes('--mount tmpfs-size', kv['tmpfs-size'])}")
        if "tmpfs-mode" in kv:
            try:
                mode = int(kv["tmpfs-mode"], 8)
            except ValueError:
                raise InvalidArgument(f"invalid value for tmpfs-mode in --mount {spec!r}: "
                                      f"{kv['tmpfs-mode']!r} (octal)") from None
            opts.append(f"mode={mode:o}")
        return {"Type": "tmpfs", "Source": "", "Destination": _check_dst(dst, what), "Mode": "",
                "RW": not ro, "Propagation": "", "Options": ",".join(opts)}
    raise InvalidArgument(f"invalid mount type {typ!r} (bind, volume or tmpfs)")


def resolve(conn: sqlite3.Connection, root: str | os.PathLike[str], *, v: list[str], mount: list[str],
            tmpfs: dict[str, str], volumes_from: list[tuple[list[dict[str, Any]], bool | None]]
            ) -> tuple[list[dict[str, Any]], list[str]]:
    """All mounts of a new container, volumes created; returns (mounts, volumes created now).

    ``volumes_from``: (mounts of the other container, read-only override or None)."""
    out: dict[str, dict[str, Any]] = {}
    for other, ro in volumes_from:
        for om in other:
            if om["Type"] == "tmpfs":
                continue
            copied = dict(om)
            if ro is not None:
                copied["RW"] = not ro
            out[copied["Destination"]] = copied
    mine = [parse_v(s) for s in v] + [parse_mount(s) for s in mount]
    for dst, opts in tmpfs.items():
        mine.append({"Type": "tmpfs", "Source": "", "Destination": _check_dst(dst, "--tmpfs"), "Mode": "",
                     "RW": "ro" not in opts.split(","), "Propagation": "", "Options": opts})
    seen: set[str] = set()
    for m in mine:
        if m["Destination"] in seen:
            raise InvalidArgument(f"Duplicate mount point: {m['Destination']}")
        seen.add(m["Destination"])
        out[m["Destination"]] = m
    created: list[str] = []
    if not out:
        return [], created
    from pallet.engine import volumes

    try:
        for m in out.values():
            if m["Type"] == "volume":
                name, new = volumes.create(conn, root, m["Name"])
                if m["Name"] is None:
                    m["Anonymous"] = True
                m["Name"] = name
                m["Source"] = str(volumes.data_dir(root, name))
                if new:
                    created.append(name)
    except Exception:
        drop(conn, root, created)
        raise
    return list(out.values()), created


def drop(conn: sqlite3.Connection, root: str | os.PathLike[str], names: list[str]) -> None:
    if not names:
        return
    from pallet.engine import volumes

    for n in names:
        try:
            volumes.remove(conn, root, n)
        except (NotFound, Exception):  # noqa: BLE001 - cleanup after a failure: best effort
            pass
