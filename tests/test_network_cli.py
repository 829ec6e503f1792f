"""Networking end to end through the CLI and the engine (as root): containers reach each other
by name and alias on a user network, a published port answers on 127.0.0.1 (``pallet port``),
separate networks cannot talk, ``network connect``/``disconnect`` on a running container,
bad input; after ``rm -f`` and ``network rm``/``prune`` the host is as it was."""
from __future__ import annotations

import json
import os
import urllib.request

import pytest
from engine_helpers import bb_fixture, wait_until  # noqa: F401  (registers the 'bb' fixture)
from network_util import assert_host_as, snapshot

pytestmark = pytest.mark.privileged


def _ip(bb, name: str, net: str) -> str:  # type: ignore[no-untyped-def]
    return json.loads(bb("inspect", name).out)[0]["NetworkSettings"]["Networks"][net]["IPAddress"]


def test_names_ports_isolation_connect(bb) -> None:  # type: ignore[no-untyped-def]
    prefix, root = bb.env["PALLET_BRIDGE_NAME"], str(bb.root)
    before = snapshot(prefix=prefix, root=root)
    try:
        bb("network", "create", "app")
        bb("network", "create", "other")
        assert "app bridge local\n" in bb("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").out
        assert bb("network", "inspect", "-f", "{{.Name}} {{.Internal}}", "app").out == "app false\n"
        bb("run", "-d", "--name", "web", "--network", "app", "--network-alias", "www", "busybox",
           "httpd", "-f", "-p", "80", "-h", "/etc")
        wget = ("timeout", "5", "wget", "-q", "-O", "-")
        for host in ("web", "www"):
            assert wait_until(lambda h=host: bb("run", "--rm", "--network", "app", "busybox", *_sh(f"http://{h}/hostname"),
                                               check=False).rc == 0, 15)
        web_ip = _ip(bb, "web", "app")
        # --add-host NAME:host-gateway: the host as the container reaches it (its network's gateway)
        gw = json.loads(bb("network", "inspect", "app").out)[0]["IPAM"]["Config"][0]["Gateway"]
        r = bb("run", "--rm", "--network", "app", "--add-host", "hg:host-gateway", "busybox", "grep", "-w", "hg",
               "/etc/hosts")
        assert r.out == f"{gw}\thg\n"
        assert "needs a bridge network" in bb.fail("run", "--rm", "--network", "none", "--add-host", "hg:host-gateway",
                                                   "busybox", "true").err
        members = json.loads(bb("network", "inspect", "-f", "{{json .Containers}}", "app").out)
        assert [(m["Name"], m["IPv4Address"]) for m in members.values()] == [("web", f"{web_ip}/24")]
        # another network: dropped
        assert bb("run", "--rm", "--network", "other", "busybox", *_sh(f"http://{web_ip}/hostname", 2),
                  check=False).rc != 0
        # a published port on 127.0.0.1
        bb("run", "-d", "--name", "pub", "-p", "127.0.0.1::80", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
        (line,) = bb("port", "pub").out.split("\n")[:1]
        assert line.startswith("80/tcp -> 127.0.0.1:")
        hostport = line.split(" -> ")[1]
        assert wait_until(lambda: _get(f"http://{hostport}/hostname"), 15)
        # the same host port again: one line, nothing half-made
        r = bb.fail("run", "--rm", "-p", f"{hostport}:80", "busybox", "true")
        assert "not available" in r.err or "already" in r.err, r.err
        # connect / disconnect a running container
        bb("run", "-d", "--name", "cli", "--network", "other", "busybox", "sleep", "120")
        bb("network", "connect", "--alias", "client", "app", "cli")
        assert bb("exec", "cli", *wget, "http://web/hostname", check=False).rc == 0
        assert "app" in json.loads(bb("inspect", "cli").out)[0]["NetworkSettings"]["Networks"]
        bb("network", "disconnect", "app", "cli")
        assert bb("exec", "cli", "timeout", "2", "wget", "-q", "-O", "-", f"http://{web_ip}/hostname",
                  check=False).rc != 0
        # in use / unknown
        assert "in use" in bb.fail("network", "rm", "app").err
        assert "not found" in bb.fail("run", "--rm", "--network", "nonet", "busybox", "true").err
        assert "not found" in bb.fail("network", "connect", "nonet", "cli").err
    finally:
        ids = bb("ps", "-aq", "--no-trunc", check=False).out.split()
        if ids:
            bb("rm", "-f", *ids, check=False)
        bb("network", "rm", "app", "other", check=False)
        bb("network", "prune", "-f", check=False)
    assert_host_as(before, root=root, prefix=prefix)


def _sh(url: str, secs: int = 5) -> tuple[str, ...]:
    # busybox timeout execs its command in place: as the container's pid 1, wget would ignore
    # the SIGTERM; under sh (pid 1) it is a child and dies (and this busybox's wget -T crashes)
    return ("sh", "-c", f"timeout {secs} wget -q -O - {url}; exit $?")


def _get(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.read())
    except OSError:
        return False


def test_host_network_cannot_be_connected(bb) -> None:  # type: ignore[no-untyped-def]
    bb("run", "-d", "--name", "hostnet", "--network", "host", "busybox", "sleep", "60")
    try:
        assert "cannot be connected" in bb.fail("network", "connect", "bridge", "hostnet").err
        assert "cannot be connected" in bb.fail("network", "disconnect", "bridge", "hostnet").err
    finally:
        bb("rm", "-f", "hostnet", check=False)
    assert os.path.exists("/proc/self")  # (the bb fixture checks that nothing is left)
