"""Docker-shaped views of a container: ``inspect`` (Engine API ``ContainerInspect``) and the
``ps`` row."""
from __future__ import annotations

import shlex
import time
from typing import Any

from pallet.engine.containers import Container, Dirs
from pallet.engine.units import human_duration as duration


def _since(ts: str) -> float:
    try:
        base = time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")
        import calendar

        return time.time() - calendar.timegm(base)
    except ValueError:
        return 0.0


def status(c: Container) -> str:
    if c.status == "running":
        return f"Up {duration(_since(c.started_at))}"
    if c.status == "paused":
        return f"Up {duration(_since(c.started_at))} (Paused)"
    if c.status == "restarting":
        return f"Restarting ({c.exit_code}) {duration(_since(c.finished_at))} ago"
    if c.status == "exited":
        return f"Exited ({c.exit_code}) {duration(_since(c.finished_at))} ago"
    if c.status == "removing":
        return "Removal In Progress"
    if c.status == "dead":
        return "Dead"
    return "Created"


def command(c: Container) -> str:
    args = list(c.cfg.get("Entrypoint") or []) + list(c.cfg.get("Cmd") or [])
    return " ".join(shlex.quote(a) if " " in a else a for a in args)


def ports(c: Container) -> str:
    pub = c.rt.get("ports") or []
    return ", ".join(pub) if isinstance(pub, list) else ""


def ps_row(c: Container, size: str = "") -> dict[str, Any]:
    cmd = command(c)
    return {"ID": c.id[:12], "Image": c.cfg.get("Image", ""), "Command": cmd,
            "CreatedAt": c.created[:19].replace("T", " ") + " +0000 UTC",
            "RunningFor": duration(_since(c.created)) + " ago", "Status": status(c), "State": c.status,
            "Ports": ports(c), "Names": c.name, "Labels": ",".join(f"{k}={v}" for k, v in (c.cfg.get("Labels") or {}).items()),
            "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in c.mounts), "Size": size,
            "Networks": c.host.get("NetworkMode", "")}


def inspect(c: Container, root: str, runroot: str) -> dict[str, Any]:
    d = Dirs(root, runroot, c.id)
    args = list(c.cfg.get("Entrypoint") or []) + list(c.cfg.get("Cmd") or [])
    net = c.host.get("NetworkMode", "none")
    host = {k: v for k, v in c.host.items() if k not in ("Publish", "NetworkAliases")}
    host.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
    mounts = []
    for m in c.mounts:
        mm = {k: m[k] for k in ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation")
              if k in m}
        mounts.append(mm)
    netinfo = c.rt.get("network") or {}
    networks: dict[str, Any] = {}
    if net in ("none", "host"):
        networks[net] = {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": net,
                         "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                         "MacAddress": ""}
    else:
        for name, ep in (netinfo.get("networks") or {}).items():
            networks[name] = ep
    if c.status not in ("running", "paused"):  # as docker: a stopped container holds no address
        networks = {n: dict(ep, EndpointID="", Gateway="", IPAddress="", IPPrefixLen=0, MacAddress="")
                    for n, ep in networks.items()}
        netinfo = {}
    return {
        "Id": c.id, "Created": c.created, "Path": args[0] if args else "", "Args": args[1:],
        "State": {"Status": c.status, "Running": c.status in ("running", "paused"),
                  "Paused": c.status == "paused", "Restarting": c.status == "restarting",
                  "OOMKilled": c.oom_killed, "Dead": c.status == "dead", "Pid": c.pid,
                  "ExitCode": c.exit_code, "Error": c.error, "StartedAt": c.started_at,
                  "FinishedAt": c.finished_at},
        "Image": c.image_id, "ResolvConfPath": str(d.dir / "resolv.conf"),
        "HostnamePath": str(d.dir / "hostname"), "HostsPath": str(d.dir / "hosts"), "LogPath": str(d.log),
        "Name": "/" + c.name, "RestartCount": c.restart_count, "Driver": "overlay2",
        "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": None, "HostConfig": host,
        "GraphDriver": {"Name": "overlay2", "Data": {
            "LowerDir": ":".join(c.config.get("Lowerdirs", [])), "UpperDir": str(d.upper),
            "WorkDir": str(d.work), "MergedDir": ""}},
        "Mounts": mounts, "Config": c.cfg,
        "NetworkSettings": {"Bridge": "", "SandboxID": "", "HairpinMode": False,
                            "Ports": netinfo.get("ports_map") or {}, "SandboxKey": netinfo.get("netns", ""),
                            "IPAddress": netinfo.get("ip", ""), "Gateway": netinfo.get("gateway", ""),
                            "MacAddress": netinfo.get("mac", ""), "Networks": networks},
    }
