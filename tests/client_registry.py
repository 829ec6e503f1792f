"""Test helpers for the registry client: Debian's distribution registry (2.8) on a free loopback
port (no auth, htpasswd Basic, or token auth with an in-test token issuer), started per module."""
from __future__ import annotations

import base64
import datetime
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REGISTRY = shutil.which("docker-registry")
USER, PASSWORD = "alice", "s3cret-pw"
REFRESH = "refresh-token-0123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reg:
    host: str
    proc: subprocess.Popen
    data: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start_registry(tmp: Path, auth_yaml: str = "", http_extra: str = "") -> Reg:
    if REGISTRY is None:
        pytest.skip("docker-registry (distribution) is not installed")
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "config.yml"
    cfg.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage:\n  filesystem: {{rootdirectory: {tmp / 'data'}}}\n  delete: {{enabled: true}}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{http_extra}" + auth_yaml)
    log = open(tmp / "log", "wb")
    proc = subprocess.Popen([REGISTRY, "serve", str(cfg)], stdout=log, stderr=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"registry exited: {(tmp / 'log').read_text()}") from None
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("registry did not start in 15 s")
    return Reg(f"127.0.0.1:{port}", proc, tmp / "data")


def htpasswd_yaml(tmp: Path) -> str:
    out = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True)
    f = tmp / "htpasswd"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(out.stdout)
    return f"auth:\n  htpasswd: {{realm: test-realm, path: {f}}}\n"


class TokenIssuer:
    """A docker token server: Basic-authenticates alice (anonymous gets pull only), signs RS256
    JWTs with a self-signed certificate the registry trusts (x5c header, distribution 2.8)."""

    SERVICE = "pallet-test-registry"
    ISSUER = "pallet-test-issuer"

    def __init__(self, tmp: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pallet test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        tmp.mkdir(parents=True, exist_ok=True)
        self.cert_path = tmp / "token-cert.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.requests: list[dict[str, object]] = []
        issuer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                issuer.handle(self)

            def do_POST(self) -> None:  # noqa: N802
                issuer.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def yaml(self) -> str:
        return (f"auth:\n  token:\n    realm: {self.realm}\n    service: {self.SERVICE}\n"
                f"    issuer: {self.ISSUER}\n    rootcertbundle: {self.cert_path}\n")

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        import jwt

        q = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
        user = None
        if h.command == "POST":  # OAuth2 refresh-token grant (identity tokens)
            n = int(h.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(h.rfile.read(n).decode())
            if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [REFRESH]:
                h.send_response(401)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            user = USER
            q = {"service": form.get("service", []), "scope": " ".join(form.get("scope", [])).split()}
        authz = h.headers.get("Authorization", "")
        if authz.startswith("Basic "):
            u, _, p = base64.b64decode(authz[6:]).decode().partition(":")
            if (u, p) != (USER, PASSWORD):
                h.send_response(401)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            user = u
        scopes = q.get("scope", [])
        self.requests.append({"user": user, "scopes": scopes, "service": q.get("service")})
        access = []
        for s in scopes:
            typ, _, rest = s.partition(":")
            name, _, actions = rest.rpartition(":")
            acts = [a for a in actions.split(",") if a and (user or a == "pull")]
            access.append({"type": typ, "name": name, "actions": acts})
        now = int(time.time())
        claims = {"iss": self.ISSUER, "sub": user or "", "aud": self.SERVICE, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": f"{now}-{len(self.requests)}", "access": access}
        tok = jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": [self.x5c]})
        body = json.dumps({"token": tok, "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def skopeo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=timeout)


def salted_tar(tar: Path, out: Path, salt: str) -> Path:
    """A copy of ``tar`` with one extra file, so its layer is unique (skopeo reuses blobs it
    knows across pushes, which would hide the compression asked for)."""
    import io
    import tarfile

    shutil.copyfile(tar, out)
    with tarfile.open(out, "a") as tf:
        data = salt.encode()
        ti = tarfile.TarInfo("salt.txt")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    return out


def push_busybox_with_skopeo(busybox_tar: Path, tmp: Path, dest: str, *extra: str) -> None:
    """Make a one-layer OCI layout from the busybox rootfs tar (salted with ``dest``) and
    skopeo-copy it to ``dest``."""
    layout = tmp / "bb-oci"
    if not (layout / "index.json").exists():
        make_oci_layout(salted_tar(busybox_tar, tmp / "salted.tar", dest + " ".join(extra)), layout)
    r = skopeo("copy", "--dest-tls-verify=false", *extra, f"oci:{layout}:latest", dest)
    assert r.returncode == 0, r.stderr


def make_oci_layout(tar: Path, layout: Path, arch: str = "amd64") -> str:
    """An OCI image layout with one uncompressed layer (skopeo compresses on copy)."""
    import hashlib

    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    data = tar.read_bytes()
    ld = hashlib.sha256(data).hexdigest()
    (blobs / ld).write_bytes(data)
    cfg = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                      "rootfs": {"type": "layers", "diff_ids": [f"sha256:{ld}"]}}).encode()
    cd = hashlib.sha256(cfg).hexdigest()
    (blobs / cd).write_bytes(cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": f"sha256:{cd}", "size": len(cfg)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                  "digest": f"sha256:{ld}", "size": len(data)}]}).encode()
    md = hashlib.sha256(man).hexdigest()
    (blobs / md).write_bytes(man)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{md}",
         "size": len(man), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
    return f"sha256:{md}"


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def make_tls(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.crt, server.crt, server.key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pallet test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    tmp.mkdir(parents=True, exist_ok=True)
    paths = (tmp / "ca.crt", tmp / "server.crt", tmp / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def tls_yaml(cert: Path, key: Path) -> str:
    return f"  tls: {{certificate: {cert}, key: {key}}}\n"
