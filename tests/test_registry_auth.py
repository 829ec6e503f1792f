"""Registry auth: htpasswd Basic, Bearer tokens from ``pallet registry token-server``
(expired, forged, wrong-scope and read-only tokens refused), TLS; skopeo following the
challenges for real."""
from __future__ import annotations

import datetime
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from registry_helpers import (
    Server,
    basic,
    free_port,
    make_oci_layout,
    pallet_argv,
    small_tar_layer,
    start_registry,
    start_token_server,
    write_htpasswd,
    write_key,
    write_pub,
)

pytestmark = pytest.mark.timeout(180)
SKOPEO = shutil.which("skopeo")


def self_signed(dir: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (dir / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (dir / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    return dir / "tls.crt", dir / "tls.key"


def skopeo_push(layout: Path, dest: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SKOPEO or "skopeo", "copy", "--dest-tls-verify=false", *extra, f"oci:{layout}:v1",
                           f"docker://{dest}"], capture_output=True, text=True, timeout=120)


# -------------------------------------------------------------------------------- basic
@pytest.fixture(scope="module")
def basic_reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("basic")
    ht = write_htpasswd(d / "htpasswd", {"alice": "s3cret"})
    srv = start_registry(d / "root", "--htpasswd", str(ht))
    yield srv
    srv.stop()


def test_basic_auth(basic_reg: Server) -> None:
    r = basic_reg.request("GET", "/v2/")
    assert (r.status, r.code) == (401, "UNAUTHORIZED")
    assert r.h("WWW-Authenticate").startswith("Basic realm=")
    assert r.h("Docker-Distribution-API-Version") == "registry/2.0"
    assert basic_reg.request("GET", "/v2/", headers=basic("alice", "wrong")).status == 401
    assert basic_reg.request("GET", "/v2/", headers=basic("bob", "s3cret")).status == 401
    assert basic_reg.request("GET", "/v2/", headers={"Authorization": "Basic !!!"}).status == 401
    assert basic_reg.request("GET", "/v2/", headers=basic("alice", "s3cret")).status == 200
    r = basic_reg.request("POST", "/v2/x/blobs/uploads/?digest=sha256:" + "0" * 64, b"x")
    assert r.status == 401  # an unauthorised push stores nothing
    assert not list((basic_reg.root / "uploads").iterdir())
    d, _ = basic_reg.push_image("x/y", "v1", headers=basic("alice", "s3cret"))
    assert basic_reg.request("GET", "/v2/x/y/manifests/v1", headers=basic("alice", "s3cret")).status == 200


@pytest.mark.skipif(not SKOPEO, reason="skopeo not installed")
def test_basic_auth_skopeo(basic_reg: Server, tmp_path: Path) -> None:
    layout = make_oci_layout(tmp_path / "oci", [small_tar_layer({"hello": b"world"})], "v1")
    bad = skopeo_push(layout, f"{basic_reg.host}/sk/img:v1", "--dest-creds", "alice:nope")
    assert bad.returncode != 0
    ok = skopeo_push(layout, f"{basic_reg.host}/sk/img:v1", "--dest-creds", "alice:s3cret")
    assert ok.returncode == 0, ok.stderr


# -------------------------------------------------------------------------------- token
@pytest.fixture(scope="module")
def token_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("token")
    ht = write_htpasswd(d / "htpasswd", {"alice": "pw1", "reader": "pw2"})
    key = write_key(d / "signer.pem")
    pub = write_pub(d / "signer.pub", key)
    ts, tsrv = start_token_server(d, ht, d / "signer.pem", "reg.test", "pallet-test", "--readonly", "reader")
    realm = f"http://{tsrv.host}/token"
    srv = start_registry(d / "root", "--token-realm", realm, "--token-service", "reg.test",
                         "--token-key", str(pub), "--token-issuer", "pallet-test")
    yield {"reg": srv, "ts": tsrv, "key": key, "realm": realm, "dir": d}
    srv.stop()
    ts.terminate()
    ts.wait(10)


def get_token(env: dict[str, Any], user: str, pw: str, *scopes: str) -> str:
    q = urllib.parse.urlencode([("service", "reg.test")] + [("scope", s) for s in scopes])
    r = env["ts"].request("GET", f"/token?{q}", headers=basic(user, pw))
    assert r.status == 200, r.body
    body = r.json()
    assert body["token"] == body["access_token"] and body["expires_in"] > 0 and body["issued_at"]
    return str(body["token"])


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


def test_token_challenge_and_flow(token_env: dict[str, Any]) -> None:
    reg: Server = token_env["reg"]
    r = reg.request("GET", "/v2/team/app/manifests/latest")
    assert (r.status, r.code) == (401, "UNAUTHORIZED")
    ch = r.h("WWW-Authenticate")
    assert ch.startswith("Bearer ") and f'realm="{token_env["realm"]}"' in ch and 'service="reg.test"' in ch
    assert 'scope="repository:team/app:pull"' in ch
    assert token_env["ts"].request("GET", "/token?service=reg.test").status == 401
    assert token_env["ts"].request("GET", "/token?service=reg.test", headers=basic("alice", "bad")).status == 401
    t = get_token(token_env, "alice", "pw1", "repository:team/app:pull,push")
    d, _ = reg.push_image("team/app", "v1", headers=bearer(t))
    assert reg.request("GET", f"/v2/team/app/manifests/{d}", headers=bearer(t)).status == 200
    # /v2/ needs a valid token, any scope; the catalog needs registry:catalog:*
    assert reg.request("GET", "/v2/", headers=bearer(t)).status == 200
    assert reg.request("GET", "/v2/_catalog", headers=bearer(t)).status == 401
    tc = get_token(token_env, "alice", "pw1", "registry:catalog:*")
    assert "team/app" in reg.request("GET", "/v2/_catalog", headers=bearer(tc)).json()["repositories"]


def test_token_expired_forged_wrong_scope(token_env: dict[str, Any]) -> None:
    reg: Server = token_env["reg"]
    now = int(time.time())
    claims = {"iss": "pallet-test", "aud": "reg.test", "sub": "alice", "nbf": now - 100, "iat": now - 100,
              "exp": now + 300, "access": [{"type": "repository", "name": "t/x", "actions": ["pull", "push"]}]}
    good = jwt.encode(claims, token_env["key"], algorithm="RS256")
    assert reg.request("GET", "/v2/t/x/tags/list", headers=bearer(good)).status == 404  # NAME_UNKNOWN: allowed
    expired = jwt.encode({**claims, "exp": now - 60}, token_env["key"], algorithm="RS256")
    r = reg.request("GET", "/v2/t/x/tags/list", headers=bearer(expired))
    assert (r.status, r.code) == (401, "UNAUTHORIZED") and 'error="invalid_token"' in r.h("WWW-Authenticate")
    forged = jwt.encode(claims, rsa.generate_private_key(65537, 2048), algorithm="RS256")
    assert reg.request("GET", "/v2/t/x/tags/list", headers=bearer(forged)).status == 401
    hs = jwt.encode(claims, "shared-secret-guess-that-is-long-enough", algorithm="HS256")
    assert reg.request("GET", "/v2/t/x/tags/list", headers=bearer(hs)).status == 401
    other_aud = jwt.encode({**claims, "aud": "elsewhere"}, token_env["key"], algorithm="RS256")
    assert reg.request("GET", "/v2/t/x/tags/list", headers=bearer(other_aud)).status == 401
    other_iss = jwt.encode({**claims, "iss": "mallory"}, token_env["key"], algorithm="RS256")
    assert reg.request("GET", "/v2/t/x/tags/list", headers=bearer(other_iss)).status == 401
    assert reg.request("GET", "/v2/t/x/tags/list", headers=bearer("not.a.jwt")).status == 401
    r = reg.request("GET", "/v2/t/other/tags/list", headers=bearer(good))
    assert (r.status, r.code) == (401, "UNAUTHORIZED")
    assert 'error="insufficient_scope"' in r.h("WWW-Authenticate")
    pull_only = get_token(token_env, "reader", "pw2", "repository:t/x:pull,push")
    r = reg.request("POST", "/v2/t/x/blobs/uploads/", headers=bearer(pull_only))
    assert (r.status, r.code) == (401, "UNAUTHORIZED")
    assert not list((reg.root / "uploads").iterdir())


@pytest.mark.skipif(not SKOPEO, reason="skopeo not installed")
def test_token_skopeo_follows_challenge(token_env: dict[str, Any], tmp_path: Path) -> None:
    reg: Server = token_env["reg"]
    layout = make_oci_layout(tmp_path / "oci", [small_tar_layer({"a": b"b"})], "v1")
    ok = skopeo_push(layout, f"{reg.host}/tok/img:v1", "--dest-creds", "alice:pw1")
    assert ok.returncode == 0, ok.stderr
    ro = skopeo_push(layout, f"{reg.host}/tok/img:v2", "--dest-creds", "reader:pw2")
    assert ro.returncode != 0
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", "reader:pw2",
                          f"docker://{reg.host}/tok/img:v1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_es256_tokens(tmp_path: Path) -> None:
    from pallet.distribution.server.auth import Access, TokenAuth
    from pallet.distribution.server.errors import RegistryError
    from pallet.distribution.server.tokenserver import TokenIssuer

    write_key(tmp_path / "ec.pem", "ec")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key((tmp_path / "ec.pem").read_bytes(), None)
    write_pub(tmp_path / "ec.pub", key)
    ht = write_htpasswd(tmp_path / "ht", {"u": "p"})
    issuer = TokenIssuer(str(ht), str(tmp_path / "ec.pem"), "iss", "svc")
    assert issuer.alg == "ES256"
    tok = issuer.issue("u", ["repository:a/b:pull"])["token"]
    auth = TokenAuth("http://realm", "svc", str(tmp_path / "ec.pub"), "iss")
    assert auth.authorize(f"Bearer {tok}", [Access("repository", "a/b", "pull")]) == "u"
    with pytest.raises(RegistryError):
        auth.authorize(f"Bearer {tok}", [Access("repository", "a/b", "push")])


# ---------------------------------------------------------------------------------- TLS
def test_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    srv = start_registry(tmp_path / "root", "--tls-cert", str(cert), "--tls-key", str(key), scheme="https")
    try:
        assert srv.request("GET", "/v2/").status == 200
        srv.push_image("tls/img", "v1")
        if SKOPEO:
            out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{srv.host}/tls/img:v1"],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
    finally:
        srv.stop()


def test_bad_tls_and_auth_flags_fail_cleanly(tmp_path: Path) -> None:
    for extra in (["--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"],
                  ["--tls-cert", "/nonexistent.crt"], ["--htpasswd", str(tmp_path / "missing")],
                  ["--token-realm", "http://x/token"], ["--addr", "nonsense"]):
        p = subprocess.run(pallet_argv("registry", "serve", "--root", str(tmp_path / "r"), "--addr",
                                       f"127.0.0.1:{free_port()}", *extra), capture_output=True, text=True, timeout=30)
        assert p.returncode == 125, (extra, p.stderr)
        assert not (tmp_path / "r").exists()
        assert p.stderr.strip().count("\n") == 0 and p.stderr.startswith("Error: "), p.stderr


def test_htpasswd_formats(tmp_path: Path) -> None:
    import base64
    import hashlib
    import os

    import bcrypt

    from pallet.distribution.server.auth import Htpasswd

    f = tmp_path / "ht"
    sha1 = base64.b64encode(hashlib.sha1(b"pw-sha").digest()).decode()
    f.write_text("# comment\n\n"
                 f"b2a:{bcrypt.hashpw(b'pw-a', bcrypt.gensalt(4)).decode().replace('$2b$', '$2a$')}\n"
                 f"b2b:{bcrypt.hashpw(b'pw-b', bcrypt.gensalt(4)).decode()}\n"
                 f"sha:{{SHA}}{sha1}\n"
                 "md5:$apr1$abc$notsupported\nbroken-line\n")
    db = Htpasswd(str(f))
    assert db.check("b2a", "pw-a") and db.check("b2b", "pw-b") and db.check("sha", "pw-sha")
    assert db.check("b2b", "pw-b")  # the remembered path
    assert not db.check("b2a", "pw-b") and not db.check("sha", "x") and not db.check("md5", "x")
    assert not db.check("nobody", "x")
    time.sleep(0.01)
    f.write_text(f"b2b:{bcrypt.hashpw(b'new', bcrypt.gensalt(4)).decode()}\n")
    os.utime(f, (time.time() + 5, time.time() + 5))
    assert not db.check("b2b", "pw-b") and db.check("b2b", "new")  # re-read on change


def test_pallet_client_through_token_server(token_env: dict[str, Any], pallet, busybox_tar: Path,  # type: ignore[no-untyped-def]
                                            tmp_path: Path) -> None:
    reg: Server = token_env["reg"]
    pallet.env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")
    pallet.env["DOCKER_CONFIG"] = str(tmp_path / "docker")
    ref = f"{reg.host}/own/tok:1"
    pallet("import", str(busybox_tar), ref)
    assert pallet.fail("push", "-q", ref).rc != 0  # no credentials
    assert pallet.fail("login", "-u", "alice", "--password-stdin", reg.host, input="wrong\n").rc != 0
    pallet("login", "-u", "alice", "--password-stdin", reg.host, input="pw1\n")
    pallet("push", "-q", ref)
    pallet("rmi", ref)
    pallet("pull", "-q", ref)
