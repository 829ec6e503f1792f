"""Blob GET bodies (server/blobsend.py): the digest ETag on every path, ranges and
preconditions as RFC 9110 and distribution's http.ServeContent answer them, the copy path a
client on this host gets, and the sendfile path a client on another host gets (a network
namespace behind a veth pair), with the sent bytes counted in /metrics either way."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_helpers import Server, free_port, pallet_argv, sha, start_registry

from pallet.distribution.server.blobsend import CHUNK, byte_range, is_local

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_registry(tmp_path_factory.mktemp("blobsend") / "root")
    yield srv
    srv.stop()


def sent_bytes(srv: Server) -> int:
    text = srv.request("GET", "/metrics").body.decode()
    return int(next(ln for ln in text.splitlines() if ln.startswith("pallet_registry_http_sent_bytes_total ")).split()[1])


def test_local_get_copies_whole_blob_with_digest_etag(reg: Server) -> None:
    data = os.urandom(2 * CHUNK + 12345)  # several chunks, the last one short
    d = reg.push_blob("send/local", data)
    before = sent_bytes(reg)
    r = reg.request("GET", f"/v2/send/local/blobs/{d}")
    assert r.status == 200 and r.body == data
    assert r.h("Content-Length") == str(len(data)) and r.h("Docker-Content-Digest") == d
    assert r.h("ETag") == f'"{d}"' == reg.request("HEAD", f"/v2/send/local/blobs/{d}").h("ETag")
    assert r.h("Accept-Ranges") == "bytes"
    assert sent_bytes(reg) - before >= len(data)
    empty = reg.push_blob("send/local", b"")
    r = reg.request("GET", f"/v2/send/local/blobs/{empty}")
    assert (r.status, r.body, r.h("Content-Length")) == (200, b"", "0")


def test_ranges_and_preconditions(reg: Server) -> None:
    data = os.urandom(1000)
    d = reg.push_blob("send/range", data)
    path, etag = f"/v2/send/range/blobs/{d}", f'"{d}"'

    def get(**h: str) -> tuple[int, bytes, str]:
        r = reg.request("GET", path, headers={k.replace("_", "-"): v for k, v in h.items()})
        return r.status, r.body, r.h("Content-Range")

    assert get(Range="bytes=10-19") == (206, data[10:20], "bytes 10-19/1000")
    assert get(Range="bytes=-5") == (206, data[-5:], "bytes 995-999/1000")
    assert get(Range="bytes=990-") == (206, data[990:], "bytes 990-999/1000")
    assert get(Range="bytes=990-5000") == (206, data[990:], "bytes 990-999/1000")
    assert get(Range="bytes=1000-") == (416, b"", "bytes */1000")
    assert get(Range="bytes=0-1,5-6")[:2] == (200, data)  # several ranges: the whole blob
    assert get(Range="bytes=9-5")[:2] == (200, data)  # invalid: ignored
    assert get(If_None_Match=etag)[:2] == (304, b"")
    assert get(If_None_Match=f'"other", W/{etag}')[0] == 304
    assert get(If_None_Match='"other"')[:2] == (200, data)
    assert get(If_Match='"other"')[0] == 412
    assert get(If_Match=etag)[:2] == (200, data)
    assert get(If_Range='"other"', Range="bytes=0-9")[:2] == (200, data)
    assert get(If_Range=etag, Range="bytes=0-9")[:2] == (206, data[:10])


def test_byte_range_and_is_local() -> None:
    assert byte_range(None, 10) is None and byte_range("items=0-1", 10) is None
    assert byte_range("bytes=-0", 10) is False and byte_range("bytes=0-0", 0) is False
    assert byte_range("bytes = 2 - 3", 10) == (2, 3)
    assert is_local(("127.0.0.1", 1), ("127.0.0.1", 5000))
    assert is_local(("127.9.9.9", 1), ("10.0.0.1", 5000))
    assert is_local(("::1", 1, 0, 0), ("::1", 5000, 0, 0))
    assert is_local(("::ffff:127.0.0.1", 1, 0, 0), ("::", 5000, 0, 0))
    assert is_local(("10.0.0.1", 1), ("10.0.0.1", 5000))  # the host's own address
    assert not is_local(("10.0.0.2", 1), ("10.0.0.1", 5000))
    assert not is_local(("fe80::2%eth0", 1, 0, 2), ("fe80::1%eth0", 5000, 0, 2))
    assert not is_local(None, None) and not is_local("/run/sock", "")


_CLIENT = r"""
import hashlib, http.client, json, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = []
for h in ({}, {"Range": "bytes=100-199"}):
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request("GET", path, headers=h)
    r = c.getresponse()
    body = r.read()
    out.append({"status": r.status, "etag": r.getheader("ETag"), "sha": "sha256:" + hashlib.sha256(body).hexdigest(),
                "len": len(body), "range": r.getheader("Content-Range")})
print(json.dumps(out))
"""


@pytest.mark.privileged
def test_remote_client_gets_sendfile_path(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2")
    tag = f"{os.getpid() % 10000}"
    ns, veth, sub = f"pallet-rb{tag}", f"prb{tag}", f"10.253.{os.getpid() % 250}"
    srv: Server | None = None

    def ip(*a: str) -> None:
        subprocess.run(["ip", *a], check=True, capture_output=True, timeout=20)

    try:
        ip("netns", "add", ns)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("addr", "add", f"{sub}.1/30", "dev", veth)
        ip("link", "set", veth, "up")
        ip("-n", ns, "addr", "add", f"{sub}.2/30", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        port = free_port()
        root = tmp_path / "root"
        root.mkdir()
        proc = subprocess.Popen(pallet_argv("registry", "serve", "--addr", f"{sub}.1:{port}", "--root", str(root),
                                            "--access-log", "off"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        srv = Server(port, root, proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:  # the host reaches its own veth address (a local peer: copy path)
                import http.client

                c = http.client.HTTPConnection(f"{sub}.1", port, timeout=2)
                c.request("GET", "/v2/")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("registry on the veth address did not answer")
        data = os.urandom(3 * CHUNK + 7)
        c = http.client.HTTPConnection(f"{sub}.1", port, timeout=30)
        d = sha(data)
        c.request("POST", f"/v2/send/remote/blobs/uploads/?digest={d}", body=data)
        assert c.getresponse().status == 201
        c.close()
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", _CLIENT, f"{sub}.1", str(port),
                              f"/v2/send/remote/blobs/{d}"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        full, part = json.loads(out.stdout)
        assert full == {"status": 200, "etag": f'"{d}"', "sha": d, "len": len(data), "range": None}
        assert part["status"] == 206 and part["sha"] == sha(data[100:200]) and part["range"] == f"bytes 100-199/{len(data)}"
        c = http.client.HTTPConnection(f"{sub}.1", port, timeout=10)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        sent = int(next(ln for ln in text.splitlines() if ln.startswith("pallet_registry_http_sent_bytes_total ")).split()[1])
        assert sent >= len(data) + 100  # sendfile'd bytes are counted too
    finally:
        if srv is not None:
            srv.stop()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=20)


def test_local_client_hanging_up_mid_blob_leaves_nothing_open(reg: Server) -> None:
    import socket

    assert reg.proc is not None
    data = os.urandom(24 * CHUNK)
    d = reg.push_blob("send/hangup", data)
    fds = Path(f"/proc/{reg.proc.pid}/fd")
    before = len(list(fds.iterdir()))
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", reg.port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the server blocks on a full socket
        s.sendall(f"GET /v2/send/hangup/blobs/{d} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        s.close()
    deadline = time.monotonic() + 20
    while len(list(fds.iterdir())) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(fds.iterdir())) <= before  # the sender's socket and file dups are closed
    r = reg.request("GET", f"/v2/send/hangup/blobs/{d}")  # and the server still serves
    assert r.status == 200 and sha(r.body) == d
