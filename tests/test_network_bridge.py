"""Bridge networks with network namespaces standing in for containers (as root): names,
published ports, isolation, bad input, and the host left exactly as it was."""
from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from network_util import assert_host_as, default_net_env, netnses, snapshot, wait_for

from pallet.errors import Conflict, InvalidArgument, NotFound
from pallet.network import etcfiles
from pallet.network.endpoint import Endpoints
from pallet.network.ports import parse_publish

pytestmark = pytest.mark.privileged
TAG = f"{os.getpid() % 100000}"


@pytest.fixture
def www(tmp_path: Path) -> Path:
    d = tmp_path / "www"
    d.mkdir()
    (d / "index.html").write_text("hello from pallet\n")
    return d


@pytest.fixture
def net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoints]:
    """An Endpoints on a fresh root; asserts the host is as before once everything is gone."""
    for k, v in default_net_env("b").items():
        monkeypatch.setenv(k, v)
    before = snapshot(root=str(tmp_path / "root"))
    eps = Endpoints(tmp_path / "root")
    try:
        yield eps
    finally:
        for n in eps.store.all():
            for cid in list(eps.store.endpoints(n.name)):
                eps.detach(n.name, cid)
        eps.prune()
    assert eps.store.names() == ["bridge"]
    assert_host_as(before, root=str(tmp_path / "root"))


def _hosts(path: str, hostname: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_text(etcfiles.hosts_content(hostname, None))
    return path


def test_two_containers_talk_by_name_and_alias(net: Endpoints, www: Path) -> None:
    net.create(f"app{TAG}")
    with netnses(f"pa{TAG}", f"pb{TAG}") as (a, b):
        net.attach(f"app{TAG}", "a" * 64, a.path, name="web", aliases=["www"], hosts_path=_hosts(a.hosts, "web"))
        net.attach(f"app{TAG}", "b" * 64, b.path, name="client", hosts_path=_hosts(b.hosts, "client"))
        a.httpd(www)
        assert b.wget("http://web/").stdout == "hello from pallet\n"
        assert b.wget("http://www/").stdout == "hello from pallet\n"
        assert "web www" in Path(b.hosts).read_text()
        net.detach(f"app{TAG}", "a" * 64)
        assert "web" not in Path(b.hosts).read_text().split(etcfiles.MARKER)[1]
        assert b.wget("http://web/", timeout=1).returncode != 0
        with pytest.raises(Conflict, match="in use by container"):
            net.remove(f"app{TAG}")
        net.detach(f"app{TAG}", "b" * 64)
        net.remove(f"app{TAG}")


def test_published_port_answers_on_loopback(net: Endpoints, www: Path) -> None:
    with netnses(f"pp{TAG}") as (a,):
        att = net.attach("bridge", "c" * 64, a.path, name="pub",
                         publish=[parse_publish("127.0.0.1::80"), parse_publish("80")])
        try:
            a.httpd(www)
            bound, anyaddr = att.endpoint.ports
            assert bound.host_ip == "127.0.0.1" and anyaddr.host_ip == ""
            for p in (bound, anyaddr):
                with urllib.request.urlopen(f"http://127.0.0.1:{p.host_port}/", timeout=5) as r:
                    assert r.read() == b"hello from pallet\n"
            assert net.container_ports("c" * 64) == [bound, anyaddr]
            # the same host port again: refused, nothing half-made
            before = snapshot(root=str(net.store.root))
            with netnses(f"pq{TAG}") as (b,):
                with pytest.raises(Conflict, match=f"{bound.host_port}"):
                    net.attach("bridge", "d" * 64, b.path, publish=[parse_publish(f"127.0.0.1:{bound.host_port}:80")])
            assert_host_as(before, root=str(net.store.root))
            assert list(net.store.endpoints("bridge")) == ["c" * 64]
        finally:
            att.reservation.close()


def test_host_port_in_use_is_refused(net: Endpoints) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        with netnses(f"pu{TAG}") as (a,):
            before = snapshot(root=str(net.store.root))
            with pytest.raises(Conflict, match=f"127.0.0.1:{port}/tcp is not available"):
                net.attach("bridge", "e" * 64, a.path, publish=[parse_publish(f"127.0.0.1:{port}:80")])
            assert_host_as(before, root=str(net.store.root))
            assert net.store.endpoints("bridge") == {}
    finally:
        s.close()


def test_separate_networks_cannot_talk(net: Endpoints, www: Path) -> None:
    n1, n2 = net.create(f"i1{TAG}"), net.create(f"i2{TAG}")
    with netnses(f"pi{TAG}", f"pj{TAG}", f"pk{TAG}") as (a, b, c):
        ea = net.attach(n1.name, "1" * 64, a.path).endpoint
        net.attach(n2.name, "2" * 64, b.path)
        net.attach(n1.name, "3" * 64, c.path)
        a.httpd(www)
        assert c.wget(f"http://{ea.ip}/").returncode == 0  # same network: reachable
        assert b.wget(f"http://{ea.ip}/", timeout=1).returncode != 0  # other network: dropped
        for cid, n in (("1", n1), ("2", n2), ("3", n1)):
            net.detach(n.name, cid * 64)
        net.remove(n1.name)
        net.remove(n2.name)


def test_bad_input_leaves_nothing(net: Endpoints) -> None:
    net.ensure_default()
    before, names = snapshot(root=str(net.store.root)), net.store.names()
    with pytest.raises(InvalidArgument, match="invalid subnet"):
        net.create(f"x{TAG}", subnet="10.1.2.3/24")
    with pytest.raises(InvalidArgument, match="invalid subnet"):
        net.create(f"x{TAG}", subnet="banana")
    with pytest.raises(Conflict, match="overlaps"):
        net.create(f"x{TAG}", subnet=net.get("bridge").subnet)
    with pytest.raises(InvalidArgument, match="gateway"):
        net.create(f"x{TAG}", subnet="10.201.0.0/24", gateway="10.202.0.1")
    with pytest.raises(NotFound, match="network nosuch not found"):
        net.remove("nosuch")
    with netnses(f"pv{TAG}") as (a,):
        with pytest.raises(NotFound, match="nosuch"):
            net.attach("nosuch", "f" * 64, a.path)
        with pytest.raises(InvalidArgument):
            net.attach("bridge", "f" * 64, a.path, publish=[parse_publish("99999")])
    assert net.store.names() == names
    assert_host_as(before, root=str(net.store.root))


def test_cli_errors_are_one_line(pallet) -> None:  # type: ignore[no-untyped-def]
    for args, msg in ((("network", "rm", "nosuch"), "network nosuch not found"),
                      (("network", "create", "--subnet", "300.1.0.0/16", "x"), "invalid subnet"),
                      (("network", "connect", "bridge", "nosuch"), "such container: nosuch"),
                      (("network", "rm", "bridge"), "pre-defined")):
        r = pallet.fail(*args)
        assert msg in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert "bridge" in pallet("network", "ls").out


def test_a_foreign_device_with_the_bridge_name_is_left_alone(net: Endpoints) -> None:
    import subprocess

    bridge = net.ensure_default().bridge
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)  # another root's, say
    try:
        with netnses(f"pf{TAG}") as (a,):
            with pytest.raises(Conflict, match="not this network's bridge"):
                net.attach("bridge", "f" * 64, a.path)
            assert net.store.endpoints("bridge") == {}
            assert "eth0" not in a.exec("ip", "-br", "link").stdout
        net.prune()
        assert os.path.exists(f"/sys/class/net/{bridge}")  # prune did not take it
    finally:
        subprocess.run(["ip", "link", "del", bridge], check=False)


def test_records_of_dead_netns_are_reaped(net: Endpoints) -> None:
    """A container whose netns died without a teardown (engine killed) holds its address
    only until the next rm/prune: the missing veth proves it gone."""
    n = net.create(f"gc{TAG}")
    with netnses(f"pg{TAG}") as (a,):
        veth = net.attach(n.name, "9" * 64, a.path).endpoint.veth
    # the netns is gone; the kernel takes the veth with it (asynchronously)
    wait_for(lambda: not os.path.exists(f"/sys/class/net/{veth}"), "the kernel to remove the veth")
    with net.store.locked():
        assert list(net.reap_stale(n)) == ["9" * 64]  # young: kept
    with pytest.raises(Conflict, match="in use"):
        net.remove(n.name)
    with net.store.locked():
        assert net.reap_stale(n, grace=0.0) == {}
    assert net.store.endpoints(n.name) == {}
    net.remove(n.name)


def test_published_udp_port(net: Endpoints) -> None:
    import sys

    echo = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 53)); "
            "[s.sendto(b'echo:' + d, a) for d, a in iter(lambda: s.recvfrom(100), None)]")
    with netnses(f"pd{TAG}") as (a,):
        att = net.attach("bridge", "u" * 64, a.path, publish=[parse_publish("127.0.0.1::53/udp")])
        try:
            a.spawn(sys.executable, "-c", echo)
            (p,) = att.endpoint.ports
            assert p.proto == "udp" and p.host_ip == "127.0.0.1"
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.settimeout(0.5)
            got = b""
            for _ in range(40):  # bounded: the server may not be up yet
                c.sendto(b"ping", ("127.0.0.1", p.host_port))
                try:
                    got = c.recv(100)
                    break
                except TimeoutError:
                    continue
            c.close()
            assert got == b"echo:ping"
        finally:
            att.reservation.close()


def test_a_subnet_taken_meanwhile_is_refused_at_activation(net: Endpoints, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A network's config can be older than another root's network that took its subnet while
    it was down: bringing it up then would make two bridges with one subnet. One line instead,
    and nothing made (no bridge, no endpoint, no eth0)."""
    import subprocess

    from pallet.network.firewall import names_for

    mine = net.create(f"late{TAG}")  # config only: its bridge comes with the first container
    monkeypatch.setenv("PALLET_BRIDGE_PREFIX", default_net_env("o")["PALLET_BRIDGE_PREFIX"])
    other = Endpoints(tmp_path / "other")
    theirs = other.create(f"early{TAG}", subnet=mine.subnet)  # free: mine is not on the host
    try:
        with netnses(f"pl{TAG}", f"pm{TAG}") as (a, b):
            other.attach(theirs.name, "e" * 64, a.path)
            with pytest.raises(Conflict, match="cannot be brought up: subnet .* overlaps the host route"):
                net.attach(mine.name, "f" * 64, b.path)
            assert net.store.endpoints(mine.name) == {}
            assert not os.path.exists(f"/sys/class/net/{mine.bridge}")
            assert "eth0" not in b.exec("ip", "-br", "link").stdout
            other.detach(theirs.name, "e" * 64)
        net.remove(mine.name)
    finally:
        for cid in list(other.store.endpoints(theirs.name)):
            other.detach(theirs.name, cid)
        other.remove(theirs.name)
        other.prune()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert names_for(str(tmp_path / "other")).table not in tables
