"""pallet.network: bridge networks, IPAM, veth plumbing, NAT, published ports, names.

Entry points (import the module you need; this package imports nothing heavy):

- ``pallet.network.endpoint.Endpoints(root)``: ``attach(network, container_id, netns, name=,
  aliases=, publish=, hosts_path=)`` -> Attachment; ``detach(network, container_id)``;
  ``detach_all(container_id)``; ``container_ports(container_id)``; plus everything of
- ``pallet.network.manager.Networks(root)``: ``create``, ``get``, ``ls``, ``inspect``,
  ``remove``, ``prune``, ``ensure_default``.
- ``pallet.network.ports``: ``parse_publish("[IP:][HOST:]CTR[/proto]")``, ``expose_all``.
- ``pallet.network.etcfiles``: ``hosts_content``, ``hostname_content``, ``resolv_conf_content``,
  ``parse_add_host``.

The run path imports only the stdlib (netlink over a raw socket, see ``rtnl``); pyroute2 is
used by ``links_pyroute2`` (the same link operations, for comparison and tools).
"""
from __future__ import annotations
