"""Blob and upload endpoints (distribution spec "Pulling blobs", "Pushing blobs": monolithic,
chunked, streamed, cross-repository mount; "Deleting blobs")."""
from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from pallet.distribution.server import blobsend, keys
from pallet.distribution.server.errors import RegistryError, blob_unknown, unsupported, upload_unknown
from pallet.distribution.server.names import check_name, parse_digest
from pallet.distribution.server.state import state_of
from pallet.oci.digest import Digest

_RANGE_RE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?$")


def _blob_headers(d: Digest, size: int) -> dict[str, str]:
    return {"Docker-Content-Digest": str(d), "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes", "Cache-Control": "max-age=31536000"}


async def blob_get(request: web.Request, name: str, ref: str) -> web.StreamResponse:
    st = state_of(request)
    d = parse_digest(ref)
    drv = st.driver
    if not (drv.layer_linked(name, d) or drv.manifest_linked(name, d)):
        raise blob_unknown(ref)
    size = drv.blob_size(d)
    if size is None:
        raise blob_unknown(ref)
    headers = _blob_headers(d, size)
    etag = f'"{d}"'
    if request.method == "HEAD":
        headers["Content-Length"] = str(size)
        headers["ETag"] = etag
        return web.Response(status=200, headers=headers)
    path = drv.blob_path(d)
    if path is not None:
        try:
            return await blobsend.send(request, path, size, etag, headers)
        except FileNotFoundError:  # deleted (or collected) since blob_size
            raise blob_unknown(ref) from None
    resp = web.StreamResponse(status=200, headers=headers)
    resp.content_length = size
    await resp.prepare(request)
    async for chunk in drv.blob_chunks(d, 0, size):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def blob_delete(request: web.Request, name: str, ref: str) -> web.StreamResponse:
    st = state_of(request)
    if not st.config.delete_enabled:
        raise unsupported("deletion is disabled (storage.delete.enabled)")
    d = parse_digest(ref)
    if not st.driver.layer_unlink(name, d):
        raise blob_unknown(ref)
    return web.Response(status=202, headers={"Docker-Content-Digest": str(d), "Content-Length": "0"})


def _session_headers(name: str, uuid: str, size: int) -> dict[str, str]:
    return {"Location": f"/v2/{name}/blobs/uploads/{uuid}", "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": uuid, "Content-Length": "0"}


def _created(name: str, d: Digest) -> web.Response:
    return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{d}",
                                             "Docker-Content-Digest": str(d), "Content-Length": "0"})


def _has_body(request: web.Request) -> bool:
    if request.content_length is not None:
        return request.content_length > 0
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


async def _append(request: web.Request, name: str, uuid: str, check_range: bool) -> int:
    """Stream the request body onto the session; returns the new size. Content-Range, when
    sent, must start where the session ends (else 416) and agree with Content-Length."""
    drv = state_of(request).driver
    writer = drv.upload_writer(name, uuid)
    expect: int | None = None
    try:
        cr = request.headers.get("Content-Range") if check_range else None
        if cr is not None:
            m = _RANGE_RE.match(cr.strip())
            if not m:
                raise RegistryError("BLOB_UPLOAD_INVALID", f"invalid Content-Range {cr!r}", status=416)
            start, end = int(m.group(1)), int(m.group(2))
            if start != writer.offset or end < start:
                raise RegistryError("RANGE_INVALID", f"chunk {start}-{end} does not follow the upload's "
                                    f"{writer.offset} bytes", status=416, headers=_session_headers(name, uuid, writer.offset))
            expect = end - start + 1
            if request.content_length is not None and request.content_length != expect:
                raise RegistryError("SIZE_INVALID", f"Content-Length {request.content_length} does not match "
                                    f"Content-Range {cr}", status=416, headers=_session_headers(name, uuid, writer.offset))
        got = 0
        async for chunk in request.content.iter_any():
            got += len(chunk)
            await writer.write(chunk)
        request[keys.BYTES_IN] = request.get(keys.BYTES_IN, 0) + got
        if expect is not None and got != expect:
            raise RegistryError("SIZE_INVALID", f"chunk has {got} bytes, Content-Range said {expect}")
        if request.content_length is not None and got != request.content_length:
            raise RegistryError("SIZE_INVALID", f"body has {got} bytes, Content-Length said {request.content_length}")
    except BaseException:
        await writer.abort()
        raise
    return await writer.close()


async def uploads_post(request: web.Request, name: str, ref: str) -> web.StreamResponse:
    st = state_of(request)
    drv = st.driver
    q = request.query
    mount = q.get("mount")
    if mount is not None:
        d = parse_digest(mount)
        src = q.get("from")
        if src:
            check_name(src)
            if drv.layer_linked(src, d) and drv.blob_size(d) is not None:
                drv.layer_link(name, d)
                return _created(name, d)
    digest = q.get("digest")
    if digest is not None:
        d = parse_digest(digest)
        uuid = drv.upload_create(name)
        try:
            await _append(request, name, uuid, check_range=False)
            await drv.upload_commit(name, uuid, d)
        except BaseException:
            drv.upload_remove(uuid)  # a monolithic upload leaves nothing behind when it fails
            raise
        return _created(name, d)
    uuid = drv.upload_create(name)
    return web.Response(status=202, headers=_session_headers(name, uuid, 0))


async def upload_status(request: web.Request, name: str, uuid: str) -> web.StreamResponse:
    size = state_of(request).driver.upload_size(name, uuid)
    if size is None:
        raise upload_unknown(uuid)
    return web.Response(status=204, headers=_session_headers(name, uuid, size))


async def upload_patch(request: web.Request, name: str, uuid: str) -> web.StreamResponse:
    size = await _append(request, name, uuid, check_range=True)
    return web.Response(status=202, headers=_session_headers(name, uuid, size))


async def upload_put(request: web.Request, name: str, uuid: str) -> web.StreamResponse:
    drv = state_of(request).driver
    digest = request.query.get("digest")
    if state_of(request).driver.upload_size(name, uuid) is None:
        raise upload_unknown(uuid)
    if not digest:
        raise RegistryError("DIGEST_INVALID", "the digest query parameter is required to finish an upload")
    d = parse_digest(digest)
    if _has_body(request):
        await _append(request, name, uuid, check_range=True)
    await drv.upload_commit(name, uuid, d)
    return _created(name, d)


async def upload_delete(request: web.Request, name: str, uuid: str) -> web.StreamResponse:
    drv = state_of(request).driver
    if drv.upload_size(name, uuid) is None:
        raise upload_unknown(uuid)
    drv.upload_cancel(name, uuid)
    return web.Response(status=204, headers={"Content-Length": "0"})


HANDLERS: dict[tuple[str, str], Any] = {
    ("blob", "GET"): blob_get, ("blob", "HEAD"): blob_get, ("blob", "DELETE"): blob_delete,
    ("uploads", "POST"): uploads_post,
    ("upload", "GET"): upload_status, ("upload", "PATCH"): upload_patch,
    ("upload", "PUT"): upload_put, ("upload", "DELETE"): upload_delete,
}
