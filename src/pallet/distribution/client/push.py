"""Push an Image to a repository (OCI distribution spec, "Pushing").

Per layer, in parallel (bounded): HEAD the blob and skip it when the registry has it; else try a
cross-repository mount from the candidate repositories; else upload. Uncompressed layers (an image
loaded from a docker-archive) are gzip-compressed with isal first, unless ``gzip_cache`` already
knows their compressed digest and the registry has that blob. Then the config, then the manifest
(rewritten when layers were compressed) is PUT with its media type.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Protocol

from pallet.errors import Unavailable
from pallet.image.base import Image, Layer
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest
from pallet.oci.manifest import Descriptor, Manifest

from .compression import GzipStream
from .progress import NullProgress, Progress
from .registry import Repository

log = logging.getLogger("pallet.distribution.client")

GZIP_OF = {mt.DOCKER_LAYER: mt.DOCKER_LAYER_GZIP, mt.OCI_LAYER: mt.OCI_LAYER_GZIP,
           mt.OCI_LAYER_ND: mt.OCI_LAYER_ND_GZIP}


class GzipCache(Protocol):
    """Remembers the gzip digest of an uncompressed layer (keyed by diff-id) across pushes."""

    def get(self, diff_id: Digest) -> tuple[Digest, int] | None: ...

    def put(self, diff_id: Digest, digest: Digest, size: int) -> None: ...


UPLOAD_ATTEMPTS = 3  # a whole-blob upload is restarted (new session) after a dropped connection


def _push_layer(repo: Repository, layer: Layer, desc: Descriptor, mount_from: Sequence[str],
                cache: GzipCache | None, progress: Progress, chunk_size: int) -> Descriptor:
    for attempt in range(UPLOAD_ATTEMPTS):
        try:
            return _push_layer_once(repo, layer, desc, mount_from, cache, progress, chunk_size)
        except Unavailable as e:
            if attempt == UPLOAD_ATTEMPTS - 1:
                raise
            log.info("retrying the upload of %s: %s", desc.digest, e)
            progress.status(desc.digest.short, "Retrying")
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _push_layer_once(repo: Repository, layer: Layer, desc: Descriptor, mount_from: Sequence[str],
                     cache: GzipCache | None, progress: Progress, chunk_size: int) -> Descriptor:
    pid = desc.digest.short
    if desc.media_type in GZIP_OF:
        diff_id = layer.diff_id()
        known = cache.get(diff_id) if cache else None
        if known and repo.has_blob(known[0]):
            progress.done(pid, "Layer already exists")
            return Descriptor(GZIP_OF[desc.media_type], known[0], known[1])
        # stream: gzip in a producer thread, PATCH the chunks as they come, PUT ?digest= at the end
        # (docker's way: no temp file, compression overlaps the upload)
        progress.start(pid, layer.size(), "Pushing")
        with layer.uncompressed() as src:
            gz = GzipStream(src, progress=lambda n: progress.advance(pid, n))
            try:
                digest = repo.upload_stream(gz, lambda: gz.digest,  # type: ignore[arg-type,return-value]
                                            what=f"upload of layer {diff_id} to {repo.name}")
            finally:
                gz.close()
        if cache:
            cache.put(diff_id, digest, gz.size)
        progress.done(pid, "Pushed")
        return Descriptor(GZIP_OF[desc.media_type], digest, gz.size)
    _upload(repo, desc, layer.compressed, mount_from, progress, chunk_size)
    return desc


def _upload(repo: Repository, desc: Descriptor, opener: Callable[[], IO[bytes]],
            mount_from: Sequence[str], progress: Progress, chunk_size: int) -> None:
    pid = desc.digest.short
    if repo.has_blob(desc.digest):
        progress.done(pid, "Layer already exists")
        return
    location = None
    for src in mount_from:
        if src == repo.path:
            continue
        location = repo.mount(desc.digest, src)
        if location is None:
            progress.done(pid, f"Mounted from {src}")
            return
        break  # the registry opened an upload session instead: use it
    progress.start(pid, desc.size, "Pushing")
    repo.upload(opener, desc.digest, desc.size, chunk_size=chunk_size, location=location,
                progress=lambda n: progress.advance(pid, n))
    progress.done(pid, "Pushed")


def push_image(repo: Repository, image: Image, ref: str, *, parallel: int = 3,
               mount_from: Sequence[str] = (), gzip_cache: GzipCache | None = None,
               progress: Progress | None = None,
               chunk_size: int = 0) -> tuple[Digest, int]:
    """Push ``image`` as ``repo:ref`` (a tag, or its digest). Returns the manifest digest and
    size (the manifest may differ from ``image.raw_manifest()`` when layers were compressed)."""
    progress = progress or NullProgress()
    repo.t.ping()
    repo.t.authorization(repo.scopes)  # fail on missing credentials before compressing anything
    man = image.manifest()
    layers = image.layers()
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="push") as ex:
        for d in man.layers:
            progress.status(d.digest.short, "Preparing")
        futs = [ex.submit(_push_layer, repo, layer, d, mount_from, gzip_cache, progress, chunk_size)
                for layer, d in zip(layers, man.layers, strict=True)]
        new_layers = tuple(f.result() for f in futs)
    raw_cfg = image.raw_config()
    cfg_desc = man.config
    if not repo.has_blob(cfg_desc.digest):
        repo.upload(lambda: _bytes_io(raw_cfg), cfg_desc.digest, len(raw_cfg))
    if new_layers != man.layers:
        man = Manifest(man.media_type, man.config, new_layers, man.annotations, man.subject, man.artifact_type)
        raw = man.to_bytes()
    else:
        raw = image.raw_manifest()
    digest = repo.put_manifest(ref, raw, man.media_type)
    return digest, len(raw)


def _bytes_io(data: bytes) -> IO[bytes]:
    import io

    return io.BytesIO(data)
