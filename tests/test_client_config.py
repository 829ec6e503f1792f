"""Registry client configuration without a network: endpoints (HTTP/HTTPS, insecure lists, certs.d),
credential lookup order, WWW-Authenticate parsing, login argument normalisation."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pallet.distribution.client import credentials
from pallet.distribution.client.auth import parse_challenges
from pallet.distribution.client.hosts import auth_key, endpoint_for


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PALLET_CERTS_D", str(tmp_path / "certs.d"))
    monkeypatch.setenv("PALLET_REGISTRIES_CONF", str(tmp_path / "registries.toml"))
    monkeypatch.delenv("PALLET_INSECURE_REGISTRIES", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)


def test_endpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    e = endpoint_for("docker.io")
    assert (e.host, e.scheme, e.verify) == ("registry-1.docker.io", "https", True)
    assert endpoint_for("localhost:5000").scheme == "http"
    assert endpoint_for("127.0.0.1:5000").scheme == "http"
    assert endpoint_for("reg.example:5000").scheme == "https"
    # --tls-verify=false: HTTPS unverified, falling back to HTTP
    e = endpoint_for("reg.example:5000", tls_verify=False)
    assert (e.scheme, e.verify, e.fallback_http) == ("https", False, True)
    monkeypatch.setenv("PALLET_INSECURE_REGISTRIES", "a.example, b.example:5000")
    assert endpoint_for("b.example:5000").fallback_http
    (tmp_path / "registries.toml").write_text('insecure = ["c.example"]\n')
    assert endpoint_for("c.example").fallback_http
    assert endpoint_for("d.example").verify
    # a certs.d directory makes even a loopback registry verified HTTPS
    (tmp_path / "certs.d" / "127.0.0.1:5443").mkdir(parents=True)
    e = endpoint_for("127.0.0.1:5443")
    assert (e.scheme, e.verify) == ("https", True)


def test_auth_keys() -> None:
    assert auth_key("docker.io") == "https://index.docker.io/v1/"
    assert auth_key("reg.example:5000") == "reg.example:5000"


def test_credentials_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def auth(u: str, p: str) -> dict[str, str]:
        return {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()}

    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": auth("hub", "h"), "https://r.example": auth("r", "1")}}))
    c = credentials.lookup("docker.io")
    assert c is not None and (c.username, c.password) == ("hub", "h")
    c = credentials.lookup("r.example")  # keys with a scheme are found too (old docker files)
    assert c is not None and c.username == "r"
    assert credentials.lookup("other.example") is None
    # REGISTRY_AUTH_FILE is read first
    (tmp_path / "auth.json").write_text(json.dumps({"auths": {"r.example": auth("podman", "2")}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    c = credentials.lookup("r.example")
    assert c is not None and c.username == "podman"
    # a missing helper is a clear error, not a silent anonymous pull
    (tmp_path / "auth.json").write_text(json.dumps({"credHelpers": {"r.example": "nosuchhelper"}}))
    from pallet.errors import Unavailable

    with pytest.raises(Unavailable, match="docker-credential-nosuchhelper"):
        credentials.lookup("r.example")


def test_store_writes_0600(tmp_path: Path) -> None:
    path = credentials.store("r.example", credentials.Credentials("u", "p"))
    assert path == tmp_path / "docker" / "config.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert credentials.erase("r.example") and not credentials.erase("r.example")


def test_challenges() -> None:
    (c,) = parse_challenges('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"')
    assert (c.scheme, c.realm, c.service, c.params["scope"]) == ("bearer", "https://auth.example/token", "reg",
                                                                  "repository:a/b:pull")
    chs = parse_challenges('Basic realm="x", Bearer realm="y",service="z"')
    assert [c.scheme for c in chs] == ["basic", "bearer"]


def test_registry_domain() -> None:
    from pallet.engine.distribution import registry_domain

    assert registry_domain(None) == "docker.io"
    assert registry_domain("https://index.docker.io/v1/") == "docker.io"
    assert registry_domain("http://reg.example:5000/v2/") == "reg.example:5000"
