"""The HTTP layer of the registry client: pooled ``http.client`` connections used from threads.

Why ``http.client`` + threads and not aiohttp: a pull is bound by CPU work that releases the GIL
(socket reads into a buffer, sha256, isal/zlib inflate, file writes), and the store consumes layers
through a blocking ``BinaryIO`` (``Layer.compressed()``). A thread per layer reading a keep-alive
connection with ``readinto`` streams at memory speed without an event loop, without bridging async
bodies into sync readers, and without aiohttp's 160 ms import.

Behaviour: auth on 401 (Basic or Bearer challenge, tokens cached per scope), bounded retries with
exponential backoff on 429/5xx and on dropped or refused connections (``Retry-After`` honoured up to
a cap), redirects followed for GET/HEAD (the Authorization header is not sent to another host),
registry error bodies (``{"errors":[{code,message}]}``) turned into pallet errors naming the registry.
"""
from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from pallet.errors import PalletError, Unauthorized, Unavailable

from .auth import Challenge, TokenCache, parse_challenges
from .connection import (
    BLOCK,
    ERROR_BODY_CAP,
    NET_ERRORS,
    TIMEOUT,
    Pool,
    Response,
    _reason,
    registry_error,
)
from .credentials import Credentials
from .hosts import Endpoint

__all__ = ["NET_ERRORS", "Body", "Response", "Transport", "registry_error"]

log = logging.getLogger("pallet.distribution.client")

MAX_ATTEMPTS = 4
BACKOFF = 0.25  # seconds, doubled per attempt
MAX_RETRY_AFTER = 5.0
PROBE_TIMEOUT = 5.0  # the HTTPS probe of an insecure registry
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

# bytes and openers (a callable returning a fresh stream) can be replayed on a retry; an iterator
# (a streamed upload) is sent once, on a fresh connection
Body = bytes | Callable[[], IO[bytes]] | Iterator[bytes] | None


class Transport:
    """HTTP to one registry endpoint, authenticated, with retries. Thread-safe."""

    def __init__(self, endpoint: Endpoint, creds: Credentials | None = None,
                 tokens: TokenCache | None = None) -> None:
        self.endpoint = endpoint
        self.creds = creds
        self.tokens = tokens or TokenCache()
        self.pool = Pool()
        self._challenge: Challenge | None = None
        self._pinged = False
        self._ping_lock = threading.Lock()
        self._ctx: Any = None
        self._lock = threading.Lock()

    # -- connections ---------------------------------------------------------------------

    def _ssl(self) -> Any:
        with self._lock:
            if self._ctx is None:
                self._ctx = self.endpoint.ssl_context()
            return self._ctx

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.endpoint.base + path

    def close(self) -> None:
        self.pool.close()

    # -- auth ----------------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/ once, before anything else (as docker does): learns the auth challenge up
        front, and for an insecure registry decides between HTTPS and plain HTTP."""
        with self._ping_lock:
            if self._pinged:
                return
            self._ping()

    def _ping(self) -> None:
        if self.endpoint.fallback_http:
            try:
                resp = self._send("GET", self.url("/v2/"), {}, None, auth=None, timeout=PROBE_TIMEOUT)
            except NET_ERRORS as e:
                log.info("%s: HTTPS failed (%s), falling back to HTTP", self.endpoint.host, _reason(e))
                self.endpoint = self.endpoint.as_http()
                resp = self._retrying("GET", self.url("/v2/"), {}, None, auth=None)
        else:
            resp = self._retrying("GET", self.url("/v2/"), {}, None, auth=None)
        self._pinged = True
        if resp.status == 401:
            self._learn(resp)
        resp.drain()
        if resp.status not in (200, 401):
            raise registry_error(resp.status, b"", f"registry {self.endpoint.host}")

    def _learn(self, resp: Response) -> Challenge | None:
        chs = parse_challenges(resp.header("WWW-Authenticate"))
        pick = next((c for c in chs if c.scheme == "bearer"), None) or next(
            (c for c in chs if c.scheme == "basic"), None)
        if pick:
            self._challenge = pick
        return pick

    def authorization(self, scopes: Iterable[str]) -> str | None:
        """The Authorization header value for ``scopes`` (fetching a token if needed)."""
        ch = self._challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            if self.creds is None:
                raise Unauthorized(f"registry {self.endpoint.host}: unauthorized: authentication required "
                                   f"(pallet login {self.endpoint.host})")
            return self.creds.basic()
        if ch.scheme == "bearer":
            return "Bearer " + self._token(ch, tuple(sorted(set(scopes))))
        return None

    def _token(self, ch: Challenge, scopes: tuple[str, ...]) -> str:
        key = (ch.realm, ch.service, scopes)
        tok = self.tokens.get(key)
        if tok:
            return tok
        if not ch.realm.startswith(("http://", "https://")):
            raise Unauthorized(f"registry {self.endpoint.host} sent a bearer challenge without a valid realm")
        q = [("service", ch.service)] if ch.service else []
        q += [("scope", s) for s in scopes]
        sep = "&" if "?" in ch.realm else "?"
        url = ch.realm + (sep + urllib.parse.urlencode(q) if q else "")
        headers = {}
        if self.creds is not None and self.creds.username == "<token>":
            # an identity (refresh) token from config.json: docker's OAuth2 form POST (token spec,
            # "oauth.md"); the refresh token is never sent as Basic
            form = urllib.parse.urlencode([("grant_type", "refresh_token"), ("service", ch.service),
                                           ("client_id", "pallet"), ("refresh_token", self.creds.password),
                                           ("scope", " ".join(scopes))]).encode()
            resp = self._retrying("POST", ch.realm, {"Content-Type": "application/x-www-form-urlencoded"},
                                  form, auth=None)
        else:
            if self.creds is not None:
                headers["Authorization"] = self.creds.basic()
            resp = self._retrying("GET", url, headers, None, auth=None)
        body = resp.read(ERROR_BODY_CAP) if resp.status != 200 else resp.read(1 << 20)
        if resp.status != 200:
            if resp.status in (401, 403):
                raise Unauthorized(f"registry {self.endpoint.host}: unauthorized: authentication required"
                                   + (" (wrong username or password?)" if self.creds else ""))
            raise registry_error(resp.status, body, f"token server {urllib.parse.urlsplit(url).netloc}")
        try:
            obj = json.loads(body)
            tok = obj.get("token") or obj.get("access_token")
            expires = float(obj.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            tok = None
            expires = 60.0
        if not tok or not isinstance(tok, str):
            raise Unauthorized(f"token server for {self.endpoint.host} returned no token")
        self.tokens.put(key, tok, expires)
        return tok

    # -- requests ------------------------------------------------------------------------

    def _send(self, method: str, url: str, headers: dict[str, str], body: Body,
              auth: str | None, timeout: float | None = None) -> Response:
        """One request on a pooled connection; a stale pooled connection is retried once fresh."""
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        hdrs = dict(headers)
        if auth and parts.netloc == self.endpoint.host:
            hdrs["Authorization"] = auth
        hdrs.setdefault("User-Agent", "pallet/0.1")
        one_shot = isinstance(body, Iterator)
        for fresh_try in (one_shot, True):
            if fresh_try:
                conn, reused = self._new_conn(key), False
            else:
                conn, reused = self.pool.get(key, self._ssl)
            if timeout is not None:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
            try:
                data: Any = body() if callable(body) else body
                if data is None and method in ("PUT", "POST", "PATCH"):
                    hdrs.setdefault("Content-Length", "0")
                conn.request(method, target, body=data, headers=hdrs)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if reused and not fresh_try and not one_shot:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if timeout is not None:
                conn.timeout = TIMEOUT
                if conn.sock is not None:
                    conn.sock.settimeout(TIMEOUT)
            return Response(resp, conn, self.pool, key, url)
        raise AssertionError("unreachable")

    def _new_conn(self, key: tuple[str, str]) -> http.client.HTTPConnection:
        scheme, host = key
        if scheme == "https":
            return http.client.HTTPSConnection(host, timeout=TIMEOUT, context=self._ssl(), blocksize=BLOCK)
        return http.client.HTTPConnection(host, timeout=TIMEOUT, blocksize=BLOCK)

    def _retrying(self, method: str, url: str, headers: dict[str, str], body: Body,
                  auth: str | None, retry: bool = True) -> Response:
        """``_send`` with bounded retries on 429/5xx and network errors (when the body can be
        replayed: bytes or a factory)."""
        attempts = MAX_ATTEMPTS if retry and not isinstance(body, Iterator) else 1
        for n in range(attempts):
            last = n == attempts - 1
            try:
                resp = self._send(method, url, headers, body, auth)
            except NET_ERRORS as e:
                if isinstance(e, ssl.SSLCertVerificationError):
                    host = urllib.parse.urlsplit(url).netloc
                    raise Unavailable(f"registry {host}: TLS certificate not trusted ({e.verify_message}); "
                                      f"add its CA to /etc/pallet/certs.d/{host}/ca.crt or use "
                                      "--tls-verify=false") from None
                if isinstance(e, PalletError) or last:
                    host = urllib.parse.urlsplit(url).netloc
                    raise Unavailable(f"cannot reach registry {host}: {_reason(e)}") from None
                log.info("retrying %s %s after %s", method, url.split("?", 1)[0], _reason(e))  # no signed query
                time.sleep(BACKOFF * (2 ** n))
                continue
            if resp.status in RETRY_STATUS and not last:
                wait = BACKOFF * (2 ** n)
                ra = resp.header("Retry-After")
                if ra.isdigit():
                    wait = min(float(ra), MAX_RETRY_AFTER)
                resp.drain()
                log.info("retrying %s %s after HTTP %d", method, url, resp.status)
                time.sleep(wait)
                continue
            return resp
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                body: Body = None, scopes: Iterable[str] = (), ok: Iterable[int] = (200,),
                what: str = "", retry: bool = True, follow: bool = True) -> Response:
        """Send a request, authenticating and retrying as needed. A status outside ``ok``
        raises the matching pallet error (its message starts with ``what``). The caller reads
        or closes the returned response."""
        scopes = tuple(scopes)
        headers = dict(headers or {})
        ok = frozenset(ok)
        what = what or f"registry {self.endpoint.host}"
        if not self._pinged:
            self.ping()
        url = self.url(path)
        auth = self.authorization(scopes) if self._challenge else None
        resp = self._retrying(method, url, headers, body, auth, retry)
        if resp.status == 401:
            ch = self._learn(resp)
            resp.drain()
            if ch is None or (auth is not None and ch.scheme == "basic"):
                raise Unauthorized(f"{what}: unauthorized: authentication required"
                                   + (" (wrong username or password?)" if self.creds else ""))
            if ch.scheme == "bearer":
                if auth is not None:  # the cached token was refused (expired or revoked): fetch anew
                    self.tokens.drop((ch.realm, ch.service, tuple(sorted(set(scopes)))))
                if ch.params.get("scope"):
                    scopes = tuple(sorted(set(scopes) | {ch.params["scope"]}))
            if isinstance(body, bytes) or body is None or callable(body):
                auth = self.authorization(scopes)
                resp = self._retrying(method, url, headers, body, auth, retry)
        hops = 0
        while follow and resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD") and hops < 5:
            loc = resp.header("Location")
            resp.drain()
            if not loc:
                break
            url = urllib.parse.urljoin(url, loc)
            hops += 1
            # object storage redirects carry their own signature: no registry credentials there
            same = urllib.parse.urlsplit(url).netloc == self.endpoint.host
            resp = self._retrying(method, url, headers, None, auth if same else None, retry)
        if resp.status in ok:
            return resp
        if resp.status == 401:
            resp.drain()
            raise Unauthorized(f"{what}: unauthorized: authentication required"
                               + (" (wrong username or password?)" if self.creds else ""))
        err_body = b""
        if method != "HEAD":
            try:
                err_body = resp.raw.read(ERROR_BODY_CAP)
            except NET_ERRORS:
                pass
        resp.close(reuse=False)
        raise registry_error(resp.status, err_body, what)
