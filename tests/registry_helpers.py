"""Helpers for the registry tests: start ``pallet registry serve`` as a subprocess on a free
loopback port (bounded readiness wait), a tiny HTTP client, and OCI layouts to push."""
from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def h(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @property
    def code(self) -> str:
        try:
            return str(self.json()["errors"][0]["code"])
        except Exception:
            return ""


@dataclass
class Server:
    port: int
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)
    scheme: str = "http"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30) -> Resp:
        if self.scheme == "https":
            import ssl

            ctx = ssl._create_unverified_context()
            conn: http.client.HTTPConnection = http.client.HTTPSConnection("127.0.0.1", self.port,
                                                                             timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()

    # push helpers -----------------------------------------------------------------------
    def push_blob(self, name: str, data: bytes, headers: dict[str, str] | None = None) -> str:
        d = sha(data)
        r = self.request("POST", f"/v2/{name}/blobs/uploads/?digest={d}", data,
                         {"Content-Type": "application/octet-stream", **(headers or {})})
        assert r.status == 201, (r.status, r.body)
        return d

    def push_manifest(self, name: str, ref: str, body: bytes, media_type: str = OCI_MANIFEST,
                      headers: dict[str, str] | None = None) -> Resp:
        return self.request("PUT", f"/v2/{name}/manifests/{ref}", body,
                            {"Content-Type": media_type, **(headers or {})})

    def push_image(self, name: str, tag: str, layers: list[bytes] | None = None,
                   media_type: str = OCI_MANIFEST, extra: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> tuple[str, bytes]:
        layers = layers if layers is not None else [gzip.compress(os.urandom(64))]
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                             "diff_ids": []}}).encode()
        cd = self.push_blob(name, config, headers)
        cfg_type = OCI_CONFIG if media_type == OCI_MANIFEST else "application/vnd.docker.container.image.v1+json"
        lay_type = OCI_LAYER_GZIP if media_type == OCI_MANIFEST else "application/vnd.docker.image.rootfs.diff.tar.gzip"
        m: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type,
                             "config": {"mediaType": cfg_type, "digest": cd, "size": len(config)},
                             "layers": [{"mediaType": lay_type, "digest": self.push_blob(name, x, headers),
                                         "size": len(x)} for x in layers]}
        m.update(extra or {})
        body = json.dumps(m).encode()
        r = self.push_manifest(name, tag, body, media_type, headers)
        assert r.status == 201, (r.status, r.body)
        return sha(body), body

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _die_with_parent() -> None:
    """preexec: the server dies with the test process, even when that is SIGKILLed (timeouts)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)


def pallet_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pallet", *args]


def start_registry(root: Path, *extra: str, port: int | None = None, wait: float = 20,
                   scheme: str = "http", log: Path | None = None) -> Server:
    """Start ``pallet registry serve`` and wait (bounded) until /v2/ answers."""
    port = port or free_port()
    args = pallet_argv("registry", "serve", "--addr", f"127.0.0.1:{port}", "--root", str(root), *extra)
    if not any(a == "--access-log" for a in extra):
        args += ["--access-log", str(log) if log else "off"]
    stderr = open(root.parent / f"registry-{port}.err", "wb")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                            preexec_fn=_die_with_parent)
    srv = Server(port, root, proc, args, scheme)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"registry exited {proc.returncode}: "
                               f"{(root.parent / f'registry-{port}.err').read_text()}")
        try:
            r = srv.request("GET", "/v2/", timeout=2)
            if r.status in (200, 401):
                return srv
        except OSError:
            pass
        time.sleep(0.05)
    srv.stop(signal.SIGKILL)
    raise RuntimeError("registry did not become ready in time")


def rootfs_layer(src_tar: Path) -> bytes:
    return gzip.compress(src_tar.read_bytes(), compresslevel=1)


def make_oci_layout(dest: Path, layers: list[bytes], tag: str = "latest") -> Path:
    """An OCI image layout holding one image made of gzip ``layers``."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        d = sha(data)
        (blobs / d[7:]).write_bytes(data)
        return d

    diff_ids = [sha(gzip.decompress(x)) for x in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": put(config), "size": len(config)},
                           "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": put(x), "size": len(x)}
                                      for x in layers]}).encode()
    md = put(manifest)
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": md, "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return dest


def small_tar_layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    return gzip.compress(buf.getvalue())


def basic(user: str, pw: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    import bcrypt

    lines = []
    for u, p in users.items():
        if shutil.which("htpasswd"):  # the format ``htpasswd -B`` writes ($2y$)
            out = subprocess.run(["htpasswd", "-Bbn", u, p], capture_output=True, text=True, check=True)
            lines.append(out.stdout.strip())
        else:
            lines.append(f"{u}:" + bcrypt.hashpw(p.encode(), bcrypt.gensalt(5)).decode().replace("$2b$", "$2y$"))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_key(path: Path, kind: str = "rsa") -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key: Any = rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key


def write_pub(path: Path, key: Any) -> Path:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def start_token_server(dir: Path, htpasswd: Path, key: Path, service: str, issuer: str = "pallet-test",
                       *extra: str) -> tuple[subprocess.Popen[bytes], Server]:
    """``pallet registry token-server`` on a free port; returns (process, Server for requests)."""
    port = free_port()
    proc = subprocess.Popen(pallet_argv("registry", "token-server", "--addr", f"127.0.0.1:{port}", "--htpasswd",
                                        str(htpasswd), "--key", str(key), "--issuer", issuer, "--service", service,
                                        *extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent)
    srv = Server(port, dir, proc)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            srv.request("GET", "/token", timeout=2)
            return proc, srv
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("token server did not become ready")
