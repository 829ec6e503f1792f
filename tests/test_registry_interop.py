"""Real clients against pallet's registry: skopeo both ways (Docker and OCI media types, gzip
and zstd), podman push/pull, docker push/pull through a dockerd this module starts, GC while
serving, metrics, and several worker processes."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_helpers import Server, make_oci_layout, pallet_argv, sha, small_tar_layer, start_registry

pytestmark = [pytest.mark.timeout(240), pytest.mark.interop]
SKOPEO = shutil.which("skopeo")
PODMAN = shutil.which("podman")
DOCKERD = shutil.which("dockerd")
DOCKER = shutil.which("docker")
IS_ROOT = os.geteuid() == 0


def run(*argv: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr[-2000:]}")
    return p


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("interop")
    srv = start_registry(d / "root", log=d / "access.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Path:
    return make_oci_layout(tmp_path_factory.mktemp("layout") / "oci",
                           [gzip.compress(busybox_tar.read_bytes(), 1), small_tar_layer({"etc/motd": b"hi\n"})],
                           "v1")


def manifest(reg: Server, name: str, ref: str) -> tuple[str, dict]:  # type: ignore[type-arg]
    r = reg.request("GET", f"/v2/{name}/manifests/{ref}", headers={"Accept": "*/*"})
    assert r.status == 200, r.body
    return r.h("Content-Type"), json.loads(r.body)


@pytest.mark.skipif(not SKOPEO, reason="skopeo not installed")
@pytest.mark.parametrize("fmt,want", [("v2s2", "application/vnd.docker.distribution.manifest.v2+json"),
                                      ("oci", "application/vnd.oci.image.manifest.v1+json")])
def test_skopeo_roundtrip(reg: Server, layout: Path, tmp_path: Path, fmt: str, want: str) -> None:
    run("skopeo", "copy", "--dest-tls-verify=false", "--format", fmt, f"oci:{layout}:v1",
        f"docker://{reg.host}/sk/{fmt}:v1")
    ctype, m = manifest(reg, f"sk/{fmt}", "v1")
    assert ctype == want and m["mediaType"] == want
    run("skopeo", "copy", "--src-tls-verify=false", f"docker://{reg.host}/sk/{fmt}:v1", f"oci:{tmp_path / 'out'}:x")
    idx = json.loads((tmp_path / "out" / "index.json").read_text())
    got = json.loads((tmp_path / "out" / "blobs" / "sha256" / idx["manifests"][0]["digest"][7:]).read_text())
    src_idx = json.loads((layout / "index.json").read_text())
    src = json.loads((layout / "blobs" / "sha256" / src_idx["manifests"][0]["digest"][7:]).read_text())
    assert [x["digest"] for x in got["layers"]] == [x["digest"] for x in src["layers"]]
    # registry to registry (mounts/HEADs within one registry)
    run("skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
        f"docker://{reg.host}/sk/{fmt}:v1", f"docker://{reg.host}/sk/copy-{fmt}:v1")


@pytest.mark.skipif(not SKOPEO, reason="skopeo not installed")
def test_skopeo_zstd(reg: Server, tmp_path: Path, busybox_tar: Path) -> None:
    # an uncompressed source layer, compressed to zstd on the way in
    plain = make_oci_layout(tmp_path / "plain", [gzip.compress(busybox_tar.read_bytes(), 1)], "v1")
    idx = json.loads((plain / "index.json").read_text())
    mpath = plain / "blobs" / "sha256" / idx["manifests"][0]["digest"][7:]
    m = json.loads(mpath.read_text())
    raw = busybox_tar.read_bytes()
    (plain / "blobs" / "sha256" / sha(raw)[7:]).write_bytes(raw)
    m["layers"] = [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(raw), "size": len(raw)}]
    mb = json.dumps(m).encode()
    (plain / "blobs" / "sha256" / sha(mb)[7:]).write_bytes(mb)
    idx["manifests"][0].update(digest=sha(mb), size=len(mb))
    (plain / "index.json").write_text(json.dumps(idx))
    run("skopeo", "copy", "--dest-tls-verify=false", "--format", "oci", "--dest-compress-format", "zstd",
        f"oci:{plain}:v1", f"docker://{reg.host}/sk/zstd:v1")
    _, got = manifest(reg, "sk/zstd", "v1")
    assert got["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    run("skopeo", "copy", "--src-tls-verify=false", f"docker://{reg.host}/sk/zstd:v1", f"oci:{tmp_path / 'o'}:x")
    blob = (tmp_path / "o" / "blobs" / "sha256" / got["layers"][0]["digest"][7:]).read_bytes()
    assert blob[:4] == b"\x28\xb5\x2f\xfd"


@pytest.mark.skipif(not (PODMAN and IS_ROOT), reason="podman (as root) needed")
def test_podman_push_pull(reg: Server, busybox_tar: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="pp", dir="/tmp") as t:
        base = ["podman", "--root", f"{t}/root", "--runroot", f"{t}/run", "--storage-driver", "vfs"]
        run(*base, "import", str(busybox_tar), "localhost/podbb:1")
        run(*base, "push", "--tls-verify=false", "localhost/podbb:1", f"docker://{reg.host}/pod/bb:1")
        assert "1" in reg.request("GET", "/v2/pod/bb/tags/list").json()["tags"]
        run(*base, "rmi", "-f", "localhost/podbb:1")
        run(*base, "pull", "--tls-verify=false", f"{reg.host}/pod/bb:1")
        out = run(*base, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        assert f"{reg.host}/pod/bb:1" in out
        run(*base, "rmi", "-af", check=False)


def test_docker_push_pull(reg: Server, dockerd: dict[str, str], busybox_tar: Path) -> None:
    d = ["docker", "-H", dockerd["DOCKER_HOST"]]
    ref = f"{reg.host}/dock/bb:1"
    run(*d, "import", str(busybox_tar), ref)
    run(*d, "push", ref)
    ctype, _ = manifest(reg, "dock/bb", "1")
    assert ctype == "application/vnd.docker.distribution.manifest.v2+json"
    run(*d, "rmi", ref)
    run(*d, "pull", ref)
    assert run(*d, "image", "inspect", ref).returncode == 0
    run(*d, "rmi", ref)


def test_gc_while_serving(reg: Server, tmp_path: Path) -> None:
    keep, keep_body = reg.push_image("gc/keep", "v1", layers=[os.urandom(1000)])
    drop, drop_body = reg.push_image("gc/drop", "v1", layers=[os.urandom(2000)])
    drop_layer = json.loads(drop_body)["layers"][0]["digest"]
    keep_layer = json.loads(keep_body)["layers"][0]["digest"]
    assert reg.request("DELETE", f"/v2/gc/drop/manifests/{drop}").status == 202
    loc = reg.request("POST", "/v2/gc/drop/blobs/uploads/").h("Location")
    reg.request("PATCH", loc, b"abandoned")
    dry = run(*pallet_argv("registry", "gc", "--root", str(reg.root), "--dry-run", "--grace", "0"))
    assert drop_layer in dry.stdout and "would delete" in dry.stdout and keep_layer not in dry.stdout
    assert reg.request("HEAD", f"/v2/gc/drop/blobs/{drop_layer}").status == 200  # dry run: untouched
    # a reader streams a kept blob while GC runs
    gc = subprocess.Popen(pallet_argv("registry", "gc", "--root", str(reg.root), "--grace", "0"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(20):
        assert reg.request("GET", f"/v2/gc/keep/blobs/{keep_layer}").status == 200
        assert reg.request("GET", "/v2/gc/keep/manifests/v1").status == 200
    out, err = gc.communicate(timeout=60)
    assert gc.returncode == 0, err
    assert drop_layer in out
    assert reg.request("HEAD", f"/v2/gc/drop/blobs/{drop_layer}").status == 404
    assert reg.request("GET", loc).status == 404
    assert reg.request("GET", f"/v2/gc/keep/manifests/{keep}").status == 200
    assert reg.request("GET", f"/v2/gc/keep/blobs/{keep_layer}").status == 200
    # the grace period protects fresh content
    reg.push_blob("gc/drop", b"fresh and unreferenced")
    run(*pallet_argv("registry", "gc", "--root", str(reg.root)))
    assert reg.request("HEAD", f"/v2/gc/drop/blobs/{sha(b'fresh and unreferenced')}").status == 200


def test_metrics_and_access_log(reg: Server) -> None:
    reg.request("GET", "/v2/")
    reg.request("GET", "/v2/nope/manifests/x")
    r = reg.request("GET", "/metrics")
    assert r.status == 200
    text = r.body.decode()
    assert 'pallet_registry_http_requests_total{method="GET",status="200"}' in text
    assert 'pallet_registry_errors_total{code="NAME_UNKNOWN"}' in text
    sent = [ln for ln in text.splitlines() if ln.startswith("pallet_registry_http_sent_bytes_total ")]
    assert sent and int(sent[0].split()[1]) > 0
    log = reg.root.parent / "access.log"
    lines = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert any(rec["path"] == "/v2/nope/manifests/x" and rec["status"] == 404 and rec["error"] == "NAME_UNKNOWN"
               for rec in lines)
    assert {"time", "method", "status", "bytes_in", "bytes_out", "duration_ms"} <= set(lines[0])


def test_workers_share_storage_and_metrics(tmp_path: Path) -> None:
    srv = start_registry(tmp_path / "root", "--workers", "2")
    try:
        for i in range(6):  # separate connections spread over both workers
            srv.push_image(f"w/img{i}", "v1")
        for i in range(6):
            assert srv.request("GET", f"/v2/w/img{i}/manifests/v1").status == 200
        text = srv.request("GET", "/metrics").body.decode()
        puts = [ln for ln in text.splitlines() if 'method="PUT",status="201"' in ln]
        assert puts and int(puts[0].split()[-1]) == 6
    finally:
        srv.stop()
        assert srv.proc is not None and srv.proc.returncode == 0


def test_pallet_client_push_pull(reg: Server, pallet, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    ref = f"{reg.host}/own/bb:1"
    pallet("import", str(busybox_tar), ref)
    pallet("push", "-q", ref)
    ctype, m = manifest(reg, "own/bb", "1")
    assert m["layers"] and ctype in ("application/vnd.oci.image.manifest.v1+json",
                                     "application/vnd.docker.distribution.manifest.v2+json")
    pallet("rmi", ref)
    pallet("pull", "-q", ref)
    assert pallet("inspect", ref).rc == 0


def test_docker_and_podman_with_token_auth(dockerd: dict[str, str], busybox_tar: Path, tmp_path: Path) -> None:
    from registry_helpers import start_token_server, write_htpasswd, write_key, write_pub

    ht = write_htpasswd(tmp_path / "htpasswd", {"alice": "pw1"})
    key = write_key(tmp_path / "signer.pem", "ec")
    pub = write_pub(tmp_path / "signer.pub", key)
    ts, tsrv = start_token_server(tmp_path, ht, tmp_path / "signer.pem", "reg.test")
    srv = start_registry(tmp_path / "root", "--token-realm", f"http://{tsrv.host}/token",
                         "--token-service", "reg.test", "--token-key", str(pub), "--token-issuer", "pallet-test")
    env = dict(os.environ, DOCKER_CONFIG=str(tmp_path / "dockercfg"))
    try:
        d = ["docker", "-H", dockerd["DOCKER_HOST"]]
        ref = f"{srv.host}/tok/bb:1"

        def dock(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*d, *args], capture_output=True, text=True, timeout=120, env=env, input=input)

        assert dock("import", str(busybox_tar), ref).returncode == 0
        # (an unauthenticated docker push is refused too, but docker retries it for ~50 s)
        bad = dock("login", "-u", "alice", "--password-stdin", srv.host, input="wrong\n")
        assert bad.returncode != 0
        login = dock("login", "-u", "alice", "--password-stdin", srv.host, input="pw1\n")
        assert login.returncode == 0, login.stderr
        push = dock("push", ref)
        assert push.returncode == 0, push.stderr
        assert dock("rmi", ref).returncode == 0
        pull = dock("pull", ref)
        assert pull.returncode == 0, pull.stderr
        dock("rmi", ref)
        if PODMAN:
            with tempfile.TemporaryDirectory(prefix="pt", dir="/tmp") as t:
                base = ["podman", "--root", f"{t}/root", "--runroot", f"{t}/run", "--storage-driver", "vfs"]
                p = run(*base, "pull", "--tls-verify=false", "--creds", "alice:pw1", ref)
                assert p.returncode == 0
                bad = run(*base, "pull", "--tls-verify=false", "--creds", "alice:nope", ref, check=False)
                assert bad.returncode != 0
                run(*base, "rmi", "-af", check=False)
    finally:
        srv.stop()
        ts.terminate()
        ts.wait(10)
