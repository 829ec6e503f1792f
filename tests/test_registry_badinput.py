"""Bad input gets the spec's code and status, never a 500, and stores nothing; a client that
goes away mid-upload and a registry SIGKILLed mid-upload leave no visible partial blob."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_helpers import OCI_MANIFEST, Server, pallet_argv, sha, start_registry

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("badinput") / "root"
    srv = start_registry(root)
    yield srv
    srv.stop()


def _blob_files(root: Path) -> set[str]:
    return {p.parent.name for p in (root / "blobs").rglob("data")}


@pytest.mark.parametrize("name", [
    "UPPER/case", "a/../b", "%2e%2e/b", "a/%2E%2E/b", "a//b", "-lead", "trail-", "a/_x", "x" * 256,
    "a/./b", "a%2f..%2fb",
])
def test_invalid_names(reg: Server, name: str) -> None:
    for method, path in (("GET", f"/v2/{name}/manifests/latest"), ("GET", f"/v2/{name}/tags/list"),
                         ("POST", f"/v2/{name}/blobs/uploads/"),
                         ("HEAD", f"/v2/{name}/blobs/{sha(b'x')}")):
        r = reg.request(method, path)
        assert r.status == 400, (method, path, r.status, r.body)
        if method != "HEAD":
            assert r.code == "NAME_INVALID"
    assert not list((reg.root / "uploads").iterdir())


@pytest.mark.parametrize("digest", ["sha256:abc", "sha256:" + "G" * 64, "md5:" + "a" * 32, "nocolon",
                                    "sha256:" + "A" * 64])
def test_invalid_digests(reg: Server, digest: str) -> None:
    r = reg.request("GET", f"/v2/bad/d/blobs/{digest}")
    assert (r.status, r.code) == (400, "DIGEST_INVALID")
    r = reg.request("POST", f"/v2/bad/d/blobs/uploads/?digest={digest}", b"data")
    assert (r.status, r.code) == (400, "DIGEST_INVALID")
    r = reg.request("POST", f"/v2/bad/d/blobs/uploads/?mount={digest}&from=bad/e")
    assert (r.status, r.code) == (400, "DIGEST_INVALID")


def test_manifest_too_big(reg: Server) -> None:
    cd = reg.push_blob("bad/big", b"{}")
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
         "layers": [], "annotations": {"pad": "x" * (4 * 1024 * 1024)}}
    body = json.dumps(m).encode()
    r = reg.push_manifest("bad/big", "t", body)
    assert r.status == 413 and r.code == "MANIFEST_INVALID"
    assert sha(body)[7:] not in _blob_files(reg.root)
    assert reg.request("GET", "/v2/bad/big/manifests/t").status == 404


@pytest.mark.parametrize("body,ctype", [
    (b"{not json", OCI_MANIFEST),
    (b"[]", OCI_MANIFEST),
    (b'"string"', OCI_MANIFEST),
    (b'{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}',
     "application/vnd.docker.distribution.manifest.v1+prettyjws"),
    (b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}', OCI_MANIFEST),
    (b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}',
     OCI_MANIFEST),  # Content-Type disagrees with mediaType
    (b'{"schemaVersion": 2, "mediaType": "text/plain", "layers": []}', "text/plain"),
    (b'{"schemaVersion": 2, "config": {"digest": 5, "size": 1}, "layers": [1]}', OCI_MANIFEST),
    (b'{"schemaVersion": 2, "config": {"digest": "sha256:' + b"a" * 64 + b'", "size": -1}, "layers": []}',
     OCI_MANIFEST),
    (b'{"schemaVersion": 2, "config": {"digest": "sha256:' + b"a" * 64 + b'", "size": 1, "annotations": "x"},'
     b' "layers": []}', OCI_MANIFEST),
    (b'{"schemaVersion": 3, "config": {}, "layers": []}', OCI_MANIFEST),
    (b"\xff\xfe\x00", OCI_MANIFEST),
])
def test_malformed_manifests(reg: Server, body: bytes, ctype: str) -> None:
    r = reg.push_manifest("bad/m", "t", body, ctype)
    assert (r.status, r.code) == (400, "MANIFEST_INVALID"), r.body
    assert sha(body)[7:] not in _blob_files(reg.root)


def test_manifest_digest_reference_mismatch(reg: Server) -> None:
    _, body = reg.push_image("bad/ref", "ok")
    r = reg.push_manifest("bad/ref", sha(b"other"), body)
    assert (r.status, r.code) == (400, "DIGEST_INVALID")
    r = reg.push_manifest("bad/ref", "-badtag", body)
    assert (r.status, r.code) == (400, "MANIFEST_INVALID")


def test_upload_session_tricks(reg: Server) -> None:
    for uuid in ("../../etc", "%2e%2e", "0" * 31, "Z" * 32):
        r = reg.request("GET", f"/v2/bad/u/blobs/uploads/{uuid}")
        assert r.status == 404 and r.code in ("BLOB_UPLOAD_UNKNOWN", "NAME_UNKNOWN"), (uuid, r.body)
        r = reg.request("PATCH", f"/v2/bad/u/blobs/uploads/{uuid}", b"x")
        assert r.status == 404
    loc = reg.request("POST", "/v2/bad/u/blobs/uploads/").h("Location")
    uuid = loc.rsplit("/", 1)[1]
    # someone else's session is unknown from another repository
    r = reg.request("PATCH", f"/v2/bad/other/blobs/uploads/{uuid}", b"x")
    assert (r.status, r.code) == (404, "BLOB_UPLOAD_UNKNOWN")
    r = reg.request("PATCH", loc, b"abc", {"Content-Range": "garbage"})
    assert r.status == 416
    r = reg.request("PATCH", loc, b"abc", {"Content-Range": "5-7"})
    assert r.status == 416 and r.h("Range") == "0-0"
    r = reg.request("PATCH", loc, b"abc", {"Content-Range": "0-9"})  # disagrees with the length
    assert r.status == 416
    r = reg.request("PUT", loc)  # no digest
    assert (r.status, r.code) == (400, "DIGEST_INVALID")
    assert reg.request("GET", loc).h("Range") == "0-0"
    reg.request("DELETE", loc)


def test_bad_pagination_and_methods(reg: Server) -> None:
    reg.push_image("bad/p", "t")
    for q in ("n=-1", "n=abc", "n=99999999999"):
        r = reg.request("GET", f"/v2/bad/p/tags/list?{q}")
        assert (r.status, r.code) == (400, "PAGINATION_NUMBER_INVALID")
    for method, path in (("POST", "/v2/bad/p/manifests/t"), ("PUT", f"/v2/bad/p/blobs/{sha(b'')}"),
                         ("DELETE", "/v2/bad/p/tags/list"), ("POST", "/v2/_catalog"), ("PUT", "/v2/")):
        r = reg.request(method, path)
        assert (r.status, r.code) == (405, "UNSUPPORTED"), (method, path)
    r = reg.request("GET", "/v2/bad/p/nothing/here")
    assert r.status == 404


def test_random_requests_never_500(reg: Server) -> None:
    rnd = random.Random(6)
    parts = ["v2", "a", "b", "..", "%2e", "blobs", "uploads", "manifests", "tags", "list", "referrers",
             "_catalog", sha(b"x"), "sha256:", "", "%00", "%ff", "latest", "%2f", "x" * 300]
    methods = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"]
    for _ in range(300):
        path = "/" + "/".join(rnd.choice(parts) for _ in range(rnd.randint(1, 7)))
        if rnd.random() < 0.7:
            path = "/v2/" + path.lstrip("/")
        if rnd.random() < 0.3:
            path += rnd.choice(["?n=1", "?digest=x", "?mount=y&from=..", "?last=%ff", "?n="])
        body = os.urandom(rnd.randint(0, 64)) if rnd.random() < 0.5 else None
        hdrs = {"Content-Range": rnd.choice(["0-1", "x", "1-0"])} if rnd.random() < 0.2 else {}
        r = reg.request(rnd.choice(methods), path, body, hdrs)
        assert r.status < 500, (path, r.status, r.body)


def _raw_upload_and_vanish(port: int, path: str, total: int, send: int) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"{path.split(' ')[0]} {path.split(' ')[1]} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n"
              "Content-Type: application/octet-stream\r\n\r\n".encode())
    s.sendall(os.urandom(send))
    time.sleep(0.2)
    s.close()


def test_client_disconnect_mid_upload_leaves_nothing(reg: Server) -> None:
    before = _blob_files(reg.root)
    d = sha(b"never complete")
    _raw_upload_and_vanish(reg.port, f"POST /v2/bad/dc/blobs/uploads/?digest={d}", 4 << 20, 1 << 20)
    loc = reg.request("POST", "/v2/bad/dc/blobs/uploads/").h("Location")
    reg.request("PATCH", loc, b"12345")
    _raw_upload_and_vanish(reg.port, f"PATCH {loc}", 4 << 20, 1 << 20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the server notices the hang-up asynchronously
        if reg.request("GET", loc).h("Range") == "0-4" and len(list((reg.root / "uploads").iterdir())) == 1:
            break
        time.sleep(0.05)
    assert reg.request("GET", loc).h("Range") == "0-4"  # the partial chunk was dropped
    assert len(list((reg.root / "uploads").iterdir())) == 1  # the monolithic one left nothing
    assert _blob_files(reg.root) == before
    assert reg.request("HEAD", f"/v2/bad/dc/blobs/{d}").status == 404
    reg.request("DELETE", loc)


def test_sigkill_mid_upload_restarts_consistent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    srv = start_registry(root)
    d, _ = srv.push_image("k/img", "v1")
    data = os.urandom(8 << 20)
    loc = srv.request("POST", "/v2/k/up/blobs/uploads/").h("Location")
    srv.request("PATCH", loc, data[: 1 << 20], {"Content-Range": f"0-{(1 << 20) - 1}"})
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    s.sendall(f"POST /v2/k/up/blobs/uploads/?digest={sha(data)} HTTP/1.1\r\nHost: x\r\n"
              f"Content-Length: {len(data)}\r\n\r\n".encode())
    s.sendall(data[: 3 << 20])
    time.sleep(0.3)
    srv.stop(signal.SIGKILL)
    s.close()
    assert sha(data)[7:] not in _blob_files(root)
    srv2 = start_registry(root, port=srv.port)
    try:
        assert srv2.request("HEAD", f"/v2/k/up/blobs/{sha(data)}").status == 404
        assert srv2.request("GET", f"/v2/k/img/manifests/{d}").status == 200
        # the chunked session survives the restart and can be finished
        assert srv2.request("GET", loc).h("Range") == f"0-{(1 << 20) - 1}"
        r = srv2.request("PUT", loc + f"?digest={sha(data)}", data[1 << 20:],
                         {"Content-Range": f"{1 << 20}-{len(data) - 1}"})
        assert r.status == 201
        assert srv2.request("GET", f"/v2/k/up/blobs/{sha(data)}").body == data
        # gc sweeps what the killed monolithic upload staged
        out = subprocess.run(pallet_argv("registry", "gc", "--root", str(root), "--grace", "0"),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert not list((root / "uploads").iterdir())
        assert srv2.request("GET", f"/v2/k/img/manifests/{d}").status == 200
    finally:
        srv2.stop()
