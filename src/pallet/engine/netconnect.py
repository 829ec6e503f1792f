"""``network connect`` / ``network disconnect`` on a running container (issue 7).

The container's netns is the file ``netwire`` pinned at start (``rt.network.netns``); the
interface work is ``pallet.network.api.connect``/``disconnect``; the container record's
``rt.network.networks`` is updated in the same guarded way as every state write (only while
the container is running or paused), so ``inspect`` and the teardown at exit see the change.
"""
from __future__ import annotations

import json
from typing import Any

from pallet.engine.containers import Container
from pallet.errors import Conflict

_LIVE = ("running", "paused")


def _netns(c: Container) -> tuple[str, dict[str, Any]]:
    mode = c.host.get("NetworkMode") or "none"
    if mode in ("host", "none") or mode.startswith("container:"):
        raise Conflict(f"container {c.name} uses --network {mode}: it cannot be connected to or disconnected"
                       " from other networks")
    if c.status not in _LIVE:
        raise Conflict(f"container {c.name} is not running")
    info = dict(c.rt.get("network") or {})
    if not info.get("netns"):
        raise Conflict(f"container {c.name} has no network namespace to connect")
    return info["netns"], info


def _save(conn: Any, c: Container, info: dict[str, Any]) -> None:
    rt = dict(c.rt)
    rt["network"] = info
    with conn:
        cur = conn.execute(f"UPDATE containers SET rt=? WHERE id=? AND status IN ({','.join('?' * len(_LIVE))})",
                           (json.dumps(rt), c.id, *_LIVE))
    if cur.rowcount != 1:
        raise Conflict(f"container {c.name} stopped meanwhile")


def connect(s: Any, network: str, ref: str, aliases: list[str], ip: str | None) -> None:
    from pallet.network import api

    c = s.get(ref)
    ns, info = _netns(c)
    nets = dict(info.get("networks") or {})
    settings = api.connect(s.root, s.runroot, c.id, ns, network, name=c.name, aliases=aliases, ip=ip,
                           hosts_path=str(s.dirs(c).dir / "hosts"))
    name = api.resolve_name(s.root, s.runroot, network)
    nets[name] = settings
    info["networks"] = nets
    try:
        _save(s.conn, c, info)
    except BaseException:
        api.disconnect(s.root, s.runroot, c.id, name)
        raise


def disconnect(s: Any, network: str, ref: str) -> None:
    from pallet.network import api

    c = s.get(ref)
    _ns, info = _netns(c)
    name = api.resolve_name(s.root, s.runroot, network)
    api.disconnect(s.root, s.runroot, c.id, name)
    nets = dict(info.get("networks") or {})
    nets.pop(name, None)
    info["networks"] = nets
    _save(s.conn, c, info)
