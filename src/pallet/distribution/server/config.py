"""Registry configuration: a YAML file with distribution's keys, then command-line flags on
top (flags win). Only the keys below are read; unknown keys are ignored like distribution
does for sections it does not use.

    version: 0.1
    http: {addr: ":5000", tls: {certificate: F, key: F}}
    storage: {filesystem: {rootdirectory: DIR}, delete: {enabled: true}}
    auth:
      htpasswd: {realm: R, path: F}
      token: {realm: URL, service: S, issuer: I, rootcertbundle: F}
    log: {accesslog: {disabled: false, path: "-"}}
    pallet: {workers: 1, max_concurrent: 1024}
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pallet.errors import InvalidArgument


@dataclass
class Config:
    addr: str = "127.0.0.1:5000"
    root: str = ""
    delete_enabled: bool = True
    tls_cert: str = ""
    tls_key: str = ""
    htpasswd: str = ""
    htpasswd_realm: str = "pallet-registry"
    token_realm: str = ""
    token_service: str = ""
    token_key: str = ""
    token_issuer: str = ""
    access_log: str = "-"
    workers: int = 1
    max_concurrent: int = 1024  # in-flight requests per worker; beyond: 429 TOOMANYREQUESTS

    def host_port(self) -> tuple[str, int]:
        host, sep, port = self.addr.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise InvalidArgument(f"invalid listen address {self.addr!r}: want HOST:PORT")
        return host.strip("[]") or "0.0.0.0", int(port)

    def validate(self) -> None:
        self.host_port()
        if not self.root:
            raise InvalidArgument("registry storage root is not set (--root or storage.filesystem.rootdirectory)")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidArgument("--tls-cert and --tls-key go together")
        token = [self.token_realm, self.token_service, self.token_key]
        if any(token) and not all(token):
            raise InvalidArgument("token auth needs --token-realm, --token-service and --token-key")
        if self.htpasswd and self.token_realm:
            raise InvalidArgument("choose one auth: --htpasswd or --token-realm")
        if self.max_concurrent < 1:
            raise InvalidArgument(f"max concurrent requests must be >= 1, not {self.max_concurrent}")
        if self.workers < 1 or self.workers > 64:
            raise InvalidArgument(f"workers must be 1..64, not {self.workers}")


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def load(path: str) -> Config:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
    except OSError as e:
        raise InvalidArgument(f"registry config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise InvalidArgument(f"registry config {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"registry config {path} is not a mapping")
    c = Config()
    addr = _get(doc, "http", "addr")
    if addr:
        addr = str(addr)
        c.addr = f"0.0.0.0{addr}" if addr.startswith(":") else addr
    pairs = {
        "root": ("storage", "filesystem", "rootdirectory"),
        "tls_cert": ("http", "tls", "certificate"),
        "tls_key": ("http", "tls", "key"),
        "htpasswd": ("auth", "htpasswd", "path"),
        "htpasswd_realm": ("auth", "htpasswd", "realm"),
        "token_realm": ("auth", "token", "realm"),
        "token_service": ("auth", "token", "service"),
        "token_issuer": ("auth", "token", "issuer"),
        "token_key": ("auth", "token", "rootcertbundle"),
        "access_log": ("log", "accesslog", "path"),
    }
    for attr, keys in pairs.items():
        v = _get(doc, *keys)
        if v is not None:
            setattr(c, attr, str(v))
    enabled = _get(doc, "storage", "delete", "enabled")
    if enabled is not None:
        c.delete_enabled = bool(enabled)
    if _get(doc, "log", "accesslog", "disabled"):
        c.access_log = "off"
    for key in ("workers", "max_concurrent"):
        v = _get(doc, "pallet", key)
        if v is not None:
            try:
                setattr(c, key, int(v))
            except (TypeError, ValueError):
                raise InvalidArgument(f"registry config {path}: pallet.{key} is not a number") from None
    return c


def merge(base: Config, **flags: Any) -> Config:
    """Flags (non-None values) override the file."""
    names = {f.name for f in fields(Config)}
    for k, v in flags.items():
        if k in names and v is not None:
            setattr(base, k, v)
    return base
