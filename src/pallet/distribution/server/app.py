"""The registry's aiohttp application: one catch-all route, dispatched on the *raw* path
(see names.py), authorised, and every refusal turned into the spec's error body. No input
reaches a 500: unexpected exceptions are logged and answered 500 UNKNOWN, which tests treat
as a bug."""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from pallet.distribution.server import blobs, keys, manifest_handlers
from pallet.distribution.server.auth import Access, Authorizer, BasicAuth, NoAuth, TokenAuth
from pallet.distribution.server.config import Config
from pallet.distribution.server.errors import RegistryError, unsupported
from pallet.distribution.server.manifest_handlers import paginate
from pallet.distribution.server.metrics import Metrics
from pallet.distribution.server.names import Route, check_name, route
from pallet.distribution.server.state import State, attach, state_of
from pallet.distribution.server.storage import open_driver

log = logging.getLogger("pallet.registry")
API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
HANDLERS: dict[tuple[str, str], Any] = {**blobs.HANDLERS, **manifest_handlers.HANDLERS}
_DISCONNECTS = (ConnectionResetError, ConnectionError)


def make_authorizer(c: Config) -> Authorizer:
    if c.htpasswd:
        return BasicAuth(c.htpasswd, c.htpasswd_realm)
    if c.token_realm:
        return TokenAuth(c.token_realm, c.token_service, c.token_key, c.token_issuer)
    return NoAuth()


def needed_access(r: Route, request: web.Request) -> list[Access]:
    if r.kind == "base":
        return []
    if r.kind == "catalog":
        return [Access("registry", "catalog", "*")]
    m = request.method
    action = "pull" if m in ("GET", "HEAD") else "delete" if m == "DELETE" else "push"
    need = [Access("repository", r.name, action)]
    if action == "push":
        need.insert(0, Access("repository", r.name, "pull"))
    src = request.query.get("from") if r.kind == "uploads" else None
    if src and request.query.get("mount"):
        need.append(Access("repository", check_name(src), "pull"))
    return need


def error_response(request: web.Request, e: RegistryError) -> web.Response:
    state_of(request).metrics.error(e.code)
    request[keys.ERROR_CODE] = e.code
    # the session headers some errors carry say Content-Length: 0; the error body sets its own
    headers = {"Content-Type": "application/json; charset=utf-8",
               **{k: v for k, v in e.headers.items() if k.lower() != "content-length"}}
    return web.Response(status=e.status, body=e.body(), headers=headers)


async def _base(request: web.Request, name: str = "", ref: str = "") -> web.StreamResponse:
    return web.json_response({})


async def _catalog(request: web.Request, name: str = "", ref: str = "") -> web.StreamResponse:
    repos = state_of(request).driver.repositories()
    page, headers = paginate(request, repos, "/v2/_catalog")
    return web.json_response({"repositories": page}, headers=headers)


async def _metrics(request: web.Request) -> web.StreamResponse:
    return web.Response(text=state_of(request).metrics.render(), content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"})


async def dispatch(request: web.Request) -> web.StreamResponse:
    raw = request.raw_path.split("?", 1)[0]
    st = state_of(request)
    if st.in_flight >= st.config.max_concurrent:
        return error_response(request, RegistryError(
            "TOOMANYREQUESTS", "too many requests in flight; retry later", headers={"Retry-After": "1"}))
    st.in_flight += 1
    try:
        return await _dispatch(request, raw, st)
    finally:
        st.in_flight -= 1


async def _dispatch(request: web.Request, raw: str, st: State) -> web.StreamResponse:
    try:
        if raw == "/metrics" and request.method == "GET":
            return await _metrics(request)
        r = route(raw)
        if r is None:
            raise RegistryError("NAME_UNKNOWN", "no such endpoint", status=404, detail={"path": raw[:200]})
        if r.kind == "base":
            handler: Any = _base if request.method in ("GET", "HEAD") else None
        elif r.kind == "catalog":
            handler = _catalog if request.method == "GET" else None
        else:
            handler = HANDLERS.get((r.kind, request.method))
        if handler is None:
            raise unsupported(f"{request.method} is not supported on this endpoint")
        request[keys.USER] = st.auth.authorize(request.headers.get("Authorization", ""), needed_access(r, request))
        return await handler(request, r.name, r.ref)
    except RegistryError as e:
        return error_response(request, e)
    except _DISCONNECTS:
        return error_response(request, RegistryError("BLOB_UPLOAD_INVALID", "client went away during the request"))
    except web.HTTPException:
        raise
    except Exception as e:  # a bug: never let it look like a hang-up
        import aiohttp

        if isinstance(e, aiohttp.ClientPayloadError | aiohttp.http_exceptions.HttpProcessingError):
            return error_response(request, RegistryError("BLOB_UPLOAD_INVALID", f"malformed request body: {e}"))
        log.exception("internal error on %s %s", request.method, raw)
        return error_response(request, RegistryError("UNKNOWN", "internal error", status=500))


async def _add_api_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[API_VERSION[0]] = API_VERSION[1]


def make_app(config: Config, metrics: Metrics | None = None) -> web.Application:
    """The WSGI-like application for ``config`` (root must be set)."""
    config.validate()
    driver = open_driver("filesystem", rootdirectory=config.root)
    app = web.Application(client_max_size=1 << 20)
    attach(app, State(driver, config, make_authorizer(config), metrics or Metrics()))
    app.router.add_route("*", "/{tail:.*}", dispatch)
    app.on_response_prepare.append(_add_api_header)
    return app
