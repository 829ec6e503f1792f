"""Pull, push, login, logout: the registry client wired to the local store.

``pull`` fetches the manifest (and the platform's child of an index), the config, then every
layer the store lacks, in parallel (bounded), each streamed straight into ``Store.add_layer``
(which stores the blob and extracts it in one pass while the bytes arrive). The image rows are
written last, so a failed pull leaves no image behind; layers that completed stay (content-
addressed, reused by the next pull, as docker does).

``ensure_image(store, ref, policy)`` is the ``--pull always|missing|never`` hook of run/create/build.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from pallet.distribution.client import credentials
from pallet.distribution.client.credentials import Credentials
from pallet.distribution.client.progress import NullProgress, Progress
from pallet.distribution.client.registry import Registry
from pallet.distribution.client.remote import RemoteLayer, Resolved, resolve
from pallet.errors import InvalidArgument, NotFound, PalletError, Unavailable
from pallet.oci.digest import Digest
from pallet.oci.manifest import Platform
from pallet.oci.reference import DEFAULT_DOMAIN, Reference
from pallet.store import ImageRecord, Store

PARALLEL = 3  # docker's max-concurrent-downloads default
POLICIES = ("always", "missing", "never", "newer")


def pull(store: Store, text: str, *, platform: str | None = None, all_tags: bool = False,
         tls_verify: bool | None = None, progress: Progress | None = None,
         parallel: int = PARALLEL) -> list[Pulled]:
    """Pull ``text`` (NAME[:TAG|@DIGEST]); with ``all_tags`` every tag of NAME."""
    progress = progress or NullProgress()
    ref = Reference.parse(text, default_tag=not all_tags)
    if all_tags and (ref.tag or ref.digest):
        raise InvalidArgument(f"tag can't be used with --all-tags/-a: {text}")
    plat = Platform.parse(platform) if platform else None
    with Registry(ref.domain, tls_verify=tls_verify) as reg:
        repo = reg.repo(ref.path)
        if all_tags:
            tags = repo.tags()
            if not tags:
                raise NotFound(f"repository {ref.name} has no tags")
            targets = [ref.with_tag(t) for t in tags]
        else:
            targets = [ref]
        out = []
        for target in targets:
            what = str(target.digest) if target.digest else str(target.tag)
            progress.message(f"{what}: Pulling from {target.path}")  # docker: the path, no domain
            res = resolve(repo, what, plat)
            rec, fetched = _store(store, target, res, progress, parallel)
            out.append(Pulled(target, res.top_digest, rec, fetched))
            progress.message(f"Digest: {res.top_digest}")
        return out


@dataclass(frozen=True)
class Pulled:
    ref: Reference  # as asked (normalised): what docker prints last
    digest: Digest  # the manifest (or index) digest the reference resolved to
    record: ImageRecord
    downloaded: bool  # False when the image was already stored ("Image is up to date")


def _store(store: Store, ref: Reference, res: Resolved, progress: Progress,
           parallel: int) -> tuple[ImageRecord, bool]:
    img = res.image
    layers = img.remote_layers()
    todo = []
    seen: set[Digest] = set()
    lines: list[tuple[str, str]] = []
    for layer in layers:
        pid = layer.digest().short
        diff_id = layer.diff_id()
        if diff_id in seen or store.has_layer(diff_id):
            lines.append((pid, "Already exists"))
            continue
        seen.add(diff_id)
        lines.append((pid, "Pulling fs layer"))
        todo.append(layer)
    new_image = bool(todo) or not _has_image(store, img.config_digest())
    if new_image:  # docker: no layer lines when up to date
        for pid, text in lines:
            (progress.done if text == "Already exists" else progress.status)(pid, text)

    # biggest first: with more layers than workers, the longest download starts at once (LPT)
    todo.sort(key=lambda layer: -layer.size())
    created: list[tuple[str, Digest]] = []
    lock = threading.Lock()
    stop = threading.Event()  # set when a layer failed or the user interrupted: the others give up

    def fetch(layer: RemoteLayer) -> None:
        pid = layer.digest().short
        had_blob = store.has_blob(layer.digest())
        progress.start(pid, layer.size(), "Downloading")

        def tick(n: int) -> None:
            if stop.is_set():
                raise Unavailable(f"pull of {ref} interrupted")
            progress.advance(pid, n)

        layer.progress = tick
        layer.verify = False  # add_layer verifies digest and diff-id itself (STORE_API): hash once
        store.add_layer(layer)
        with lock:
            created.append(("layer", layer.diff_id()))
            if not had_blob:
                created.append(("blob", layer.digest()))
        progress.done(pid, "Pull complete")

    try:
        if todo:
            with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="pull") as ex:
                futs = [ex.submit(fetch, layer) for layer in todo]
                try:
                    wait(futs, return_when=FIRST_EXCEPTION)
                finally:
                    stop.set()  # no-op when all are done; else the running ones stop at their next read
                    for f in futs:
                        f.cancel()
            errors = [f.exception() for f in futs if not f.cancelled() and f.exception() is not None]
            # the first real failure, not the "interrupted" of the layers stopped because of it
            errors.sort(key=lambda e: "interrupted" in str(e))
            if errors:
                raise errors[0]  # type: ignore[misc]
        tags = [ref] if ref.tag else []
        rec = store.write_image(img, tags=tags, repo_digests=[ref.with_digest(res.top_digest)])
        return rec, new_image  # docker: "Downloaded newer image" whenever the image is new here
    except BaseException:
        # nothing half-stored: layers this pull added and no image references go away
        if created:
            from pallet.store import gc

            gc.rollback(store, created)
        raise


def ensure_image(store: Store, text: str, policy: str = "missing", *, platform: str | None = None,
                 tls_verify: bool | None = None, progress: Progress | None = None) -> ImageRecord:
    """The image for ``text`` by ``--pull`` policy: ``missing`` pulls only when it is not stored,
    ``always`` (and ``newer``) pulls every time, ``never`` fails when it is not stored."""
    if policy not in POLICIES:
        raise InvalidArgument(f"invalid pull policy {policy!r}: want always, missing or never")
    if policy in ("missing", "never"):
        try:
            return store.resolve_image(text)
        except NotFound:
            if policy == "never":
                raise NotFound(f"{text}: image not known locally and --pull=never") from None
    return pull(store, text, platform=platform, tls_verify=tls_verify, progress=progress)[0].record


def _has_image(store: Store, image_id: Digest) -> bool:
    try:
        store.get_image(image_id)
        return True
    except NotFound:
        return False


class _GzipCache:
    """diff-id -> (gzip digest, size) of layers compressed for a push, in a JSON file under the
    store root, so the next push of the same layer can skip compressing (HEAD finds it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._d = json.loads(path.read_text())
        except (OSError, ValueError):
            self._d = {}

    def get(self, diff_id: Digest) -> tuple[Digest, int] | None:
        v = self._d.get(str(diff_id))
        if not v:
            return None
        try:
            return Digest.parse(v[0]), int(v[1])
        except (ValueError, InvalidArgument, IndexError, TypeError):
            return None

    def put(self, diff_id: Digest, digest: Digest, size: int) -> None:
        with self._lock:
            self._d[str(diff_id)] = [str(digest), size]
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(json.dumps(self._d))
            os.replace(tmp, self.path)


def push(store: Store, src: str, dest: str | None = None, *, tls_verify: bool | None = None,
         progress: Progress | None = None, parallel: int = PARALLEL,
         chunk_size: int = 0) -> tuple[Reference, Digest, int]:
    """Push the stored image ``src`` to ``dest`` (default: ``src`` as a reference). Returns the
    destination reference, the manifest digest and its size."""
    from pallet.distribution.client.push import push_image

    progress = progress or NullProgress()
    rec = store.resolve_image(src)
    target = Reference.parse(dest or src)
    ref_str = str(target.digest) if target.digest and not target.tag else (target.tag or "latest")
    if target.tag is None and target.digest is None:
        target = target.with_tag("latest")
    image = store.image(rec)
    mounts = [r.path for r in list(rec.repo_digests) + list(rec.repo_tags)
              if r.domain == target.domain and r.path != target.path]
    progress.message(f"The push refers to repository [{target.name if target.domain != DEFAULT_DOMAIN else 'docker.io/' + target.path}]")
    cache = _GzipCache(Path(store.paths.root) / "push-gzip-cache.json") if hasattr(store.paths, "root") else None
    with Registry(target.domain, tls_verify=tls_verify) as reg:
        repo = reg.repo(target.path, push=True)
        digest, size = push_image(repo, image, ref_str, parallel=parallel, mount_from=list(dict.fromkeys(mounts)),
                                  gzip_cache=cache, progress=progress, chunk_size=chunk_size)
    progress.message(f"{target.tag or 'latest'}: digest: {digest} size: {size}")
    # as docker: the image now also answers to name@digest (RepoDigests), and later pushes of its
    # layers elsewhere in that registry can mount from here
    try:
        store.write_image(image, repo_digests=[target.with_digest(digest)])
    except PalletError:
        pass
    return target, digest, size


def registry_domain(text: str | None) -> str:
    """``login``/``logout`` argument -> a registry domain (docker.io when empty)."""
    if not text:
        return DEFAULT_DOMAIN
    t = text
    for p in ("https://", "http://"):
        if t.startswith(p):
            t = t[len(p):]
    t = t.split("/")[0]
    if t in ("index.docker.io", "registry-1.docker.io", "docker.io"):
        return DEFAULT_DOMAIN
    if not t:
        raise InvalidArgument(f"invalid registry {text!r}")
    return t


def login(registry: str | None, username: str, password: str, *, tls_verify: bool | None = None) -> Path:
    """Verify the credentials against the registry, then store them (config.json)."""
    domain = registry_domain(registry)
    if not username:
        raise InvalidArgument("a username is required (-u)")
    if not password:
        raise InvalidArgument("a password is required (-p or --password-stdin)")
    creds = Credentials(username, password)
    with Registry(domain, tls_verify=tls_verify, creds=creds) as reg:
        reg.check_login()
    return credentials.store(domain, creds)


def logout(registry: str | None) -> tuple[str, bool]:
    domain = registry_domain(registry)
    return domain, credentials.erase(domain)


def stored_username(registry: str | None) -> str | None:
    c = credentials.lookup(registry_domain(registry))
    return c.username if c else None


__all__: Sequence[str] = ["ensure_image", "login", "logout", "pull", "push", "registry_domain"]
