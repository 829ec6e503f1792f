"""A remote image: the ``pallet.image.base`` protocols over a registry, lazily.

``resolve(repo, ref, platform)`` fetches the manifest (and, for an index, the child for the
platform); nothing else is read until asked: the config on ``raw_config()``, a layer's blob on
``compressed()``. Every read is verified against its descriptor.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from pallet.errors import DataCorruption, InvalidArgument
from pallet.image.base import Layer
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest
from pallet.oci.manifest import Descriptor, Index, Manifest, Platform, parse

from .compression import open_uncompressed
from .registry import Repository

CONFIG_CAP = 32 * 1024 * 1024


class RemoteLayer:
    def __init__(self, image: RemoteImage, desc: Descriptor, index: int) -> None:
        self._image = image
        self.descriptor = desc
        self._index = index
        self.progress: Callable[[int], None] | None = None  # set by a puller to count bytes
        # a consumer that verifies the digest itself (the store's add_layer) may turn this off
        # to hash the bytes once instead of twice; the size is always enforced
        self.verify = True

    def digest(self) -> Digest:
        return self.descriptor.digest

    def size(self) -> int:
        return self.descriptor.size

    def media_type(self) -> str:
        return self.descriptor.media_type

    def diff_id(self) -> Digest:
        ids = self._image.diff_ids()
        if self._index >= len(ids):
            raise DataCorruption(f"image {self._image.name}: config has fewer diff_ids than layers")
        return ids[self._index]

    def compressed(self) -> BinaryIO:
        return self._image.repo.open_blob(self.descriptor.digest, self.descriptor.size, self.progress,
                                          self.verify)

    def uncompressed(self) -> BinaryIO:
        return open_uncompressed(self.compressed(), mt.layer_compression(self.descriptor.media_type),
                                 f"layer {self.descriptor.digest} of {self._image.name}")


class RemoteImage:
    def __init__(self, repo: Repository, raw: bytes, manifest: Manifest, digest: Digest) -> None:
        self.repo = repo
        self._raw = raw
        self._manifest = manifest
        self._digest = digest
        self._config: bytes | None = None
        self._diff_ids: list[Digest] | None = None
        self._lock = threading.Lock()
        for d in manifest.layers:
            mt.layer_compression(d.media_type)  # unsupported layer type: a clear error up front
        if manifest.config.media_type not in mt.CONFIGS:
            raise InvalidArgument(f"{repo.name}@{digest} is not a container image "
                                  f"(config media type {manifest.config.media_type!r})")

    @property
    def name(self) -> str:
        return self.repo.name

    def raw_manifest(self) -> bytes:
        return self._raw

    def manifest(self) -> Manifest:
        return self._manifest

    def media_type(self) -> str:
        return self._manifest.media_type

    def digest(self) -> Digest:
        return self._digest

    def raw_config(self) -> bytes:
        with self._lock:
            if self._config is None:
                c = self._manifest.config
                self._config = self.repo.blob_bytes(c.digest, c.size, CONFIG_CAP)
            return self._config

    def config_file(self) -> dict[str, Any]:
        try:
            obj = json.loads(self.raw_config())
        except ValueError:
            raise DataCorruption(f"image config of {self.name} is not valid JSON") from None
        if not isinstance(obj, dict):
            raise DataCorruption(f"image config of {self.name} is not a JSON object")
        return obj

    def config_digest(self) -> Digest:
        return self._manifest.config.digest

    def diff_ids(self) -> list[Digest]:
        if self._diff_ids is None:
            rootfs = self.config_file().get("rootfs") or {}
            if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids") or [], list):
                raise DataCorruption(f"image config of {self.name} has invalid rootfs.diff_ids")
            self._diff_ids = [Digest.parse(str(d)) for d in rootfs.get("diff_ids") or []]
        return self._diff_ids

    def remote_layers(self) -> list[RemoteLayer]:
        """The layers with their puller hooks (``progress``, ``verify``)."""
        return [RemoteLayer(self, d, i) for i, d in enumerate(self._manifest.layers)]

    def layers(self) -> list[Layer]:
        return list(self.remote_layers())


@dataclass(frozen=True)
class Resolved:
    image: RemoteImage
    top_digest: Digest  # what the tag points to: the index's digest for a multi-arch image
    index: Index | None


def resolve(repo: Repository, ref: str, platform: Platform | None = None) -> Resolved:
    """Fetch the manifest for ``ref`` (a tag or a digest string); pick ``platform`` (default:
    the host's) from an index."""
    raw, ctype, digest = repo.get_manifest(ref)
    obj = parse(raw, ctype)
    if isinstance(obj, Index):
        want = platform or Platform.host()
        desc = obj.select(want)
        if desc.media_type and desc.media_type not in mt.MANIFESTS:
            raise InvalidArgument(f"{repo.name}@{desc.digest}: unsupported media type {desc.media_type!r}")
        craw, cctype, cdigest = repo.get_manifest(str(desc.digest))
        child = parse(craw, cctype or desc.media_type)
        if not isinstance(child, Manifest):
            raise InvalidArgument(f"{repo.name}@{cdigest}: nested index is not supported")
        return Resolved(RemoteImage(repo, craw, child, cdigest), digest, obj)
    if platform is not None:
        img = RemoteImage(repo, raw, obj, digest)
        cfg = img.config_file()
        have = Platform(str(cfg.get("os", "")), str(cfg.get("architecture", "")), str(cfg.get("variant", "") or ""))
        if have.os and not platform.matches(have):
            raise InvalidArgument(f"image {repo.name}:{ref} is for {have}, not {platform}")
        return Resolved(img, digest, None)
    return Resolved(RemoteImage(repo, raw, obj, digest), digest, None)
