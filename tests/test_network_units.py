"""Network pieces without the kernel: -p parsing, IPAM, subnets, firewall rendering, the
files docker writes into a container, and the store."""
from __future__ import annotations

from pathlib import Path

import pytest

from pallet.errors import Conflict, InvalidArgument, NotFound, Unavailable
from pallet.network import etcfiles, firewall, ipam, subnets
from pallet.network.model import Endpoint, NetworkConfig, PortMapping, inspect_network
from pallet.network.ports import Reservation, claim, expose_all, parse_publish
from pallet.network.store import NetworkStore

NET = NetworkConfig(name="n", id="ab" * 32, created="", bridge="pallet9", subnet="10.9.0.0/29", gateway="10.9.0.1",
                    labels={})


@pytest.mark.parametrize("spec,want", [
    ("80", PortMapping(0, 80, "tcp", "")),
    ("8080:80", PortMapping(8080, 80, "tcp", "")),
    ("127.0.0.1:8080:80/udp", PortMapping(8080, 80, "udp", "127.0.0.1")),
    ("127.0.0.1::80", PortMapping(0, 80, "tcp", "127.0.0.1")),
    ("0.0.0.0:53:53/udp", PortMapping(53, 53, "udp", "")),
])
def test_parse_publish(spec: str, want: PortMapping) -> None:
    assert parse_publish(spec) == want


@pytest.mark.parametrize("spec", ["", "x", "70000", "80/sctp", "1.2.3:80:80", "8000-8001:80-81", "::1:80:80", "0:80"])
def test_parse_publish_rejects(spec: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_publish(spec)


def test_expose_all() -> None:
    assert expose_all(["80/tcp", "53/udp"]) == [PortMapping(0, 80, "tcp"), PortMapping(0, 53, "udp")]


def test_claim_picks_free_and_refuses_taken() -> None:
    res = Reservation()
    try:
        (m,) = claim([PortMapping(0, 80, "tcp", "127.0.0.1")], [], res)
        assert m.host_port > 0 and len(res.sockets) == 1
        with pytest.raises(Conflict, match="already published"):
            claim([PortMapping(m.host_port, 81)], [m], Reservation())
        with pytest.raises(Conflict, match="not available"):  # held by RES
            claim([PortMapping(m.host_port, 81, "tcp", "127.0.0.1")], [], Reservation())
    finally:
        res.close()


def test_ipam_round_robin_and_exhaustion() -> None:
    state: dict = {"endpoints": {}}
    got = []
    for i in range(5):  # /29: .1 gateway, .2-.6 hosts
        ip = ipam.allocate(NET, state)
        state["endpoints"][str(i)] = {"ip": ip}
        got.append(ip)
    assert got == ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
    with pytest.raises(Unavailable, match="no free address"):
        ipam.allocate(NET, state)
    del state["endpoints"]["1"]  # 10.9.0.3 released: the only free one, so reused
    assert ipam.allocate(NET, state) == "10.9.0.3"
    with pytest.raises(Conflict):
        ipam.allocate(NET, state, "10.9.0.2")
    with pytest.raises(InvalidArgument):
        ipam.allocate(NET, state, "10.9.0.7")
    assert ipam.mac_for("10.9.0.3") == "02:50:0a:09:00:03"


def test_ipam_does_not_reuse_a_just_released_address() -> None:
    state: dict = {"endpoints": {}}
    a = ipam.allocate(NET, state)
    state["endpoints"]["a"] = {"ip": a}
    del state["endpoints"]["a"]
    assert ipam.allocate(NET, state) != a


def test_subnets() -> None:
    assert all(r.prefixlen > 0 for r in subnets.host_routes())
    routes = [subnets.parse_subnet("10.88.0.0/16")]
    assert str(subnets.pick(subnets.DEFAULT_POOL, [], routes)) == "10.87.0.0/16"
    assert str(subnets.pick(subnets.user_candidates(), [("a", "10.89.0.0/24")], [])) == "10.89.1.0/24"
    with pytest.raises(Conflict, match="overlaps subnet 10.89.0.0/24 of network a"):
        subnets.check_free(subnets.parse_subnet("10.89.0.0/16"), [("a", "10.89.0.0/24")], [])
    for bad in ("10.0.0.1/24", "10.0.0.0/31", "127.0.0.0/8", "fd00::/64", "x"):
        with pytest.raises(InvalidArgument):
            subnets.parse_subnet(bad)
    sub = subnets.parse_subnet("10.5.0.0/24")
    assert subnets.parse_gateway(None, sub) == "10.5.0.1"
    assert subnets.parse_gateway("10.5.0.254", sub) == "10.5.0.254"
    for bad in ("10.5.0.0", "10.5.0.255", "10.6.0.1", "nope"):
        with pytest.raises(InvalidArgument):
            subnets.parse_gateway(bad, sub)


def test_render_nft() -> None:
    assert firewall.render_nft([], []) == "table ip pallet\ndelete table ip pallet\n"
    internal = NET._replace(name="i", bridge="pallet8", subnet="10.8.0.0/24", internal=True)
    text = firewall.render_nft([NET, internal], [
        firewall.Published(PortMapping(8080, 80), "10.9.0.2"),
        firewall.Published(PortMapping(53, 53, "udp", "127.0.0.1"), "10.9.0.3")])
    assert 'elements = { "pallet9", "pallet8" }' in text
    assert "8080 : 10.9.0.2 . 80" in text and "127.0.0.1 . 53 : 10.9.0.3 . 53" in text
    assert 'ip saddr 10.9.0.0/29 oifname != "pallet9" masquerade' in text
    assert 'ip saddr 10.8.0.0/24 oifname != "pallet8" masquerade' not in text  # internal: no NAT out
    assert 'iifname "pallet8" oifname != "pallet8" drop' in text
    assert 'oifname "pallet9" iifname @bridges iifname != "pallet9" drop' in text
    ipt = firewall.render_iptables([NET, internal], [firewall.Published(PortMapping(8080, 80), "10.9.0.2")], True)
    assert "-A PALLET-FORWARD -i pallet8 -o pallet9 -j DROP" in ipt
    assert "--dport 8080 -j DNAT --to-destination 10.9.0.2:80" in ipt


def test_hosts_hostname_resolv(tmp_path: Path) -> None:
    text = etcfiles.hosts_content("abc", "10.88.0.2", extra=[etcfiles.parse_add_host("db:10.0.0.5")])
    assert text.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    assert text.endswith("10.0.0.5\tdb\n10.88.0.2\tabc\n")  # no peers: docker's file, no pallet section
    hosts = tmp_path / "hosts"
    hosts.write_text(text)
    ino = hosts.stat().st_ino
    etcfiles.rewrite_peers(str(hosts), [("10.89.0.3", ["web", "www"])])
    assert hosts.read_text().endswith(etcfiles.MARKER + "10.89.0.3\tweb www\n")
    etcfiles.rewrite_peers(str(hosts), [])
    assert hosts.read_text() == text and hosts.stat().st_ino == ino  # in place: bind mounts see it
    assert etcfiles.parse_add_host("gw:host-gateway", "10.88.0.1") == ("gw", "10.88.0.1")
    for bad in ("nocolon", "x:notanip", ":1.2.3.4"):
        with pytest.raises(InvalidArgument):
            etcfiles.parse_add_host(bad)
    assert etcfiles.hostname_content("abc") == "abc\n"
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.53\noptions edns0\nsearch example.com\n")
    assert etcfiles.resolv_conf_content(host_path=str(host)) == \
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch example.com\noptions edns0\n"
    host.write_text("nameserver 192.0.2.1\nnameserver 127.0.0.1\n")
    assert etcfiles.resolv_conf_content(host_path=str(host)) == "nameserver 192.0.2.1\n"
    assert etcfiles.resolv_conf_content(["1.1.1.1"], ["a.b"], ["ndots:2"], str(host)) == \
        "search a.b\nnameserver 1.1.1.1\noptions ndots:2\n"  # docker's order with flags
    with pytest.raises(InvalidArgument):
        etcfiles.resolv_conf_content(["dns.example"])


def test_store_and_inspect(tmp_path: Path) -> None:
    st = NetworkStore(tmp_path / "root", tmp_path / "run")
    with st.locked():
        st.put(NET)
        ep = Endpoint("c" * 64, "e" * 64, "10.9.0.2", "02:50:0a:09:00:02", name="web", aliases=("w",),
                      ports=(PortMapping(8080, 80),))
        st.put_alloc_state("n", {"next": "10.9.0.3", "endpoints": {ep.container_id: ep.to_json()}})
    assert st.get("n") == NET and st.get("abab") == NET  # by name, by id prefix
    assert st.endpoints("n") == {ep.container_id: ep}
    assert st.endpoints_of("c" * 64) == [(NET, ep)]
    doc = inspect_network(NET, st.endpoints("n"))
    assert doc["IPAM"]["Config"] == [{"Subnet": "10.9.0.0/29", "Gateway": "10.9.0.1"}]
    assert doc["Containers"]["c" * 64]["IPv4Address"] == "10.9.0.2/29"
    with pytest.raises(NotFound):
        st.get("zz")
    st.delete("n")
    assert st.names() == []


def test_ipv4_helpers() -> None:
    from pallet.network import ipv4

    assert ipv4.to_int("10.88.0.1") == 0x0A580001 and ipv4.from_int(0x0A580001) == "10.88.0.1"
    assert ipv4.cidr("10.88.3.0/16") == (0x0A580000, 16)
    assert ipv4.broadcast("10.88.0.0/16") == "10.88.255.255" and ipv4.prefixlen("10.9.0.0/29") == 29
    for bad in ("1.2.3", "1.2.3.256", "a.b.c.d", "1.2.3.4.5", "", "01234.1.1.1"):
        assert not ipv4.is_v4(bad)
