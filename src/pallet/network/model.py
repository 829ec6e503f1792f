"""Network values: a network's configuration, an endpoint (one container on one network) and
a published port. Named tuples with JSON (de)serialisers; no I/O here.

They are ``collections.namedtuple`` subclasses rather than frozen dataclasses or
``typing.NamedTuple`` because they are defined on the run path: a frozen dataclass costs ~3 ms
to define here, and ``typing`` (with re, contextlib, ...) ~10-16 ms to import; ``collections``
is already loaded there (sqlite3 imports it). Type checkers see the ``typing.NamedTuple``
definitions under ``TYPE_CHECKING`` with the same fields.

The on-disk JSON uses these field names; ``inspect_network`` renders the Docker Engine API
shape (``GET /networks/{id}``: Name, Id, Created, Scope, Driver, IPAM.Config, Internal,
Containers, Options, Labels).
"""
from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing imports re, contextlib, ...: not on the run path
    from typing import Any, NamedTuple

    class _PortMapping(NamedTuple):
        host_port: int
        container_port: int
        proto: str = "tcp"
        host_ip: str = ""

    class _NetworkConfig(NamedTuple):
        name: str
        id: str
        created: str
        bridge: str
        subnet: str
        gateway: str
        driver: str = "bridge"
        internal: bool = False
        labels: dict[str, str] | None = None
        mtu: int = 1500

    class _Endpoint(NamedTuple):
        container_id: str
        endpoint_id: str
        ip: str
        mac: str
        ifname: str = "eth0"
        veth: str = ""
        name: str = ""
        aliases: tuple[str, ...] = ()
        ports: tuple[PortMapping, ...] = ()
        hosts_path: str = ""
        since: float = 0.0
else:
    _PortMapping = namedtuple("_PortMapping", "host_port container_port proto host_ip", defaults=("tcp", ""))
    _NetworkConfig = namedtuple("_NetworkConfig", "name id created bridge subnet gateway driver internal labels mtu",
                                defaults=("bridge", False, None, 1500))
    _Endpoint = namedtuple("_Endpoint", "container_id endpoint_id ip mac ifname veth name aliases ports hosts_path"
                           " since", defaults=("eth0", "", "", (), (), "", 0.0))

DEFAULT_NETWORK = "bridge"
DEFAULT_BRIDGE = "pallet0"
PSEUDO_NETWORKS = ("host", "none")  # docker lists them; they have no config and no bridge
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"


class PortMapping(_PortMapping):
    """HOST_IP:HOST_PORT -> CONTAINER_PORT/PROTO. host_ip "" means every host address."""

    __slots__ = ()

    def key(self) -> tuple[str, int, str]:
        return (self.host_ip, self.host_port, self.proto)

    def __str__(self) -> str:
        return f"{self.container_port}/{self.proto} -> {self.host_ip or '0.0.0.0'}:{self.host_port}"


class NetworkConfig(_NetworkConfig):
    __slots__ = ()

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.partition("/")[2])

    def to_json(self) -> dict[str, Any]:
        d = self._asdict()
        d["labels"] = dict(self.labels or {})
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NetworkConfig:
        return cls(**{k: d[k] for k in cls._fields if k in d})


class Endpoint(_Endpoint):
    """One container's interface on one network. ``veth`` is the host-side link name.
    ``since``: time.time() at attach (stale-record reaping spares young ones)."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        d = self._asdict()
        d["aliases"] = list(self.aliases)
        d["ports"] = [p._asdict() for p in self.ports]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Endpoint:
        d = dict(d)
        d["aliases"] = tuple(d.get("aliases", ()))
        d["ports"] = tuple(PortMapping(**p) for p in d.get("ports", ()))
        return cls(**{k: d[k] for k in cls._fields if k in d})


def inspect_network(net: NetworkConfig, endpoints: dict[str, Endpoint]) -> dict[str, Any]:
    """The Docker Engine API's network object (what ``docker network inspect`` prints)."""
    containers = {
        cid: {"Name": ep.name, "EndpointID": ep.endpoint_id, "MacAddress": ep.mac,
              "IPv4Address": f"{ep.ip}/{net.prefixlen}", "IPv6Address": ""}
        for cid, ep in sorted(endpoints.items())
    }
    return {
        "Name": net.name, "Id": net.id, "Created": net.created, "Scope": "local", "Driver": net.driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": net.subnet, "Gateway": net.gateway}]},
        "Internal": net.internal, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
        "ConfigOnly": False, "Containers": containers,
        "Options": {BRIDGE_NAME_OPTION: net.bridge, "com.docker.network.driver.mtu": str(net.mtu)},
        "Labels": dict(net.labels or {}),
    }


def pseudo_network(name: str) -> dict[str, Any]:
    """``host`` and ``none`` as docker shows them (driver host / null, no IPAM config)."""
    return {"Name": name, "Id": ("0" * 63 + ("1" if name == "host" else "2")), "Created": "",
            "Scope": "local", "Driver": "host" if name == "host" else "null", "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": []}, "Internal": False,
            "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": {}, "Options": {}, "Labels": {}}
