"""Where and how to reach a registry: scheme (HTTPS, or plain HTTP for loopback and insecure
registries), TLS trust (system CAs plus ``certs.d`` directories as docker and podman read them).

Insecure registries come from, in order: the ``tls_verify=False`` argument (``--tls-verify=false``),
``PALLET_INSECURE_REGISTRIES`` (comma separated), pallet's registries file
(``$PALLET_REGISTRIES_CONF`` or ``/etc/pallet/registries.toml``: ``insecure = ["host:port"]``), the
containers ``registries.conf`` (``[[registry]] location = ... insecure = true``) and docker's
``daemon.json`` (``insecure-registries``). Loopback hosts always use plain HTTP, as docker does.
"""
from __future__ import annotations

import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

DOCKER_HUB_HOST = "registry-1.docker.io"
# docker stores Docker Hub credentials under this key (cli/config/configfile)
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"

CERTS_DIRS = ("/etc/pallet/certs.d", "/etc/containers/certs.d", "/etc/docker/certs.d")


def registry_host(domain: str) -> str:
    """The host:port to talk to for a reference's domain (docker.io is served elsewhere)."""
    if domain in ("docker.io", "index.docker.io"):
        return DOCKER_HUB_HOST
    return domain


def auth_key(domain: str) -> str:
    """The key of ``auths`` in config.json for a registry (docker's convention)."""
    if domain in ("docker.io", "index.docker.io", DOCKER_HUB_HOST):
        return DOCKER_HUB_AUTH_KEY
    return domain


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    return name in ("localhost", "::1") or name.startswith("127.")


def _toml(path: Path) -> dict:
    try:
        import tomllib

        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, ValueError):
        return {}


def insecure_registries() -> set[str]:
    """Hosts (host[:port]) configured as insecure: plain HTTP or unverified TLS."""
    out: set[str] = set()
    env = os.environ.get("PALLET_INSECURE_REGISTRIES", "")
    out.update(h.strip() for h in env.split(",") if h.strip())
    conf = Path(os.environ.get("PALLET_REGISTRIES_CONF", "/etc/pallet/registries.toml"))
    data = _toml(conf)
    out.update(str(h) for h in data.get("insecure", []) if isinstance(h, str))
    reg = _toml(Path("/etc/containers/registries.conf"))
    for r in reg.get("registry", []) if isinstance(reg.get("registry"), list) else []:
        if isinstance(r, dict) and r.get("insecure") and isinstance(r.get("location"), str):
            out.add(r["location"])
    v1 = reg.get("registries")  # the older v1 format: [registries.insecure] registries = [...]
    if isinstance(v1, dict) and isinstance(v1.get("insecure"), dict):
        out.update(str(h) for h in v1["insecure"].get("registries", []) if isinstance(h, str))
    try:
        daemon = json.loads(Path("/etc/docker/daemon.json").read_text())
        out.update(str(h) for h in daemon.get("insecure-registries", []) if isinstance(h, str))
    except (OSError, ValueError, AttributeError):
        pass
    return out


def certs_dirs(host: str) -> list[Path]:
    """certs.d directories for ``host`` that exist (pallet's first, then podman's, docker's)."""
    roots = [os.environ["PALLET_CERTS_D"]] if os.environ.get("PALLET_CERTS_D") else []
    roots += list(CERTS_DIRS)
    out = []
    for r in roots:
        d = Path(r) / host
        if d.is_dir():
            out.append(d)
    return out


@dataclass(frozen=True)
class Endpoint:
    """How to reach one registry host."""

    host: str  # host[:port] as in the reference, after docker.io mapping
    scheme: str  # "https" or "http"
    verify: bool  # verify TLS certificates (ignored for http)
    fallback_http: bool = False  # insecure: if HTTPS fails at the first request, use plain HTTP

    def as_http(self) -> Endpoint:
        return Endpoint(self.host, "http", False)

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.scheme != "https":
            return None
        ctx = ssl.create_default_context()
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        for d in certs_dirs(self.host):
            for f in sorted(d.iterdir()):
                if f.suffix == ".crt":
                    ctx.load_verify_locations(cafile=str(f))
                elif f.suffix == ".cert":  # client certificate pair: name.cert + name.key
                    key = f.with_suffix(".key")
                    if key.exists():
                        ctx.load_cert_chain(str(f), str(key))
        return ctx


def endpoint_for(domain: str, tls_verify: bool | None = None) -> Endpoint:
    """How to reach ``domain``. ``tls_verify``: None decides from the configuration, False is
    ``--tls-verify=false``, True insists on verified HTTPS.

    - a host with a certs.d directory speaks verified HTTPS with those CAs (loopback included),
      unless ``tls_verify`` is False;
    - loopback hosts speak plain HTTP (docker treats 127.0.0.0/8 as insecure; we skip the HTTPS
      probe there, since a loopback registry without a certs.d entry is plain HTTP in practice);
    - insecure hosts (``--tls-verify=false`` or configured) try HTTPS without verification and
      fall back to plain HTTP when the first request fails, as docker and podman do;
    - everything else: verified HTTPS with the system CAs."""
    host = registry_host(domain)
    if tls_verify is not False and certs_dirs(host):
        return Endpoint(host, "https", True)
    if tls_verify is True:
        return Endpoint(host, "https", True)
    if tls_verify is False:
        return Endpoint(host, "https", False, fallback_http=True)
    if is_loopback(host):
        return Endpoint(host, "http", False)
    if host in insecure_registries():
        return Endpoint(host, "https", False, fallback_http=True)
    return Endpoint(host, "https", True)
