"""Registry and Repository: the OCI distribution spec endpoints a client needs.

``Registry(domain)`` is one host (its transport, auth and connection pool); ``registry.repo(path)``
gives a ``Repository`` for the pull (and push) endpoints:
GET/HEAD/PUT ``/v2/<name>/manifests/<ref>``, GET/HEAD ``/v2/<name>/blobs/<digest>``,
POST/PATCH/PUT ``/v2/<name>/blobs/uploads/`` (monolithic, chunked, and cross-repository mount),
GET ``/v2/<name>/tags/list`` (paginated with ``Link``).
"""
from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable
from typing import IO, BinaryIO

from pallet.errors import DataCorruption, InvalidArgument, NotFound
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest
from pallet.oci.manifest import MAX_MANIFEST_SIZE

from .auth import TokenCache, scope_for
from .blobreader import BlobReader
from .credentials import Credentials, lookup
from .hosts import endpoint_for
from .transport import Response, Transport

ACCEPT = ", ".join([mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST])
_AUTO = object()


class Registry:
    """One registry host. ``creds``: explicit credentials, None for anonymous, or (default) the
    ones stored for this registry in config.json."""

    def __init__(self, domain: str, *, tls_verify: bool | None = None,
                 creds: Credentials | None | object = _AUTO) -> None:
        self.domain = domain
        self.endpoint = endpoint_for(domain, tls_verify)
        c = lookup(domain) if creds is _AUTO else creds
        self.transport = Transport(self.endpoint, c if isinstance(c, Credentials) else None, TokenCache())

    @property
    def host(self) -> str:
        return self.endpoint.host

    def repo(self, path: str, *, push: bool = False) -> Repository:
        return Repository(self, path, push=push)

    def check_login(self) -> None:
        """Verify the credentials (``pallet login``): ping, then authenticate once."""
        t = self.transport
        t.ping()
        if t._challenge is None:
            return  # the registry needs no auth: any credentials are "valid"
        resp = t.request("GET", "/v2/", what=f"login to {self.host}")
        resp.drain()

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *a: object) -> None:
        self.close()


class Repository:
    def __init__(self, registry: Registry, path: str, *, push: bool = False) -> None:
        self.registry = registry
        self.path = path
        self.t = registry.transport
        # docker asks for pull,push up front when pushing: one token serves HEADs and uploads
        self.scopes = (scope_for(path, "pull,push" if push else "pull"),)

    @property
    def name(self) -> str:
        return f"{self.registry.domain}/{self.path}"

    def _p(self, tail: str) -> str:
        return f"/v2/{self.path}/{tail}"

    # -- manifests -----------------------------------------------------------------------

    def get_manifest(self, ref: str, accept: str = ACCEPT) -> tuple[bytes, str, Digest]:
        """Fetch a manifest or index by tag or digest. Returns (bytes, media type, digest).
        The digest is verified: against ``ref`` when it is a digest, else against the
        registry's ``Docker-Content-Digest`` when sent."""
        what = f"manifest {self.name}{'@' if ':' in ref else ':'}{ref}"
        resp = self.t.request("GET", self._p(f"manifests/{ref}"), headers={"Accept": accept},
                              scopes=self.scopes, what=what)
        data = resp.read(MAX_MANIFEST_SIZE)
        ctype = resp.header("Content-Type").split(";")[0].strip()
        if ":" in ref:
            want = Digest.parse(ref)
        elif resp.header("Docker-Content-Digest"):
            try:
                want = Digest.parse(resp.header("Docker-Content-Digest").strip())
            except InvalidArgument:
                raise DataCorruption(f"{what}: registry sent an invalid Docker-Content-Digest") from None
        else:
            want = Digest.of(data)
        got = Digest.of(data, want.algorithm)
        if got != want:
            raise DataCorruption(f"{what}: digest mismatch: expected {want}, content is {got}")
        return data, ctype, got

    def head_manifest(self, ref: str) -> Digest | None:
        resp = self.t.request("HEAD", self._p(f"manifests/{ref}"), headers={"Accept": ACCEPT},
                              scopes=self.scopes, ok=(200, 404), what=f"manifest {self.name}:{ref}")
        resp.drain()
        if resp.status == 404:
            return None
        dcd = resp.header("Docker-Content-Digest")
        return Digest.parse(dcd) if dcd else None

    def put_manifest(self, ref: str, data: bytes, media_type: str) -> Digest:
        what = f"push manifest {self.name}:{ref}"
        resp = self.t.request("PUT", self._p(f"manifests/{ref}"), body=data,
                              headers={"Content-Type": media_type}, scopes=self.scopes,
                              ok=(200, 201, 202), what=what)
        resp.drain()
        return Digest.of(data)

    def tags(self, cap: int = 10000) -> list[str]:
        import json

        out: list[str] = []
        url = self._p("tags/list?n=1000")
        for _ in range(100):  # bounded pagination
            resp = self.t.request("GET", url, scopes=self.scopes, what=f"tags of {self.name}")
            link = resp.header("Link")
            try:
                obj = json.loads(resp.read(16 << 20))
            except ValueError:
                raise DataCorruption(f"tags of {self.name}: invalid JSON") from None
            out += [str(t) for t in (obj.get("tags") or [])]
            if not link or len(out) >= cap:
                break
            nxt = link.split(";")[0].strip().strip("<>")
            url = urllib.parse.urljoin(self.t.url(url), nxt)
        return out

    # -- blobs ---------------------------------------------------------------------------

    def open_blob(self, digest: Digest, size: int, progress: Callable[[int], None] | None = None,
                  verify: bool = True) -> BinaryIO:
        """A verified, resumable stream of a blob (redirects to object storage followed)."""
        what = f"blob {digest} of {self.name}"

        def open_at(off: int) -> Response:
            hdrs = {"Range": f"bytes={off}-"} if off else {}
            return self.t.request("GET", self._p(f"blobs/{digest}"), headers=hdrs,
                                  scopes=self.scopes, ok=(200, 206), what=what)

        return BlobReader(open_at, digest, size, what, progress, verify)  # type: ignore[return-value]

    def blob_bytes(self, digest: Digest, size: int, cap: int) -> bytes:
        if size > cap:
            raise InvalidArgument(f"blob {digest} of {self.name} is {size} bytes, over the {cap}-byte limit")
        with self.open_blob(digest, size) as f:
            return f.read()

    def has_blob(self, digest: Digest) -> bool:
        resp = self.t.request("HEAD", self._p(f"blobs/{digest}"), scopes=self.scopes,
                              ok=(200, 404), what=f"blob {digest} of {self.name}")
        resp.drain()
        return resp.status == 200

    def _start_upload(self, query: str = "", extra_scopes: tuple[str, ...] = ()) -> tuple[int, str]:
        resp = self.t.request("POST", self._p("blobs/uploads/") + query, scopes=self.scopes + extra_scopes,
                              ok=(201, 202), what=f"upload to {self.name}")
        loc = resp.header("Location")
        resp.drain()
        if resp.status == 202 and not loc:
            raise DataCorruption(f"upload to {self.name}: registry sent no Location")
        return resp.status, urllib.parse.urljoin(self.t.url(self._p("blobs/uploads/")), loc) if loc else ""

    def mount(self, digest: Digest, from_path: str) -> str | None:
        """Cross-repository mount. None when mounted; else the upload URL the registry opened."""
        q = "?" + urllib.parse.urlencode({"mount": str(digest), "from": from_path})
        status, loc = self._start_upload(q, (scope_for(from_path, "pull"),))
        return None if status == 201 else loc

    def upload(self, opener: Callable[[], IO[bytes]], digest: Digest, size: int, *,
               chunk_size: int = 0, location: str | None = None,
               progress: Callable[[int], None] | None = None) -> None:
        """Upload a blob. ``opener`` returns a fresh stream of it (so a failed attempt can be
        replayed). Monolithic (one PUT) unless ``chunk_size`` > 0 (PATCH per chunk, then PUT)."""
        loc = location or self._start_upload()[1]
        what = f"upload of {digest} to {self.name}"
        if chunk_size <= 0:
            def body() -> IO[bytes]:
                return _Counting(opener(), progress)  # type: ignore[return-value]

            resp = self.t.request("PUT", _add_query(loc, digest=str(digest)), body=body,
                                  headers={"Content-Type": "application/octet-stream",
                                           "Content-Length": str(size)},
                                  scopes=self.scopes, ok=(201, 204), what=what, retry=False)
            resp.drain()
            return
        off = 0
        with opener() as f:
            while off < size:
                chunk = f.read(min(chunk_size, size - off))
                if not chunk:
                    raise DataCorruption(f"{what}: source ended at {off} of {size} bytes")
                resp = self.t.request("PATCH", loc, body=chunk, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{off}-{off + len(chunk) - 1}",
                    "Content-Length": str(len(chunk))}, scopes=self.scopes, ok=(202,), what=what, retry=False)
                nloc = resp.header("Location")
                resp.drain()
                if nloc:
                    loc = urllib.parse.urljoin(loc, nloc)
                off += len(chunk)
                if progress:
                    progress(len(chunk))
        resp = self.t.request("PUT", _add_query(loc, digest=str(digest)), scopes=self.scopes,
                              ok=(201, 204), what=what)
        resp.drain()

    def upload_stream(self, chunks: Iterable[bytes], digest_of: Callable[[], Digest], *,
                      location: str | None = None, what: str = "") -> Digest:
        """Stream a blob of unknown digest and length: one PATCH with a chunked body (as docker
        pushes), then PUT ``?digest=`` with the digest known once the stream ended."""
        loc = location or self._start_upload()[1]
        what = what or f"upload to {self.name}"
        resp = self.t.request("PATCH", loc, body=iter(chunks),
                              headers={"Content-Type": "application/octet-stream"},
                              scopes=self.scopes, ok=(202,), what=what, retry=False)
        nloc = resp.header("Location")
        resp.drain()
        if nloc:
            loc = urllib.parse.urljoin(loc, nloc)
        digest = digest_of()
        resp = self.t.request("PUT", _add_query(loc, digest=str(digest)), scopes=self.scopes,
                              ok=(201, 204), what=what)
        resp.drain()
        return digest

    def delete_manifest(self, digest: Digest) -> None:
        resp = self.t.request("DELETE", self._p(f"manifests/{digest}"), scopes=self.scopes,
                              ok=(202, 200), what=f"delete {self.name}@{digest}")
        resp.drain()


def _add_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(q)))


class _Counting:
    """A file wrapper counting bytes as http.client reads the body."""

    def __init__(self, f: IO[bytes], progress: Callable[[int], None] | None) -> None:
        self._f = f
        self._progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if self._progress and data:
            self._progress(len(data))
        if not data:
            self._f.close()
        return data

    def close(self) -> None:
        self._f.close()


__all__ = ["ACCEPT", "NotFound", "Registry", "Repository"]
