"""A small token server (Docker token authentication spec): ``GET /token?service=&scope=``
with Basic credentials checked against an htpasswd file answers
``{token, access_token, expires_in, issued_at}``; ``POST /token`` (OAuth2 password grant,
what docker sends with ``--password``) does the same. Tokens are JWTs signed with a private
key (RSA -> RS256, EC P-256/P-384 -> ES256/ES384). Every authenticated user gets the
actions asked for, except users named read-only, who get ``pull`` only."""
from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid as _uuid
from typing import Any

from aiohttp import web

from pallet.distribution.server.auth import Htpasswd, parse_basic
from pallet.errors import InvalidArgument

_ACTIONS = {"pull", "push", "delete", "*"}


def load_private_key(path: str) -> tuple[Any, str]:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        with open(path, "rb") as f:
            key = load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise InvalidArgument(f"cannot load private key {path}: {e}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key, {"secp256r1": "ES256", "secp384r1": "ES384"}.get(key.curve.name, "ES512")
    raise InvalidArgument(f"private key {path} is neither RSA nor EC")


def _kid(key: Any) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    parts = scope.split(":")
    if len(parts) < 3:
        return None
    return parts[0], ":".join(parts[1:-1]), [a for a in parts[-1].split(",") if a]


class TokenIssuer:
    def __init__(self, htpasswd: str, key: str, issuer: str, service: str, ttl: int = 300,
                 readonly: tuple[str, ...] = ()) -> None:
        self.db = Htpasswd(htpasswd)
        self.key, self.alg = load_private_key(key)
        self.kid = _kid(self.key)
        self.issuer, self.service, self.ttl = issuer, service, ttl
        self.readonly = set(readonly)

    def grant(self, user: str, scopes: list[str]) -> list[dict[str, Any]]:
        access = []
        for s in scopes:
            p = parse_scope(s)
            if p is None:
                continue
            typ, name, actions = p
            if typ == "repository":
                allowed = {"pull"} if user in self.readonly else _ACTIONS
                acts = [a for a in actions if a in allowed]
            elif typ == "registry" and name == "catalog" and user not in self.readonly:
                acts = [a for a in actions if a == "*"]
            else:
                acts = []
            if acts:
                access.append({"type": typ, "name": name, "actions": acts})
        return access

    def issue(self, user: str, scopes: list[str]) -> dict[str, Any]:
        import jwt

        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + self.ttl,
                  "nbf": now - 10, "iat": now, "jti": _uuid.uuid4().hex, "access": self.grant(user, scopes)}
        token = jwt.encode(claims, self.key, algorithm=self.alg, headers={"kid": self.kid})
        return {"token": token, "access_token": token, "expires_in": self.ttl,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}


def _unauthorized(msg: str) -> web.Response:
    body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": msg}]})
    return web.Response(status=401, text=body, content_type="application/json",
                        headers={"WWW-Authenticate": 'Basic realm="pallet-token"'})


def make_token_app(issuer: TokenIssuer) -> web.Application:
    async def get_token(request: web.Request) -> web.StreamResponse:
        service = request.query.get("service", "")
        if service and service != issuer.service:
            return web.json_response({"errors": [{"code": "DENIED", "message": f"unknown service {service!r}"}]},
                                     status=400)
        cred = parse_basic(request.headers.get("Authorization", ""))
        if cred is None or not issuer.db.check(*cred):
            return _unauthorized("authentication required" if cred is None else "invalid username or password")
        scopes = [s for v in request.query.getall("scope", []) for s in v.split(" ") if s]
        return web.json_response(issuer.issue(cred[0], scopes))

    async def post_token(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if form.get("grant_type") != "password":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        user, pw = str(form.get("username", "")), str(form.get("password", ""))
        if not issuer.db.check(user, pw):
            return _unauthorized("invalid username or password")
        scopes = [s for s in str(form.get("scope", "")).split(" ") if s]
        return web.json_response(issuer.issue(user, scopes))

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/token", get_token)
    app.router.add_post("/token", post_token)
    return app
