"""The registry client library against the real distribution registry (no store involved):
manifest negotiation, verified blobs, push with HEAD/mount/chunked uploads, Basic and token auth,
credentials in config.json."""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from client_registry import (
    PASSWORD,
    REFRESH,
    USER,
    TokenIssuer,
    htpasswd_yaml,
    make_oci_layout,
    push_busybox_with_skopeo,
    skopeo,
    start_registry,
)

from pallet.distribution.client import credentials
from pallet.distribution.client.credentials import Credentials
from pallet.distribution.client.push import push_image
from pallet.distribution.client.registry import Registry
from pallet.distribution.client.remote import resolve
from pallet.errors import NotFound, Unauthorized
from pallet.oci import mediatypes as mt

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory):
    r = start_registry(tmp_path_factory.mktemp("reg-plain"))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def basic_reg(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("reg-basic")
    r = start_registry(tmp, htpasswd_yaml(tmp))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def token_reg(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("reg-token")
    issuer = TokenIssuer(tmp)
    r = start_registry(tmp, issuer.yaml())
    r.issuer = issuer  # type: ignore[attr-defined]
    yield r
    r.stop()
    issuer.close()


@pytest.fixture
def no_creds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dockercfg"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return tmp_path / "dockercfg" / "config.json"


def _diff_ids_match(img) -> None:  # type: ignore[no-untyped-def]
    for layer in img.layers():
        h = hashlib.sha256()
        with layer.uncompressed() as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                h.update(b)
        assert f"sha256:{h.hexdigest()}" == str(layer.diff_id())


@pytest.mark.parametrize("fmt,comp", [("v2s2", "gzip"), ("oci", "gzip"), ("oci", "zstd")])
def test_pull_what_skopeo_pushed(reg, busybox_tar: Path, tmp_path: Path, no_creds: Path, fmt: str, comp: str) -> None:
    name = f"sk/{fmt}-{comp}"
    push_busybox_with_skopeo(busybox_tar, tmp_path, f"docker://{reg.host}/{name}:1", "--format", fmt,
                             "--dest-compress-format", comp)
    with Registry(reg.host) as r:
        res = resolve(r.repo(name), "1")
        img = res.image
        want = mt.DOCKER_MANIFEST if fmt == "v2s2" else mt.OCI_MANIFEST
        assert img.media_type() == want
        lt = img.manifest().layers[0].media_type
        assert mt.layer_compression(lt) == comp
        assert img.config_file()["architecture"] == "amd64"
        _diff_ids_match(img)
        # pull by digest gives the same manifest
        again = resolve(r.repo(name), str(res.top_digest))
        assert again.image.raw_manifest() == img.raw_manifest()


def test_unknown_name_and_tag(reg, no_creds: Path) -> None:
    with Registry(reg.host) as r:
        with pytest.raises(NotFound, match="nosuch"):
            resolve(r.repo("nosuch/repo"), "1")


def test_push_copy_then_skopeo_reads(reg, busybox_tar: Path, tmp_path: Path, no_creds: Path) -> None:
    push_busybox_with_skopeo(busybox_tar, tmp_path, f"docker://{reg.host}/src/bb:1")
    with Registry(reg.host) as r:
        src = resolve(r.repo("src/bb"), "1").image
        dst = r.repo("dst/bb", push=True)
        # cross-repository mount: no blob bytes are uploaded
        digest, _ = push_image(dst, src, "2", mount_from=["src/bb"])
        assert digest == src.digest()
        assert dst.has_blob(src.manifest().layers[0].digest)
        # chunked upload (PATCH with Content-Range per chunk, then PUT ?digest=)
        d3, _ = push_image(r.repo("chunk/bb", push=True), src, "1", chunk_size=200_000)
        assert d3 == digest
        _diff_ids_match(resolve(r.repo("chunk/bb"), "1").image)
    out = skopeo("inspect", "--tls-verify=false", f"docker://{reg.host}/dst/bb:2")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Digest"] == str(digest)


def test_push_uncompressed_layout_streams_gzip(reg, busybox_tar: Path, tmp_path: Path,
                                                        no_creds: Path) -> None:
    from pallet.image.sources import open_archive

    layout = tmp_path / "layout"
    make_oci_layout(busybox_tar, layout)
    cache: dict = {}

    class Cache:
        def get(self, d):  # type: ignore[no-untyped-def]
            return cache.get(d)

        def put(self, d, digest, size):  # type: ignore[no-untyped-def]
            cache[d] = (digest, size)

    with open_archive(str(layout), str(tmp_path)) as images, Registry(reg.host) as r:
        img = images[0].image
        repo = r.repo("gz/bb", push=True)
        digest, _ = push_image(repo, img, "1", gzip_cache=Cache())
        got = resolve(r.repo("gz/bb"), "1").image
        assert got.digest() == digest
        assert got.manifest().layers[0].media_type == mt.OCI_LAYER_GZIP
        _diff_ids_match(got)
        assert len(cache) == 1
        # second push: the cache + HEAD skip compression entirely
        d2, _ = push_image(r.repo("gz/bb", push=True), img, "2", gzip_cache=Cache())
        assert d2 == digest
    assert not list(tmp_path.glob(".push-gzip-*"))
    out = skopeo("copy", "--src-tls-verify=false", f"docker://{reg.host}/gz/bb:1", f"oci:{tmp_path}/out:x")
    assert out.returncode == 0, out.stderr


def test_basic_auth(basic_reg, busybox_tar: Path, tmp_path: Path, no_creds: Path) -> None:
    push_busybox_with_skopeo(busybox_tar, tmp_path, f"docker://{basic_reg.host}/b/bb:1",
                             "--dest-creds", f"{USER}:{PASSWORD}")
    with Registry(basic_reg.host) as r:
        with pytest.raises(Unauthorized, match=basic_reg.host.replace(".", r"\.")):
            resolve(r.repo("b/bb"), "1")
    with Registry(basic_reg.host, creds=Credentials(USER, "Xyzzy-bad-pw")) as r:
        with pytest.raises(Unauthorized, match="unauthorized") as ei:
            r.check_login()
        assert "Xyzzy" not in str(ei.value)
    # stored credentials are found through DOCKER_CONFIG
    credentials.store(basic_reg.host, Credentials(USER, PASSWORD))
    cfg = json.loads(no_creds.read_text())
    assert base64.b64decode(cfg["auths"][basic_reg.host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    with Registry(basic_reg.host) as r:
        r.check_login()
        _diff_ids_match(resolve(r.repo("b/bb"), "1").image)
    assert credentials.erase(basic_reg.host)
    assert credentials.lookup(basic_reg.host) is None


def test_token_auth(token_reg, busybox_tar: Path, tmp_path: Path, no_creds: Path,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = token_reg.issuer
    auth = tmp_path / "auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    credentials.store(token_reg.host, Credentials(USER, PASSWORD))
    assert auth.exists() and not no_creds.exists()
    layout = tmp_path / "layout"
    make_oci_layout(busybox_tar, layout)
    from pallet.image.sources import open_archive

    with open_archive(str(layout), str(tmp_path)) as images, Registry(token_reg.host) as r:
        n0 = len(issuer.requests)
        digest, _ = push_image(r.repo("t/bb", push=True), images[0].image, "1")
        pushed = issuer.requests[n0:]
        # one token for the push scope, reused for every request (cached per scope)
        assert [q["scopes"] for q in pushed if q["scopes"]] == [["repository:t/bb:pull,push"]]
        assert all(q["user"] == USER for q in pushed)
    # anonymous pull: the issuer grants pull to anyone
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "none.json"))
    with Registry(token_reg.host) as r:
        img = resolve(r.repo("t/bb"), "1").image
        assert img.digest() == digest
        _diff_ids_match(img)
        # anonymous push is refused with a clear error
        with pytest.raises(Unauthorized, match="unauthorized|denied"):
            push_image(r.repo("t/other", push=True), img, "1")
    with Registry(token_reg.host, creds=Credentials(USER, "bad")) as r:
        with pytest.raises(Unauthorized, match=token_reg.host.replace(".", r"\.")):
            r.check_login()
    # an identity token in config.json: exchanged by the OAuth2 refresh-token POST
    (tmp_path / "idt.json").write_text(json.dumps({"auths": {token_reg.host: {"identitytoken": REFRESH}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "idt.json"))
    with Registry(token_reg.host) as r:
        n0 = len(issuer.requests)
        push_image(r.repo("t/idt", push=True), img, "1")
        assert issuer.requests[n0]["user"] == USER


def test_credential_helper(tmp_path: Path, no_creds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-credential-* protocol: store/get/erase through a helper program."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    db = tmp_path / "helper-db.json"
    helper = bindir / "docker-credential-pallettest"
    helper.write_text(f"""#!/usr/bin/env python3
import json, sys, os
db = {str(db)!r}
d = json.load(open(db)) if os.path.exists(db) else {{}}
a = sys.argv[1]; data = sys.stdin.read().strip()
if a == "store":
    o = json.loads(data); d[o["ServerURL"]] = o; json.dump(d, open(db, "w"))
elif a == "get":
    if data not in d: print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps(d[data]))
elif a == "erase":
    d.pop(data, None); json.dump(d, open(db, "w"))
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    no_creds.parent.mkdir(parents=True)
    no_creds.write_text(json.dumps({"credsStore": "pallettest"}))
    credentials.store("reg.example:5000", Credentials("bob", "pw"))
    assert "pw" not in no_creds.read_text()
    c = credentials.lookup("reg.example:5000")
    assert c is not None and (c.username, c.password) == ("bob", "pw")
    assert "pw" not in repr(c)
    assert credentials.erase("reg.example:5000")
    assert credentials.lookup("reg.example:5000") is None


def test_tls_with_certs_d(busybox_tar: Path, tmp_path: Path, no_creds: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A TLS registry: trusted through certs.d/HOST/ca.crt; refused without it; reachable
    unverified with tls_verify=False (--tls-verify=false)."""
    from client_registry import make_tls, tls_yaml

    from pallet.errors import Unavailable

    ca, cert, key = make_tls(tmp_path / "tls")
    r = start_registry(tmp_path / "reg", http_extra=tls_yaml(cert, key))
    try:
        certs_d = tmp_path / "certs.d"
        (certs_d / r.host).mkdir(parents=True)
        (certs_d / r.host / "ca.crt").write_bytes(ca.read_bytes())
        monkeypatch.setenv("PALLET_CERTS_D", str(certs_d))
        layout = tmp_path / "layout"
        make_oci_layout(busybox_tar, layout)
        from pallet.image.sources import open_archive

        with open_archive(str(layout), str(tmp_path)) as images, Registry(r.host) as reg:
            assert reg.endpoint.scheme == "https" and reg.endpoint.verify
            digest, _ = push_image(reg.repo("tls/bb", push=True), images[0].image, "1")
        monkeypatch.setenv("PALLET_CERTS_D", str(tmp_path / "none"))
        with Registry(r.host, tls_verify=True) as reg:
            with pytest.raises(Unavailable, match="certificate"):
                resolve(reg.repo("tls/bb"), "1")
        with Registry(r.host, tls_verify=False) as reg:
            assert resolve(reg.repo("tls/bb"), "1").image.digest() == digest
            assert reg.transport.endpoint.scheme == "https"
    finally:
        r.stop()


def test_insecure_falls_back_to_http(reg, no_creds: Path, busybox_tar: Path, tmp_path: Path) -> None:
    """--tls-verify=false on a plain-HTTP registry: the HTTPS probe fails, HTTP is used."""
    from pallet.distribution.client.hosts import Endpoint
    from pallet.distribution.client.transport import Transport

    push_busybox_with_skopeo(busybox_tar, tmp_path, f"docker://{reg.host}/fb/bb:1")
    t = Transport(Endpoint(reg.host, "https", False, fallback_http=True))
    resp = t.request("GET", "/v2/fb/bb/tags/list")
    assert b'"1"' in resp.read(4096)
    assert t.endpoint.scheme == "http"
    t.close()
