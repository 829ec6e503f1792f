"""``-P`` through the CLI (as root): every port the image EXPOSEs gets a free host port,
``pallet port`` lists them, the TCP one answers on 127.0.0.1, ``stop`` frees them."""
from __future__ import annotations

import urllib.request

import pytest
from engine_helpers import bb_fixture, wait_until  # noqa: F401  (registers the 'bb' fixture)

pytestmark = pytest.mark.privileged


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bytes(r.read())
    except OSError:
        return b""


def test_publish_all_exposed_ports(bb, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "Dockerfile").write_text('FROM busybox\nEXPOSE 80 53/udp\nCMD ["httpd", "-f", "-p", "80", "-h", "/etc"]\n')
    bb("build", "-q", "-t", "exposer", str(tmp_path))
    bb("run", "-d", "--name", "pa", "-P", "exposer")
    lines = bb("port", "pa").out.splitlines()
    assert sorted(ln.split(" -> ")[0] for ln in lines) == ["53/udp", "80/tcp"], lines
    hostport = bb("port", "pa", "80").out.split()[0].rsplit(":", 1)[1]
    assert wait_until(lambda: _get(f"http://127.0.0.1:{hostport}/hostname") != b"", 15)
    assert "No public port" in bb.fail("port", "pa", "8080").err
    bb("stop", "-t", "0", "pa")  # stopped: no address, no ports (as docker's inspect shows it)
    assert _get(f"http://127.0.0.1:{hostport}/hostname") == b""
    assert bb("inspect", "-f", "{{.NetworkSettings.IPAddress}}|{{json .NetworkSettings.Ports}}|"
              "{{.NetworkSettings.Networks.bridge.IPAddress}}", "pa").out == "|{}|\n"
    bb("rm", "pa")
    bb("rmi", "exposer")
