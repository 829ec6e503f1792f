"""Registry authentication: the ``WWW-Authenticate`` challenge (RFC 7235), Basic, and docker's
Bearer token flow (distribution docs/spec/auth/token.md): GET ``realm?service=S&scope=A&scope=B``
with Basic credentials when we have them; the JSON answer's ``token`` (or ``access_token``) is
sent as ``Authorization: Bearer``. Tokens are cached per (realm, service, scopes) until they expire.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

_PARAM_RE = re.compile(r'([a-zA-Z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse one ``WWW-Authenticate`` value, which may hold several challenges."""
    out: list[Challenge] = []
    i = 0
    header = header.strip()
    while i < len(header):
        m = re.match(r"\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)\s*", header[i:])
        if not m:
            break
        scheme = m.group(1).lower()
        i += m.end()
        params: dict[str, str] = {}
        while i < len(header):
            pm = _PARAM_RE.match(header, i)
            if not pm:
                break
            val = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", val or "")
            i = pm.end()
            sep = re.match(r"\s*,\s*", header[i:])
            if not sep:
                break
            # a new challenge starts when the next word is not followed by '='
            nxt = header[i + sep.end():]
            if re.match(r"[A-Za-z][A-Za-z0-9_-]*\s+[A-Za-z0-9_.-]+\s*=", nxt) or re.match(
                    r"[A-Za-z][A-Za-z0-9_-]*\s*$", nxt):
                i += sep.end()
                break
            i += sep.end()
        out.append(Challenge(scheme, params))
    return out


def scope_for(path: str, actions: str) -> str:
    return f"repository:{path}:{actions}"


@dataclass
class _Token:
    value: str
    expires: float


class TokenCache:
    """Thread-safe cache of bearer tokens keyed by (realm, service, scopes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _Token] = {}

    def get(self, key: tuple[str, str, tuple[str, ...]]) -> str | None:
        with self._lock:
            t = self._tokens.get(key)
            if t and t.expires > time.monotonic():
                return t.value
            return None

    def drop(self, key: tuple[str, str, tuple[str, ...]]) -> None:
        with self._lock:
            self._tokens.pop(key, None)

    def put(self, key: tuple[str, str, tuple[str, ...]], value: str, expires_in: float) -> None:
        # renew 10 s early; a token without expires_in lasts 60 s (token spec)
        with self._lock:
            self._tokens[key] = _Token(value, time.monotonic() + max(expires_in - 10, 5))
