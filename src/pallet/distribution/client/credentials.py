"""Registry credentials in a docker-compatible ``config.json``.

Read order (first that has an entry wins): ``$REGISTRY_AUTH_FILE`` (podman's auth.json, same
format), ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``. Inside a file:
``credHelpers[host]``, then ``credsStore``, then ``auths[host].auth`` (base64 ``user:password``).
Helpers are ``docker-credential-NAME`` programs speaking docker's protocol: ``get`` (server URL on
stdin, JSON ``{"Username","Secret"}`` out), ``store`` (JSON in), ``erase`` (server URL in).

Secrets never reach logs or error messages: ``Credentials.__repr__`` hides them.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pallet.errors import InvalidArgument, NotFound, Unavailable

from .hosts import DOCKER_HUB_AUTH_KEY, auth_key

_HELPER_TIMEOUT = 30.0


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str  # or an identity token when username is "<token>"

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"

    __str__ = __repr__

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def config_paths() -> list[Path]:
    out = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        out.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    out.append(docker_config_path())
    return out


def docker_config_path() -> Path:
    d = os.environ.get("DOCKER_CONFIG")
    if d:
        return Path(d) / "config.json"
    return Path(os.path.expanduser("~")) / ".docker" / "config.json"


def write_path() -> Path:
    """Where ``login`` stores: the auth file podman would use if set, else docker's."""
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return Path(os.environ["REGISTRY_AUTH_FILE"])
    return docker_config_path()


def _load(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise Unavailable(f"cannot read {path}: {e.strerror}") from None
    if len(data) > 16 * 1024 * 1024:
        raise InvalidArgument(f"{path} is too large")
    try:
        obj = json.loads(data or b"{}")
    except ValueError:
        raise InvalidArgument(f"{path} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{path} is not a JSON object")
    return obj


def _keys_for(domain: str) -> list[str]:
    key = auth_key(domain)
    keys = [key]
    if key == DOCKER_HUB_AUTH_KEY:
        keys += ["docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1"]
    else:
        keys += [f"https://{key}", f"http://{key}", f"https://{key}/v1/", f"https://{key}/v2/"]
    return keys


def _helper(name: str, action: str, data: str) -> str:
    prog = f"docker-credential-{name}"
    try:
        p = subprocess.run([prog, action], input=data.encode(), capture_output=True,
                           timeout=_HELPER_TIMEOUT)
    except FileNotFoundError:
        raise Unavailable(f"credential helper {prog} is not installed") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"credential helper {prog} {action} timed out") from None
    out = p.stdout.decode(errors="replace").strip()
    if p.returncode != 0:
        if "credentials not found" in out.lower():
            raise NotFound(f"no credentials for {data} in {prog}")
        # the helper's output may echo input; print only its first line, never our secrets
        raise Unavailable(f"credential helper {prog} {action} failed: {out.splitlines()[0][:200] if out else p.returncode}")
    return out


def lookup(domain: str) -> Credentials | None:
    """Credentials for a registry domain (``docker.io`` or ``host:port``), or None."""
    for path in config_paths():
        cfg = _load(path)
        key = auth_key(domain)
        helper = (cfg.get("credHelpers") or {}).get(key) or (cfg.get("credHelpers") or {}).get(domain)
        helper = helper or cfg.get("credsStore")
        if helper:
            try:
                out = json.loads(_helper(str(helper), "get", key))
                if out.get("Username") or out.get("Secret"):
                    return Credentials(str(out.get("Username", "")), str(out.get("Secret", "")))
            except NotFound:
                pass
            except ValueError:
                raise Unavailable(f"credential helper docker-credential-{helper} returned bad JSON") from None
        auths = cfg.get("auths") or {}
        for k in _keys_for(domain):
            ent = auths.get(k)
            if not isinstance(ent, dict):
                continue
            if ent.get("identitytoken"):
                return Credentials("<token>", str(ent["identitytoken"]))
            if ent.get("auth"):
                try:
                    user, _, pw = base64.b64decode(ent["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    raise InvalidArgument(f"{path}: invalid auth entry for {k}") from None
                return Credentials(user, pw)
            if ent.get("username"):
                return Credentials(str(ent["username"]), str(ent.get("password", "")))
    return None


def _atomic_write(path: Path, cfg: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def store(domain: str, creds: Credentials) -> Path:
    """Save credentials as docker login does: through the helper when one is configured,
    else base64 in ``auths``. Returns the file written."""
    path = write_path()
    cfg = _load(path)
    key = auth_key(domain)
    helper = (cfg.get("credHelpers") or {}).get(key) or cfg.get("credsStore")
    if helper:
        _helper(str(helper), "store", json.dumps(
            {"ServerURL": key, "Username": creds.username, "Secret": creds.password}))
        cfg.setdefault("auths", {})[key] = {}
    else:
        raw = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        cfg.setdefault("auths", {})[key] = {"auth": raw}
    _atomic_write(path, cfg)
    return path


def erase(domain: str) -> bool:
    """Remove stored credentials; False when there were none."""
    path = write_path()
    cfg = _load(path)
    key = auth_key(domain)
    found = False
    helper = (cfg.get("credHelpers") or {}).get(key) or cfg.get("credsStore")
    if helper:
        try:
            _helper(str(helper), "erase", key)
            found = True
        except NotFound:
            pass
    auths = cfg.get("auths") or {}
    for k in _keys_for(domain):
        if k in auths:
            del auths[k]
            found = True
    if found:
        _atomic_write(path, cfg)
    return found
