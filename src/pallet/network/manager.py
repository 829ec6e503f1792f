"""Networks: create, list, inspect, remove, prune; bringing a network's bridge and firewall
up on the host (activation) and down again.

A network is *active* when its bridge exists on the host. Attaching the first container
activates it; the bridge and its rules then stay until ``network rm`` (or ``prune``, which
also deactivates the idle default network) so that each ``run`` pays only for its veth,
not for a bridge and an nft transaction. The firewall is re-rendered from the store on every
change of the active set or of the published ports (see ``firewall``).
"""
from __future__ import annotations

import os
import time

from pallet.errors import Conflict, InvalidArgument, NotFound
from pallet.network.model import (
    DEFAULT_BRIDGE,
    DEFAULT_NETWORK,
    PSEUDO_NETWORKS,
    Endpoint,
    NetworkConfig,
    inspect_network,
    pseudo_network,
)
from pallet.network.store import NetworkStore, validate_name

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re, contextlib, ...) is not imported on the run path
    from collections.abc import Iterable
    from typing import Any


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z"


def _new_id() -> str:
    return os.urandom(32).hex()


def bridge_exists(bridge: str) -> bool:
    return os.path.exists(f"/sys/class/net/{bridge}")


def bridge_mac(net: NetworkConfig) -> str:
    """The MAC pallet gives a network's bridge: derived from the network id, so that the
    device can be told apart from a same-named one of another root or program."""
    return "02:50:" + ":".join(f"{b:02x}" for b in bytes.fromhex(net.id[:8]))


def _enable_forwarding() -> None:
    """Outbound NAT needs IPv4 forwarding; like dockerd and netavark, pallet turns it on (a new
    netns starts with it off) and, like them, leaves it on."""
    path = "/proc/sys/net/ipv4/ip_forward"
    with open(path) as f:
        if f.read().strip() == "1":
            return
    with open(path, "w") as f:
        f.write("1")


def owned(net: NetworkConfig) -> bool:
    """True unless a device named like the network's bridge exists with another MAC."""
    try:
        with open(f"/sys/class/net/{net.bridge}/address") as f:
            return f.read().strip() == bridge_mac(net)
    except FileNotFoundError:
        return True


def check_owned(net: NetworkConfig) -> None:
    if not owned(net):
        raise Conflict(f"device {net.bridge} of network {net.name} exists but is not this network's bridge"
                       " (another pallet root or program made it)")


class Networks:
    """Network operations on one pallet root. Mutations take the store lock."""

    def __init__(self, root: str | os.PathLike[str], runroot: str | os.PathLike[str] | None = None) -> None:
        """ROOT holds network configs; RUNROOT (default ROOT/run) the endpoints (run state)."""
        self.store = NetworkStore(root, runroot if runroot is not None else os.path.join(root, "run"))

    # lookups ---------------------------------------------------------------------------
    def get(self, name: str) -> NetworkConfig:
        if name == DEFAULT_NETWORK and not self.store.exists(name):
            return self.ensure_default()
        return self.store.get(name)

    def ensure_default(self) -> NetworkConfig:
        """The ``bridge`` network's config, created on first use. Its subnet comes from
        PALLET_BRIDGE_SUBNET, else the first of the default pool free of host routes; its
        device is PALLET_BRIDGE_NAME, else pallet0."""
        if self.store.exists(DEFAULT_NETWORK):
            return self.store.get(DEFAULT_NETWORK)
        with self.store.locked():
            if self.store.exists(DEFAULT_NETWORK):
                return self.store.get(DEFAULT_NETWORK)
            # pallet0 unless a device of that name exists already (another root's): then the
            # first free palletN, as for user networks
            name = os.environ.get("PALLET_BRIDGE_NAME") or (None if bridge_exists(DEFAULT_BRIDGE) else DEFAULT_BRIDGE)
            return self._create(DEFAULT_NETWORK, os.environ.get("PALLET_BRIDGE_SUBNET"), None, False, {},
                                bridge=name)

    def ls(self) -> list[dict[str, Any]]:
        self.ensure_default()
        out = [inspect_network(n, self.store.endpoints(n.name)) for n in self.store.all()]
        return out + [pseudo_network(p) for p in PSEUDO_NETWORKS]

    def inspect(self, name: str) -> dict[str, Any]:
        if name in PSEUDO_NETWORKS:
            return pseudo_network(name)
        net = self.get(name)
        return inspect_network(net, self.store.endpoints(net.name))

    # create ----------------------------------------------------------------------------
    def create(self, name: str, subnet: str | None = None, gateway: str | None = None, internal: bool = False,
               labels: dict[str, str] | None = None, driver: str = "bridge") -> NetworkConfig:
        validate_name(name)
        if driver != "bridge":
            raise InvalidArgument(f"network driver {driver!r} is not supported (only bridge)")
        if name in PSEUDO_NETWORKS or name == DEFAULT_NETWORK:
            raise Conflict(f"network {name} is a predefined network")
        if gateway and not subnet:
            raise InvalidArgument("--gateway needs --subnet")
        from pallet.network import subnets  # not on the run path

        if subnet:  # bad input is reported before anything is made
            subnets.parse_gateway(gateway, subnets.parse_subnet(subnet))
        self.ensure_default()
        with self.store.locked():
            if self.store.exists(name):
                raise Conflict(f"network with name {name} already exists")
            return self._create(name, subnet, gateway, internal, labels or {})

    def _create(self, name: str, subnet: str | None, gateway: str | None, internal: bool,
                labels: dict[str, str], bridge: str | None = None) -> NetworkConfig:
        from pallet.network import subnets

        nets = self.store.all()
        taken = [(n.name, n.subnet) for n in nets]
        routes = subnets.host_routes()
        own = [subnets.parse_subnet(n.subnet) for n in nets if bridge_exists(n.bridge)]
        routes = [r for r in routes if r not in own]
        if subnet:
            net = subnets.parse_subnet(subnet)
            subnets.check_free(net, taken, routes)
        else:
            pool: Iterable[Any] = subnets.default_candidates() if name == DEFAULT_NETWORK else subnets.user_candidates()
            net = subnets.pick(pool, taken, routes)
        gw = subnets.parse_gateway(gateway, net)
        if bridge is None:
            used = {n.bridge for n in nets}
            pfx = os.environ.get("PALLET_BRIDGE_PREFIX") or "pallet"  # user networks: pallet1, pallet2, ...
            bridge = next(f"{pfx}{i}" for i in range(1, 10000)
                          if f"{pfx}{i}" not in used and not bridge_exists(f"{pfx}{i}"))
        cfg = NetworkConfig(name=name, id=_new_id(), created=_now(), bridge=bridge, subnet=str(net),
                            gateway=gw, internal=internal, labels=dict(labels))
        self.store.put(cfg)
        return cfg

    # remove ----------------------------------------------------------------------------
    def remove(self, name: str) -> NetworkConfig:
        if name in PSEUDO_NETWORKS or name == DEFAULT_NETWORK:
            raise Conflict(f"{name} is a pre-defined network and cannot be removed")
        net = self.store.get(name)
        with self.store.locked():
            eps = self.reap_stale(net)
            if eps:
                names = ", ".join(ep.name or cid[:12] for cid, ep in sorted(eps.items()))
                raise Conflict(f"network {net.name} is in use by container(s): {names}")
            self._deactivate(net)
            self.store.delete(net.name)
        return net

    def prune(self) -> list[str]:
        """Remove every unused user network; also take down the idle default bridge."""
        removed = []
        with self.store.locked():
            for net in self.store.all():
                if self.reap_stale(net):
                    continue
                self._deactivate(net, render=False)
                if net.name != DEFAULT_NETWORK:
                    self.store.delete(net.name)
                    removed.append(net.name)
            # once, and even when no bridge was up: rules whose bridge vanished (deleted by hand,
            # or through another path to this root) are removed here rather than kept forever
            self.apply_firewall(forward_changed=True)
        return removed

    def reap_stale(self, net: NetworkConfig, grace: float = 30.0) -> dict[str, Endpoint]:
        """Drop records of endpoints whose host veth is gone (their netns died without a
        teardown: a killed engine, a crash) and return the live ones. Lock held. Records
        younger than GRACE seconds are kept: their veth may be being made right now."""
        state = self.store.alloc_state(net.name)
        eps = {cid: Endpoint.from_json(d) for cid, d in state.get("endpoints", {}).items()}
        now = time.time()
        stale = [cid for cid, ep in eps.items()
                 if ep.veth and now - ep.since > grace and not bridge_exists(ep.veth)]
        if stale:
            for cid in stale:
                del state["endpoints"][cid]
                del eps[cid]
            self.store.put_alloc_state(net.name, state)
            if bridge_exists(net.bridge):
                self.apply_firewall(forward_changed=False)
        return eps

    # host state ------------------------------------------------------------------------
    def active(self) -> list[NetworkConfig]:
        return [n for n in self.store.all() if bridge_exists(n.bridge) and owned(n)]

    def apply_firewall(self, forward_changed: bool, extra: NetworkConfig | None = None,
                       without: str | None = None) -> None:
        """Render the firewall from the store (caller holds the lock)."""
        from pallet.network import firewall  # subprocess + shutil: only when rules change

        nets = [n for n in self.active() if n.name != without]
        if extra is not None and all(n.name != extra.name for n in nets):
            nets.append(extra)
        pubs = [firewall.Published(p, ep.ip) for n in nets for ep in self.store.endpoints(n.name).values()
                for p in ep.ports]
        firewall.apply(nets, pubs, forward_changed, firewall.names_for(self.store.root))

    def activate(self, net: NetworkConfig) -> None:
        """Create the bridge (gateway address, up, route_localnet) and its rules. Lock held.
        On failure nothing of it remains."""
        if bridge_exists(net.bridge):
            return
        from pallet.network import ipv4, links, subnets

        # the config may be older than another root's or program's network that took the
        # subnet meanwhile (this bridge is down, so any route into it is someone else's):
        # two bridges with one subnet would break both, so refuse with nothing made
        try:
            subnets.check_free(subnets.parse_subnet(net.subnet), (), subnets.host_routes())
        except Conflict as e:
            raise Conflict(f"network {net.name} cannot be brought up: {e} (in use on the host by another "
                           f"network)") from None
        mac = bridge_mac(net)
        be = links.backend()
        # raises with nothing made (EEXIST included: then the bridge is not ours to delete)
        be.bridge_create(net.bridge, mac, net.mtu, net.gateway, net.prefixlen, ipv4.broadcast(net.subnet))
        try:
            with open(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet", "w") as f:
                f.write("1")
            if not net.internal:
                _enable_forwarding()
            self.apply_firewall(forward_changed=True, extra=net)
        except BaseException:
            be.link_delete(net.bridge)
            try:
                self.apply_firewall(forward_changed=True)
            except Exception:
                pass
            raise

    def _deactivate(self, net: NetworkConfig, render: bool = True) -> None:
        """Delete NET's bridge if it is up and ours (a same-named device of another root or
        program is left alone), then, with RENDER, re-render the firewall without NET. Lock held.

        The rules are re-rendered even when the bridge is already gone: they are a function of
        the active set, and a bridge that vanished without its rules (a crash between the two
        steps, ``ip link del``) must not leave this root's table and PALLET-FORWARD chain
        behind for good. Idempotent."""
        if bridge_exists(net.bridge) and owned(net):
            from pallet.network import links

            links.backend().link_delete(net.bridge)
        if render:
            self.apply_firewall(forward_changed=True, without=net.name)

    def endpoints(self, name: str) -> dict[str, Endpoint]:
        return self.store.endpoints(self.get(name).name)


def not_found_container(name: str) -> NotFound:
    return NotFound(f"no such container: {name}")
