"""Manifest, tag-list and referrers endpoints (distribution spec "Pulling manifests",
"Pushing manifests", "Listing tags", "Listing referrers", "Deleting manifests")."""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from pallet.distribution.server import keys
from pallet.distribution.server import manifests as mf
from pallet.distribution.server.errors import (
    RegistryError,
    manifest_unknown,
    name_unknown,
    unsupported,
)
from pallet.distribution.server.names import is_tag, parse_digest
from pallet.distribution.server.state import State, state_of
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest
from pallet.oci.manifest import MAX_MANIFEST_SIZE, Platform


def _resolve(st: State, name: str, ref: str) -> Digest:
    drv = st.driver
    if ":" in ref:
        d = parse_digest(ref)
        if drv.manifest_linked(name, d):
            return d
    elif is_tag(ref):
        d2 = drv.tag_get(name, ref)
        if d2 is not None and drv.manifest_linked(name, d2):
            return d2
    if not drv.repo_exists(name):
        raise name_unknown(name)
    raise manifest_unknown(ref)


def _load(st: State, d: Digest, ref: str) -> tuple[bytes, str]:
    hit = st.cache_get(d)
    if hit is not None:
        return hit
    body = st.driver.blob_read(d, MAX_MANIFEST_SIZE)
    if body is None:
        raise manifest_unknown(ref)
    media_type = mf.media_type_of(body)
    st.cache_put(d, body, media_type)
    return body, media_type


async def manifest_get(request: web.Request, name: str, ref: str) -> web.StreamResponse:
    st = state_of(request)
    d = _resolve(st, name, ref)
    body, media_type = _load(st, d, ref)
    accepted = mf.accepts(request.headers.getall("Accept", []))
    if accepted is not None and media_type not in accepted:
        # a client that cannot read indexes gets the host platform's entry (as distribution does)
        if media_type in mt.INDEXES and accepted & mt.MANIFESTS:
            p = Platform.host()
            child = mf.platform_child(body, (p.os, p.architecture))
            if child is not None and st.driver.manifest_linked(name, child):
                cbody, ctype = _load(st, child, ref)
                if ctype in accepted:
                    d, body, media_type = child, cbody, ctype
        if media_type not in accepted:
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest is {media_type}, which the Accept header "
                                "does not allow", detail={"reference": ref, "mediaType": media_type})
    headers = {"Docker-Content-Digest": str(d), "Content-Type": media_type, "ETag": f'"{d}"'}
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return web.Response(status=200, headers=headers)
    return web.Response(status=200, body=body, headers=headers)


async def _read_capped(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_MANIFEST_SIZE:
        raise RegistryError("MANIFEST_INVALID", f"manifest is over {MAX_MANIFEST_SIZE} bytes", status=413)
    parts: list[bytes] = []
    n = 0
    async for chunk in request.content.iter_any():
        n += len(chunk)
        if n > MAX_MANIFEST_SIZE:
            raise RegistryError("MANIFEST_INVALID", f"manifest is over {MAX_MANIFEST_SIZE} bytes", status=413)
        parts.append(chunk)
    request[keys.BYTES_IN] = n
    return b"".join(parts)


async def manifest_put(request: web.Request, name: str, ref: str) -> web.StreamResponse:
    st = state_of(request)
    drv = st.driver
    want: Digest | None = None
    if ":" in ref:
        want = parse_digest(ref)
    elif not is_tag(ref):
        raise RegistryError("MANIFEST_INVALID", f"invalid tag {ref[:200]!r}", detail={"reference": ref[:200]})
    body = await _read_capped(request)
    parsed = mf.check(body, request.headers.get("Content-Type", ""))
    d = Digest.of(body, want.algorithm if want else "sha256")
    if want is not None and want != d:
        raise RegistryError("DIGEST_INVALID", f"manifest digest is {d}, not {want}")
    missing = []
    for b in parsed.blobs():
        if not drv.layer_linked(name, b) or not drv.blob_touch(b):
            missing.append(str(b))
    for c in parsed.children():
        if not drv.manifest_linked(name, c):
            missing.append(str(c))
    if missing:
        raise RegistryError("MANIFEST_BLOB_UNKNOWN", "manifest references content unknown to the repository",
                            status=400, detail={"digests": missing[:20]})
    drv.blob_put(d, body)
    drv.manifest_link(name, d)
    if want is None:
        drv.tag_set(name, ref, d)
    st.cache_put(d, body, parsed.media_type)
    headers = {"Location": f"/v2/{name}/manifests/{d}", "Docker-Content-Digest": str(d),
               "Content-Length": "0"}
    subject = parsed.subject
    if subject is not None:
        drv.referrer_add(name, subject, d, mf.referrer_descriptor(parsed, d, len(body)))
        headers["OCI-Subject"] = str(subject)
    return web.Response(status=201, headers=headers)


async def manifest_delete(request: web.Request, name: str, ref: str) -> web.StreamResponse:
    st = state_of(request)
    drv = st.driver
    if not st.config.delete_enabled:
        raise unsupported("deletion is disabled (storage.delete.enabled)")
    if ":" not in ref:
        if not is_tag(ref) or not drv.tag_remove(name, ref):
            raise manifest_unknown(ref)
        return web.Response(status=202, headers={"Content-Length": "0"})
    d = parse_digest(ref)
    if not drv.manifest_linked(name, d):
        raise manifest_unknown(ref)
    body = drv.blob_read(d, MAX_MANIFEST_SIZE)
    if body is not None:
        try:
            subj = json.loads(body).get("subject")
            if isinstance(subj, dict) and "digest" in subj:
                drv.referrer_remove(name, parse_digest(str(subj["digest"])), d)
        except (ValueError, AttributeError, RegistryError):
            pass
    for t in drv.tags(name):
        if drv.tag_get(name, t) == d:
            drv.tag_remove(name, t)
    drv.manifest_unlink(name, d)
    return web.Response(status=202, headers={"Content-Length": "0"})


def paginate(request: web.Request, items: list[str], path: str) -> tuple[list[str], dict[str, str]]:
    """``n`` and ``last`` (distribution spec "Listing tags"); a Link header when more remain."""
    q = request.query
    last = q.get("last")
    if last:
        items = [i for i in items if i > last]
    n_text = q.get("n")
    if n_text is None or n_text == "":
        return items, {}
    if not n_text.isdigit() or len(n_text) > 9:
        raise RegistryError("PAGINATION_NUMBER_INVALID", f"invalid number of results requested: {n_text[:20]!r}")
    n = int(n_text)
    page = items[:n]
    headers = {}
    if n > 0 and len(items) > n:
        headers["Link"] = f'<{path}?n={n}&last={page[-1]}>; rel="next"'
    return page, headers


async def tags_list(request: web.Request, name: str, ref: str) -> web.StreamResponse:
    drv = state_of(request).driver
    if not drv.repo_exists(name):
        raise name_unknown(name)
    page, headers = paginate(request, drv.tags(name), f"/v2/{name}/tags/list")
    return web.json_response({"name": name, "tags": page}, headers=headers)


async def referrers(request: web.Request, name: str, ref: str) -> web.StreamResponse:
    drv = state_of(request).driver
    subject = parse_digest(ref)
    want = request.query.get("artifactType")
    out: list[Any] = []
    for raw in drv.referrers(name, subject):
        try:
            desc = json.loads(raw)
            if not drv.manifest_linked(name, parse_digest(desc["digest"])):
                continue  # deleted since
        except (ValueError, KeyError, TypeError, RegistryError):
            continue
        if want and desc.get("artifactType") != want:
            continue
        out.append(desc)
    headers = {"Content-Type": mt.OCI_INDEX}
    if want:
        headers["OCI-Filters-Applied"] = "artifactType"
    body = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": out}).encode()
    return web.Response(status=200, body=body, headers=headers)


HANDLERS: dict[tuple[str, str], Any] = {
    ("manifest", "GET"): manifest_get, ("manifest", "HEAD"): manifest_get,
    ("manifest", "PUT"): manifest_put, ("manifest", "DELETE"): manifest_delete,
    ("tags", "GET"): tags_list, ("referrers", "GET"): referrers,
}
