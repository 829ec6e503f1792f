"""Networking around a container's start and exit, through ``pallet.network.api`` (issue 7).

``none``: a new, empty netns made by the runtime; ``host``: no netns; ``container:X``: join X's
netns by path; ``bridge`` or a user network: an empty netns bind-mounted on a file, attached
(veth, address, ports) before the runtime starts the container in it, torn down after exit.
``Wired.keep`` (the port reservation) must stay open while the container runs: the waiter owns it.
"""
from __future__ import annotations

from pallet.engine.containers import Container, Dirs
from pallet.errors import Conflict, InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    from typing import Any

BUILTIN = ("none", "host")


class Wired:
    """(netns path or None, port reservation to keep open, network info). A plain class:
    ``typing.NamedTuple`` would import typing (and re) on the run path."""

    __slots__ = ("netns", "keep", "info")

    def __init__(self, netns: str | None, keep: Any, info: dict[str, Any]) -> None:
        self.netns, self.keep, self.info = netns, keep, info


def default_network() -> str:
    import os

    return os.environ.get("PALLET_DEFAULT_NETWORK", "bridge")


def validate(conn: Any, root: str, runroot: str, mode: str) -> None:
    """At create: the network must exist (``bridge`` is made on first use)."""
    if mode in BUILTIN or mode == "bridge":
        return
    if mode.startswith("container:"):
        from pallet.engine import containers

        containers.get(conn, mode.split(":", 1)[1])
        return
    from pallet.network.manager import Networks

    try:
        Networks(root, runroot).get(mode)
    except NotFound:
        raise NotFound(f"network {mode} not found") from None


def setup(store: Any, conn: Any, c: Container, dirs: Dirs) -> Wired:
    mode = c.host.get("NetworkMode") or "none"
    if mode in BUILTIN:
        return Wired(None, None, {})
    if mode.startswith("container:"):
        from pallet.engine import containers, state

        other = containers.get(conn, mode.split(":", 1)[1])
        if other.status != "running" or not state.alive(other.pid, int(other.rt.get("start_time", 0) or 0)):
            raise Conflict(f"cannot join network of a non running container: {other.name}")
        return Wired(f"/proc/{other.pid}/ns/net", None, {"container": other.id})
    from pallet.network import api

    root, runroot = str(store.paths.root), str(store.paths.runroot)
    ns = api.netns_path(runroot, c.id)
    api.remove_netns(ns)  # a leftover of a crash: idempotent
    api.create_netns(ns)
    try:
        exposed = list((c.cfg.get("ExposedPorts") or {}).keys())
        s = api.setup(root, runroot, c.id, ns, network=mode, name=c.name,
                      aliases=c.host.get("NetworkAliases") or [], publish=c.host.get("Publish") or [],
                      publish_all=bool(c.host.get("PublishAllPorts")), exposed=exposed,
                      hosts_path=str(dirs.dir / "hosts"))
    except BaseException:
        try:
            api.remove_netns(ns)  # first: the netns must go even if the network is unusable
        finally:
            try:
                api.teardown(root, runroot, c.id, None, networks=[mode])
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
        raise
    return Wired(ns, s.reservation, s.info)


def after_hosts_written(store: Any, c: Container, w: Wired) -> None:
    if w.keep is not None:
        from pallet.network import api

        api.refresh_hosts(str(store.paths.root), str(store.paths.runroot), c.id)


def teardown(root: str, runroot: str, cid: str, info: dict[str, Any]) -> None:
    """Idempotent; a no-op for none/host/container:X."""
    if not info or not info.get("netns"):
        return
    from pallet.network import api

    api.teardown(root, runroot, cid, info["netns"], networks=list((info.get("networks") or {}).keys()))


def parse_mode(value: str | None) -> str:
    mode = value or default_network()
    if mode == "default":
        mode = "bridge"
    if mode.startswith("container:") and not mode.split(":", 1)[1]:
        raise InvalidArgument("--network container: needs a container name or ID")
    return mode
