"""What the engine calls around a container's start and stop (one module, stdlib-only imports).

Order for ``run``/``start`` with ``--network bridge|NETWORK`` (host, none and container:X need
nothing from here)::

    ns = api.netns_path(runroot, cid)
    api.create_netns(ns)                              # an empty netns, bind-mounted on a file
    s = api.setup(root, runroot, cid, ns, network=..., name=..., aliases=..., publish=[...],
                  publish_all=..., exposed=cfg["ExposedPorts"], hosts_path=str(dirs.dir / "hosts"))
    c.rt["network"] = s.info; c.rt["ports"] = s.info["ports"]
    write /etc/hosts with s.ip (etcfiles.hosts_content), then api.refresh_hosts(root, runroot, cid)
    rt.start(..., netns=ns)                           # the runtime joins the netns by path
    keep s.reservation open while the container runs (it holds the host ports), then close it
    ...
    api.teardown(root, runroot, cid, ns)              # after exit; also on a failed start

``setup`` leaves nothing behind when it raises. ``teardown`` is idempotent and fast: it does
not delete the veth (the kernel destroys it with the netns, off the caller's path) and
only unmounts the netns file.
"""
from __future__ import annotations

import errno
import os
from collections import namedtuple

from pallet.errors import OSFailure
from pallet.network.endpoint import Endpoints
from pallet.network.model import Endpoint, NetworkConfig, PortMapping

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re, contextlib, ...) is not imported on the run path
    from collections.abc import Iterable
    from typing import Any

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2


class Setup(namedtuple("Setup", "ip gateway info reservation")):
    """(ip, gateway, info: the container record's network part (what inspect/ps/port read),
    reservation: the ports.Reservation to keep open while the container runs).
    ``collections.namedtuple``: ``typing.NamedTuple`` would import typing on the run path."""

    __slots__ = ()


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def netns_path(runroot: str | os.PathLike[str], container_id: str) -> str:
    return os.path.join(runroot, "netns", container_id)


def create_netns(path: str) -> None:
    """A new, empty network namespace kept alive by a bind mount on PATH (as ``ip netns add``).
    This thread enters it, pins it, and comes back; other threads are not affected."""
    import ctypes

    libc = _libc()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            os.unlink(path)
            raise OSFailure(err, "unshare(CLONE_NEWNET)", path)
        try:
            if libc.mount(b"/proc/thread-self/ns/net", path.encode(), None, MS_BIND, None) != 0:
                err = ctypes.get_errno()
                os.unlink(path)
                raise OSFailure(err, "mount netns on", path)
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSFailure(ctypes.get_errno(), "setns", "own netns")
    finally:
        os.close(own)


def remove_netns(path: str) -> None:
    """Unmount and delete a netns file (the kernel frees the netns and its veths when the last
    process in it is gone). Idempotent."""
    import ctypes

    if _libc().umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSFailure(err, "umount netns", path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def ports_info(ports: Iterable[PortMapping]) -> tuple[dict[str, Any], list[str]]:
    """docker's NetworkSettings.Ports map and ps' PORTS strings ("0.0.0.0:8080->80/tcp")."""
    pmap: dict[str, Any] = {}
    lines = []
    for p in ports:
        pmap.setdefault(f"{p.container_port}/{p.proto}", []).append(
            {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
        lines.append(f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}/{p.proto}")
    return pmap, lines


def endpoint_settings(net: NetworkConfig, ep: Endpoint) -> dict[str, Any]:
    """docker's NetworkSettings.Networks[NAME] (EndpointSettings)."""
    return {"IPAMConfig": None, "Links": None, "Aliases": list(ep.aliases) or None, "NetworkID": net.id,
            "EndpointID": ep.endpoint_id, "Gateway": net.gateway, "IPAddress": ep.ip,
            "IPPrefixLen": net.prefixlen, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "MacAddress": ep.mac, "DriverOpts": None}


def setup(root: str, runroot: str, container_id: str, netns: str, *, network: str = "bridge", name: str = "",
          aliases: Iterable[str] = (), publish: Iterable[str] = (), publish_all: bool = False,
          exposed: Iterable[str] | None = None, hosts_path: str = "", ip: str | None = None) -> Setup:
    """Attach the container (its netns file NETNS) to NETWORK with its published ports.
    PUBLISH are ``-p`` specs; PUBLISH_ALL (``-P``) adds every EXPOSED port not already given."""
    from pallet.network.ports import expose_all, parse_publish

    wanted = [parse_publish(s) for s in publish]
    if publish_all:
        given = {(w.container_port, w.proto) for w in wanted}
        wanted += [m for m in expose_all(exposed or ()) if (m.container_port, m.proto) not in given]
    eps = Endpoints(root, runroot)
    att = eps.attach(network, container_id, netns, name=name, aliases=aliases, publish=wanted,
                     hosts_path=hosts_path, ip=ip, ifname="eth0", default_route=True)  # a fresh netns
    net, ep = att.network, att.endpoint
    pmap, lines = ports_info(ep.ports)
    info = {"netns": netns, "ip": ep.ip, "gateway": net.gateway, "mac": ep.mac, "prefixlen": net.prefixlen,
            "networks": {net.name: endpoint_settings(net, ep)}, "ports_map": pmap, "ports": lines}
    return Setup(ep.ip, net.gateway, info, att.reservation)


def connect(root: str, runroot: str, container_id: str, netns: str, network: str, *, name: str = "",
            aliases: Iterable[str] = (), ip: str | None = None, hosts_path: str = "") -> dict[str, Any]:
    """``network connect``: one more interface (eth1, ...) in a running container; no default
    route change. Returns the EndpointSettings to merge into ``info["networks"]``."""
    att = Endpoints(root, runroot).attach(network, container_id, netns, name=name, aliases=aliases, ip=ip,
                                          hosts_path=hosts_path)
    att.reservation.close()
    return endpoint_settings(att.network, att.endpoint)


def disconnect(root: str, runroot: str, container_id: str, network: str) -> None:
    """``network disconnect``: remove the interface from the running container now."""
    Endpoints(root, runroot).detach(network, container_id, unplug=True)


def resolve_name(root: str, runroot: str, network: str) -> str:
    """A network's name from its name or id (prefix); NotFound otherwise."""
    return Endpoints(root, runroot).get(network).name


def refresh_hosts(root: str, runroot: str, container_id: str, networks: Iterable[str] | None = None) -> None:
    """Write the peers section of the container's own hosts file (call after writing the file).
    Pass NETWORKS (``info["networks"]`` keys) to skip work: on ``bridge`` alone it is a no-op."""
    Endpoints(root, runroot).refresh_hosts(container_id, networks)


def teardown(root: str, runroot: str, container_id: str, netns: str | None = None,
             networks: Iterable[str] | None = None) -> None:
    """Detach from NETWORKS (the names in ``info["networks"]``; default: look in every
    network) and drop the netns file. Idempotent; safe after a failed setup."""
    from pallet.errors import NotFound

    eps = Endpoints(root, runroot)
    if networks is None:
        eps.detach_all(container_id, unplug=False)
    else:
        for n in networks:
            try:
                eps.detach(n, container_id, unplug=False)
            except NotFound:
                pass
    if netns:
        remove_netns(netns)


def container_ports(root: str, runroot: str, container_id: str) -> list[str]:
    """``pallet port CONTAINER`` lines: ``80/tcp -> 0.0.0.0:8080``."""
    return [str(p) for p in Endpoints(root, runroot).container_ports(container_id)]
