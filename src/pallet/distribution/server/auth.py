"""Access control: none, htpasswd Basic, or Bearer tokens (Docker token authentication spec:
``WWW-Authenticate: Bearer realm=...,service=...,scope=...``; JWT claims ``iss``, ``aud``,
``exp``, ``nbf``, ``access: [{type, name, actions}]``).

Every failure is a 401 UNAUTHORIZED carrying a challenge the client can follow (docker,
podman and skopeo fetch a token for the scope named there and retry); a token that is
valid but lacks the scope adds ``error="insufficient_scope"``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any, Protocol

from pallet.distribution.server.errors import RegistryError


@dataclass(frozen=True)
class Access:
    type: str  # repository | registry
    name: str  # repository name, or "catalog"
    action: str  # pull | push | delete | *


def scope_string(needed: list[Access]) -> str:
    groups: dict[tuple[str, str], list[str]] = {}
    for a in needed:
        acts = groups.setdefault((a.type, a.name), [])
        if a.action not in acts:
            acts.append(a.action)
    if any(a.action == "push" for a in needed):  # clients ask for pull,push together
        for (t, _n), acts in groups.items():
            if t == "repository" and "pull" not in acts:
                acts.insert(0, "pull")
    return " ".join(f"{t}:{n}:{','.join(acts)}" for (t, n), acts in groups.items())


class Authorizer(Protocol):
    def authorize(self, authorization: str, needed: list[Access]) -> str:
        """The user name ("" for anonymous) or raise RegistryError (401)."""


class NoAuth:
    def authorize(self, authorization: str, needed: list[Access]) -> str:
        return ""


class Htpasswd:
    """An htpasswd file: bcrypt (``$2y$``/``$2a$``/``$2b$``, what ``htpasswd -B`` writes) and
    ``{SHA}`` entries. Re-read when its mtime changes; verified passwords are remembered (by
    a keyed hash) so the bcrypt cost is paid once per user, not per request."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime = -1.0
        self._users: dict[str, str] = {}
        self._ok: set[bytes] = set()
        self._key = os.urandom(16)
        self._load()

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as e:
            from pallet.errors import InvalidArgument

            raise InvalidArgument(f"htpasswd file {self.path}: {e.strerror}") from None
        if st.st_mtime == self._mtime:
            return
        users = {}
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or ":" not in line:
                    continue
                user, h = line.split(":", 1)
                users[user] = h
        self._users, self._mtime, self._ok = users, st.st_mtime, set()

    def check(self, user: str, password: str) -> bool:
        try:
            self._load()
        except Exception:  # a vanished file denies, never crashes a request
            return False
        h = self._users.get(user)
        if h is None:
            return False
        key = hmac.new(self._key, f"{user}\0{password}\0{h}".encode(), hashlib.sha256).digest()
        if key in self._ok:
            return True
        ok = False
        if h.startswith(("$2y$", "$2a$", "$2b$")):
            import bcrypt

            try:
                ok = bcrypt.checkpw(password.encode(), ("$2b$" + h[4:]).encode())
            except ValueError:
                ok = False
        elif h.startswith("{SHA}"):
            want = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
            ok = hmac.compare_digest(want, h[5:])
        if ok:
            self._ok.add(key)
        return ok


def parse_basic(authorization: str) -> tuple[str, str] | None:
    if not authorization[:6].lower() == "basic ":
        return None
    try:
        raw = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    if ":" not in raw:
        return None
    user, pw = raw.split(":", 1)
    return user, pw


class BasicAuth:
    def __init__(self, htpasswd: str, realm: str = "pallet-registry") -> None:
        self.db = Htpasswd(htpasswd)
        self.realm = realm

    def authorize(self, authorization: str, needed: list[Access]) -> str:
        cred = parse_basic(authorization) if authorization else None
        if cred and self.db.check(*cred):
            return cred[0]
        msg = "authentication required" if not authorization else "invalid username or password"
        raise RegistryError("UNAUTHORIZED", msg,
                            headers={"WWW-Authenticate": f'Basic realm="{self.realm}"'})


def load_public_keys(path: str) -> list[Any]:
    """Public keys from a PEM file holding public keys and/or certificates (a bundle)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    with open(path, "rb") as f:
        data = f.read()
    keys: list[Any] = []
    for block in data.split(b"-----END ")[:-1]:
        start = block.rfind(b"-----BEGIN ")
        if start < 0:
            continue
        kind = block[start + 11:block.index(b"-----", start + 11)]
        pem = block[start:] + b"-----END " + kind + b"-----\n"
        if kind == b"CERTIFICATE":
            keys.append(x509.load_pem_x509_certificate(pem).public_key())
        elif kind == b"PUBLIC KEY":
            keys.append(load_pem_public_key(pem))
    if not keys:
        from pallet.errors import InvalidArgument

        raise InvalidArgument(f"token key file {path} holds no PEM public key or certificate")
    return keys


class TokenAuth:
    ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"]

    def __init__(self, realm: str, service: str, keyfile: str, issuer: str = "") -> None:
        self.realm, self.service, self.issuer = realm, service, issuer
        self.keys = load_public_keys(keyfile)

    def _challenge(self, needed: list[Access], error: str = "") -> dict[str, str]:
        c = f'Bearer realm="{self.realm}",service="{self.service}"'
        if needed:
            c += f',scope="{scope_string(needed)}"'
        if error:
            c += f',error="{error}"'
        return {"WWW-Authenticate": c}

    def _decode(self, token: str) -> dict[str, Any] | None:
        import jwt

        for key in self.keys:
            try:
                claims = jwt.decode(token, key, algorithms=self.ALGORITHMS, audience=self.service,
                                    issuer=self.issuer or None, leeway=5,
                                    options={"require": ["exp"], "verify_iss": bool(self.issuer)})
                return claims if isinstance(claims, dict) else None
            except jwt.PyJWTError:
                continue
        return None

    def authorize(self, authorization: str, needed: list[Access]) -> str:
        if authorization[:7].lower() != "bearer ":
            raise RegistryError("UNAUTHORIZED", "authentication required", headers=self._challenge(needed))
        claims = self._decode(authorization[7:].strip())
        if claims is None:
            raise RegistryError("UNAUTHORIZED", "invalid, expired or untrusted token",
                                headers=self._challenge(needed, "invalid_token"))
        granted: set[tuple[str, str, str]] = set()
        for entry in claims.get("access") or []:
            if not isinstance(entry, dict):
                continue
            for act in entry.get("actions") or []:
                granted.add((str(entry.get("type")), str(entry.get("name")), str(act)))
        missing = [a for a in needed if (a.type, a.name, a.action) not in granted
                   and (a.type, a.name, "*") not in granted]
        if missing:
            raise RegistryError("UNAUTHORIZED", "token does not grant the requested access",
                                detail=[{"Type": a.type, "Name": a.name, "Action": a.action} for a in missing],
                                headers=self._challenge(needed, "insufficient_scope"))
        return str(claims.get("sub", ""))
