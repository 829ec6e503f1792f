"""Attaching a container to a network and detaching it: what the engine calls around a
container's start and stop (and ``network connect``/``disconnect`` on a running one).

The container is named by its network namespace: a pid (its ``/proc/PID/ns/net``) or a
netns file (``/run/netns/NAME``, a bind-mounted ``/proc/PID/ns/net``). ``attach`` works in
three steps, so that concurrent starts hold the store lock only for the bookkeeping:

1. under the lock: allocate the address, claim the host ports, record the endpoint,
   activate the network (bridge + firewall) if needed, re-render the firewall if ports
   were published, rewrite peers' hosts files;
2. without the lock: one veth pair, the peer born inside the container's netns under its
   final name (eth0), its address, lo up, the default route; a few netlink messages;
3. on any failure: undo 2 and 1 (link, record, rules, reservations), then re-raise.
"""
from __future__ import annotations

import os
import time
from collections import namedtuple

from pallet.errors import Conflict, NotFound, OSFailure
from pallet.network import ipam, ipv4, links, ports
from pallet.network.manager import DEFAULT_NETWORK, Networks, check_owned
from pallet.network.model import Endpoint, NetworkConfig, PortMapping

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re, contextlib, ...) is not imported on the run path
    from collections.abc import Iterable


class Attachment(namedtuple("Attachment", "network endpoint reservation")):
    """(network: NetworkConfig, endpoint: Endpoint, reservation: ports.Reservation).
    ``collections.namedtuple``: ``typing.NamedTuple`` would import typing on the run path."""

    __slots__ = ()


def _veth_name(endpoint_id: str) -> str:
    return f"veth{endpoint_id[:11]}"  # 15 chars: IFNAMSIZ - 1


def _next_ifname(existing: Iterable[str]) -> str:
    used = set(existing)
    return next(f"eth{i}" for i in range(1000) if f"eth{i}" not in used)


class Endpoints(Networks):
    def attach(self, network: str, container_id: str, netns: str | int, *, name: str = "",
               aliases: Iterable[str] = (), publish: Iterable[PortMapping] = (), hosts_path: str = "",
               ip: str | None = None, ifname: str | None = None, default_route: bool | None = None
               ) -> Attachment:
        """Connect the container (CONTAINER_ID, netns NETNS) to NETWORK. Returns the endpoint
        and a port Reservation the caller should keep open while the container runs (close
        it after ``detach``). Raises NotFound/Conflict/InvalidArgument with nothing made."""
        net = self.get(network)
        res = ports.Reservation()
        if ifname is None or default_route is None:  # a scan of every network: skipped by api.setup
            mine = self.store.endpoints_of(container_id)
            if ifname is None:
                ifname = _next_ifname(ep.ifname for _, ep in mine)
            if default_route is None:
                default_route = not mine
        default_route = default_route and not net.internal
        eid = os.urandom(32).hex()
        activated = False
        try:
            with self.store.locked():
                net = self.store.get(net.name)  # still there?
                check_owned(net)
                state = self.store.alloc_state(net.name)
                if container_id in state.get("endpoints", {}):
                    raise Conflict(f"container {name or container_id[:12]} is already connected to network"
                                   f" {net.name}")
                addr = ipam.allocate(net, state, ip)
                publish = list(publish)
                taken = [p for n in self.store.all() for e in self.store.endpoints(n.name).values()
                         for p in e.ports] if publish else []
                claimed = ports.claim(publish, taken, res)
                ep = Endpoint(container_id=container_id, endpoint_id=eid, ip=addr, mac=ipam.mac_for(addr),
                              ifname=ifname, veth=_veth_name(eid), name=name, aliases=tuple(aliases),
                              ports=tuple(claimed), hosts_path=hosts_path, since=time.time())
                state.setdefault("endpoints", {})[container_id] = ep.to_json()
                self.store.put_alloc_state(net.name, state)
                try:
                    activated = not os.path.exists(f"/sys/class/net/{net.bridge}")
                    if activated:
                        self.activate(net)  # renders the firewall, ports included
                    if claimed and not activated:
                        self.apply_firewall(forward_changed=False)
                    self._update_hosts(net)
                except BaseException:
                    self._forget(net, container_id)
                    if activated:
                        self._undo_activation(net)
                    raise
        except BaseException:
            res.close()
            raise
        try:
            self._plumb(net, ep, netns, default_route)
        except BaseException:
            links.backend().link_delete(ep.veth)
            with self.store.locked():
                self._forget(net, container_id)
                if activated:
                    self._undo_activation(net)
            res.close()
            raise
        return Attachment(net, ep, res)

    def _undo_activation(self, net: NetworkConfig) -> None:
        """A failed attach that brought NET up takes it down again (bridge and rules) unless
        another endpoint joined meanwhile: a failure leaves nothing of itself. Lock held; best
        effort, so that the attach's own error is the one raised."""
        try:
            if not self.store.endpoints(net.name):
                self._deactivate(net)
        except Exception:  # noqa: BLE001 - the caller re-raises the original failure
            pass

    def _plumb(self, net: NetworkConfig, ep: Endpoint, netns: str | int, default_route: bool) -> None:
        links.backend().plug(net.bridge, ep.veth, ep.ifname, netns, net.mtu, ep.mac, ep.ip, net.prefixlen,
                             ipv4.broadcast(net.subnet), net.gateway if default_route else None)

    def _forget(self, net: NetworkConfig, container_id: str) -> Endpoint | None:
        """Drop the record (lock held); re-render rules if it published ports; fix hosts files."""
        state = self.store.alloc_state(net.name)
        raw = state.get("endpoints", {}).pop(container_id, None)
        if raw is None:
            return None
        self.store.put_alloc_state(net.name, state)
        ep = Endpoint.from_json(raw)
        if ep.ports and os.path.exists(f"/sys/class/net/{net.bridge}"):
            self.apply_firewall(forward_changed=False)
        self._update_hosts(net)
        if ep.hosts_path and net.name != DEFAULT_NETWORK:
            from pallet.network import etcfiles

            etcfiles.rewrite_peers(ep.hosts_path, self.peers_of(container_id))
        return ep

    def detach(self, network: str, container_id: str, unplug: bool = True) -> Endpoint:
        """Disconnect: delete the veth, release the address and ports. Raises NotFound if
        the container is not on the network.

        UNPLUG=False skips deleting the veth: use it when the container's netns is dead or
        dying (the container exited and nothing holds its netns), since the kernel then
        destroys the pair itself, off the caller's path; an explicit RTM_DELLINK waits for
        RCU grace periods (~25-30 ms here). Round-robin IPAM keeps the released address from
        being handed out again while that happens."""
        net = self.get(network)
        ep = self.store.endpoints(net.name).get(container_id)
        if ep is None:
            raise NotFound(f"container {container_id[:12]} is not connected to network {net.name}")
        if unplug and os.path.exists(f"/sys/class/net/{ep.veth}"):
            try:
                links.backend().link_delete(ep.veth)
            except OSFailure:
                pass  # the netns died meanwhile and took the pair with it
        with self.store.locked():
            self._forget(net, container_id)
        return ep

    def detach_all(self, container_id: str, unplug: bool = True) -> list[str]:
        """Detach from every network (the engine's cleanup at container stop/rm). Idempotent.
        See ``detach`` for UNPLUG."""
        out = []
        for net, _ep in self.store.endpoints_of(container_id):
            try:
                self.detach(net.name, container_id, unplug=unplug)
                out.append(net.name)
            except NotFound:
                pass
        return out

    def container_ports(self, container_id: str) -> list[PortMapping]:
        """What ``pallet port CONTAINER`` prints (every network's published ports)."""
        return [p for _net, ep in self.store.endpoints_of(container_id) for p in ep.ports]

    def container_endpoints(self, container_id: str) -> list[tuple[NetworkConfig, Endpoint]]:
        return self.store.endpoints_of(container_id)

    # names -----------------------------------------------------------------------------
    def peers_of(self, container_id: str) -> list[tuple[str, list[str]]]:
        """(ip, names) of everyone sharing a user network with the container, itself included."""
        out: list[tuple[str, list[str]]] = []
        for net in self.store.all():
            if net.name == DEFAULT_NETWORK:
                continue  # docker's default bridge has no name resolution
            eps = self.store.endpoints(net.name)
            if container_id not in eps:
                continue
            for cid, ep in sorted(eps.items()):
                names = [n for n in (ep.name, *ep.aliases, cid[:12]) if n]
                out.append((ep.ip, list(dict.fromkeys(names))))
        return out

    def refresh_hosts(self, container_id: str, networks: Iterable[str] | None = None) -> None:
        """Rewrite the peers section of this container's own hosts file(s). NETWORKS (the
        container's networks, if the caller knows them) saves a scan; the default bridge has
        no peers section to fill."""
        if networks is not None:
            networks = [n for n in networks if n != DEFAULT_NETWORK]
            if not networks:
                return
        elif all(n == DEFAULT_NETWORK for n in self.store.names()):
            return  # no user network exists: nothing to resolve (one listdir)
        from pallet.network import etcfiles

        for _net, ep in self.store.endpoints_of(container_id):
            if ep.hosts_path:
                etcfiles.rewrite_peers(ep.hosts_path, self.peers_of(container_id))

    def _update_hosts(self, net: NetworkConfig) -> None:
        if net.name == DEFAULT_NETWORK:
            return
        from pallet.network import etcfiles

        for cid, ep in self.store.endpoints(net.name).items():
            if ep.hosts_path:
                etcfiles.rewrite_peers(ep.hosts_path, self.peers_of(cid))
