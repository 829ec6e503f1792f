"""``create``: validate every option, resolve the image and the mounts, write the container row
and its directories. Nothing is started. Any failure leaves nothing behind (no row, no dir, no
volume created for it).

``CreateOptions`` mirrors docker's run/create flags with their raw string values; everything is
parsed and validated here (``pallet.engine.units``) before the first write.
"""
from __future__ import annotations

import os

from pallet.engine import containers, mounts, names, units
from pallet.engine.containers import Container, Dirs
from pallet.errors import Conflict, InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    import sqlite3
    from typing import Any


class CreateOptions:
    """docker run/create flags, raw (validated by ``build_config``)."""

    # the options (all set by __init__; annotated for the type checker)
    image: str
    command: list[str]
    name: str | None
    env: list[str]
    env_file: list[str]
    workdir: str | None
    user: str | None
    entrypoint: str | None
    hostname: str | None
    init: bool
    restart: str | None
    rm: bool
    stop_signal: str | None
    stop_timeout: str | None
    labels: list[str]
    memory: str | None
    memory_swap: str | None
    cpus: str | None
    cpu_shares: str | None
    pids_limit: str | None
    cap_add: list[str]
    cap_drop: list[str]
    privileged: bool
    security_opt: list[str]
    read_only: bool
    tmpfs: list[str]
    volumes: list[str]
    mounts: list[str]
    volumes_from: list[str]
    runtime: str
    network: str | None
    interactive: bool
    tty: bool
    detach: bool
    publish: list[str]
    publish_all: bool
    network_alias: list[str]
    dns: list[str]
    dns_search: list[str]
    dns_option: list[str]
    add_host: list[str]
    group_add: list[str]

    _DEFAULTS: dict[str, Any] = {
        "command": [],
        "name": None,
        "env": [],
        "env_file": [],
        "workdir": None,
        "user": None,
        "entrypoint": None,
        "hostname": None,
        "init": False,
        "restart": None,
        "rm": False,
        "stop_signal": None,
        "stop_timeout": None,
        "labels": [],
        "memory": None,
        "memory_swap": None,
        "cpus": None,
        "cpu_shares": None,
        "pids_limit": None,
        "cap_add": [],
        "cap_drop": [],
        "privileged": False,
        "security_opt": [],
        "read_only": False,
        "tmpfs": [],
        "volumes": [],
        "mounts": [],
        "volumes_from": [],
        "runtime": "pallet",
        "network": None,
        "interactive": False,
        "tty": False,
        "detach": False,
        "publish": [],
        "publish_all": False,
        "network_alias": [],
        "dns": [],
        "dns_search": [],
        "dns_option": [],
        "add_host": [],
        "group_add": [],
    }

    def __init__(self, image: str, **kw: Any) -> None:
        self.image = image
        for k, v in self._DEFAULTS.items():
            setattr(self, k, list(v) if isinstance(v, list) else v)
        for k, v in kw.items():
            if k not in self._DEFAULTS:
                raise TypeError(f"unknown option {k}")
            setattr(self, k, v)


def build_config(o: CreateOptions, image_id: str, image_cfg: dict[str, Any], cid: str) -> dict[str, Any]:
    """Docker's Config and HostConfig from the options (validation included; no I/O but files named)."""
    icfg = image_cfg.get("config") or image_cfg.get("Config") or {}
    env = units.merge_env(list(icfg.get("Env") or []), units.parse_env(o.env, o.env_file))
    if o.entrypoint is not None:
        entrypoint = [o.entrypoint] if o.entrypoint else []
        cmd = list(o.command)
    else:
        entrypoint = list(icfg.get("Entrypoint") or [])
        cmd = list(o.command) if o.command else list(icfg.get("Cmd") or [])
    if not entrypoint and not cmd:
        raise InvalidArgument("No command specified")
    restart = units.parse_restart(o.restart)
    if o.rm and restart["Name"] != "no":
        raise InvalidArgument("Conflicting options: --restart and --rm")
    stop_signal = o.stop_signal or icfg.get("StopSignal") or "SIGTERM"
    units.parse_signal("--stop-signal", stop_signal)
    stop_timeout = units.parse_int("--stop-timeout", o.stop_timeout, minimum=-1)
    cap_add = [units.normalize_cap("--cap-add", c) for c in o.cap_add]
    cap_drop = [units.normalize_cap("--cap-drop", c) for c in o.cap_drop]
    sec = units.parse_security_opts(o.security_opt)
    memory = units.parse_memory("--memory", o.memory)
    swap = units.parse_memory("--memory-swap", o.memory_swap, allow_unlimited=True)
    if swap > 0 and memory and swap < memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if swap and not memory:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit")
    from pallet.engine import netwire

    network = netwire.parse_mode(o.network)
    if o.network_alias and (network in ("bridge", "none", "host") or network.startswith("container:")):
        raise InvalidArgument("network-scoped aliases are only supported for user-defined networks")
    if (o.publish or o.publish_all) and network in ("none", "host"):
        o.publish, o.publish_all = [], False  # docker: published ports are discarded with none/host
    if o.hostname is not None and (not o.hostname or len(o.hostname) > 64):
        raise InvalidArgument(f"invalid hostname format: {o.hostname!r}")
    hostname = o.hostname or (cid[:12] if network != "host" else os.uname().nodename)
    labels = dict(icfg.get("Labels") or {})
    labels.update(units.parse_labels(o.labels))
    config: dict[str, Any] = {
        "Hostname": hostname, "Domainname": "", "User": o.user if o.user is not None else icfg.get("User", ""),
        "AttachStdin": o.interactive and not o.detach, "AttachStdout": not o.detach,
        "AttachStderr": not o.detach, "ExposedPorts": icfg.get("ExposedPorts"), "Tty": o.tty,
        "OpenStdin": o.interactive, "StdinOnce": o.interactive and not o.detach, "Env": env, "Cmd": cmd or None,
        "Image": o.image, "Volumes": icfg.get("Volumes"),
        "WorkingDir": o.workdir if o.workdir is not None else icfg.get("WorkingDir", ""),
        "Entrypoint": entrypoint or None, "OnBuild": None, "Labels": labels, "StopSignal": stop_signal,
    }
    if config["WorkingDir"] and not config["WorkingDir"].startswith("/"):
        raise InvalidArgument(f"the working directory '{config['WorkingDir']}' is invalid, it needs to be an absolute path")
    if stop_timeout is not None:
        config["StopTimeout"] = stop_timeout
    host = {
        "Binds": [v for v in o.volumes] or None, "NetworkMode": network, "PortBindings": {},
        "RestartPolicy": restart, "AutoRemove": o.rm, "VolumesFrom": o.volumes_from or None,
        "CapAdd": cap_add or None, "CapDrop": cap_drop or None, "Dns": o.dns, "DnsOptions": o.dns_option, "DnsSearch": o.dns_search,
        "ExtraHosts": o.add_host or None,
        "Privileged": o.privileged, "ReadonlyRootfs": o.read_only,
        "SecurityOpt": o.security_opt or None, "Tmpfs": units.parse_tmpfs(o.tmpfs) or None,
        "Memory": memory, "MemorySwap": swap, "NanoCpus": units.parse_cpus(o.cpus),
        "CpuShares": units.parse_int("--cpu-shares", o.cpu_shares, minimum=0) or 0,
        "PidsLimit": units.parse_int("--pids-limit", o.pids_limit),
        "Runtime": _runtime(o.runtime), "Init": o.init, "Mounts": o.mounts or None,
        "PublishAllPorts": o.publish_all, "Publish": o.publish or None, "NetworkAliases": o.network_alias or None,
        "GroupAdd": list(o.group_add) or None,
    }
    return {"Config": config, "HostConfig": host, "Security": sec}


def _runtime(name: str) -> str:
    if name in ("pallet", "runc", "crun"):
        return name
    raise InvalidArgument(f"unknown or invalid runtime name: {name}")


def create(store: Any, conn: sqlite3.Connection, o: CreateOptions, cid: str | None = None) -> Container:
    """``cid``: an id chosen beforehand (the monitor's, whose cgroups it made ready); else a new one."""
    cid = cid or names.new_id()
    rec, cfg, made = _config(store, conn, o, cid)
    dirs = Dirs(store.paths.root, store.paths.runroot, cid)
    try:
        dirs.make()
        for m in cfg["Mounts"]:
            if m["Type"] == "volume" and not m.get("NoCopy"):
                from pallet.engine import volumes

                volumes.populate(conn, store.paths.root, m["Name"], [p for p in store.lowerdirs(rec)],
                                 m["Destination"])
        c = Container(id=cid, name="", image_id=str(rec.id), created=containers.now(), config=cfg)
        for attempt in range(20):
            c.name = o.name.lstrip("/") if o.name else names.generate(attempt)
            cfg["Name"] = "/" + c.name
            try:
                containers.insert(conn, c)
                break
            except Conflict:
                if o.name or attempt == 19:
                    raise
    except BaseException:
        dirs.remove()
        mounts.drop(conn, store.paths.root, made)
        raise
    return c


def draft(store: Any, conn: sqlite3.Connection, o: CreateOptions, cid: str) -> Container | None:
    """The container ``create(store, conn, o, cid)`` would make, validated but written nowhere (no
    row, no directory); None when ``o`` names volumes (their creation cannot be guessed ahead)."""
    if o.volumes or o.mounts or o.volumes_from:
        return None
    rec, cfg, made = _config(store, conn, o, cid)
    if made:
        mounts.drop(conn, store.paths.root, made)
        return None
    return Container(id=cid, name="", image_id=str(rec.id), created="", config=cfg)


def _config(store: Any, conn: sqlite3.Connection, o: CreateOptions, cid: str) -> tuple[Any, dict[str, Any], list[str]]:
    """(image record, config with its mounts, volumes created for it) after every check."""
    if o.name is not None and not names.valid(o.name):
        raise InvalidArgument(f"Invalid container name ({o.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    if o.name is not None:
        other = conn.execute("SELECT id FROM containers WHERE name=?", (o.name.lstrip("/"),)).fetchone()
        if other:
            raise containers.name_conflict(o.name.lstrip("/"), other[0])
    try:
        rec = store.resolve_image(o.image)
    except NotFound:
        raise NotFound(f"Unable to find image '{o.image}' locally: No such image: {o.image}") from None
    cfg = build_config(o, str(rec.id), rec.config, cid)
    lowerdirs = [str(p) for p in store.lowerdirs(rec)]
    if o.group_add:  # checked before anything is written; resolved again at each start and exec
        from pallet.engine import specgen

        specgen.resolve_group_add(lowerdirs, o.group_add)
    from pallet.engine import netwire

    netwire.validate(conn, str(store.paths.root), str(store.paths.runroot), cfg["HostConfig"]["NetworkMode"])
    if o.publish:
        from pallet.network.ports import parse_publish

        for spec in o.publish:
            parse_publish(spec)
    vfrom: list[tuple[list[dict[str, Any]], bool | None]] = []
    for spec in o.volumes_from:
        ref, _, mode = spec.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"invalid mode for --volumes-from: {mode}")
        vfrom.append((containers.get(conn, ref).mounts, None if not mode else mode == "ro"))
    mlist, made = mounts.resolve(conn, store.paths.root, v=o.volumes, mount=o.mounts,
                                 tmpfs=cfg["HostConfig"]["Tmpfs"] or {}, volumes_from=vfrom)
    cfg["Mounts"] = mlist
    cfg["Name"] = "/" + (o.name or "")
    cfg["ImageRef"] = o.image
    cfg["Lowerdirs"] = lowerdirs
    return rec, cfg, made
