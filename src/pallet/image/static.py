"""An Image made of a config and a list of Layers, with the manifest either given (an OCI
layout holds one) or computed once, on first use (a docker-archive and an import have none).

Contract: the layers are in order, base first, and match the config's ``rootfs.diff_ids``
(checked by ``check_diff_ids``, which sources call before handing an image out).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pallet.errors import DataCorruption, InvalidArgument
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest
from pallet.oci.manifest import Descriptor, Manifest, dumps, loads_capped, parse

from .base import Layer

MAX_CONFIG_SIZE = 16 * 1024 * 1024

DOCKER_TYPES = frozenset({mt.DOCKER_LAYER, mt.DOCKER_LAYER_GZIP, mt.DOCKER_LAYER_FOREIGN_GZIP})


class StaticImage:
    def __init__(self, raw_config: bytes, layers: Sequence[Layer], raw_manifest: bytes | None = None,
                 manifest_type: str | None = None) -> None:
        self._raw_config = raw_config
        self._layers = list(layers)
        self._raw_manifest = raw_manifest
        self._manifest_type = manifest_type
        self._config: dict[str, Any] | None = None
        self._manifest: Manifest | None = None
        self._config_digest = Digest.of(raw_config)

    def __repr__(self) -> str:
        return f"StaticImage({self._config_digest.short}, {len(self._layers)} layers)"

    def raw_config(self) -> bytes:
        return self._raw_config

    def config_file(self) -> dict[str, Any]:
        if self._config is None:
            self._config = parse_config(self._raw_config)
        return self._config

    def config_digest(self) -> Digest:
        return self._config_digest

    def layers(self) -> list[Layer]:
        return list(self._layers)

    def raw_manifest(self) -> bytes:
        if self._raw_manifest is None:
            self._raw_manifest = synth_manifest(self._raw_config, self._layers, self._manifest_type).to_bytes()
        return self._raw_manifest

    def manifest(self) -> Manifest:
        if self._manifest is None:
            m = parse(self.raw_manifest())
            if not isinstance(m, Manifest):
                raise InvalidArgument("expected an image manifest, got an index")
            self._manifest = m
        return self._manifest

    def digest(self) -> Digest:
        return Digest.of(self.raw_manifest())


def parse_config(raw: bytes) -> dict[str, Any]:
    obj = loads_capped(raw, "image config", MAX_CONFIG_SIZE)
    if not isinstance(obj, dict):
        raise InvalidArgument("image config is not a JSON object")
    return obj


def synth_manifest(raw_config: bytes, layers: Sequence[Layer], kind: str | None = None) -> Manifest:
    """A schema-2 manifest for a config and layers: Docker's when every layer has a Docker
    media type (what ``docker save``/``load`` and podman produce), else OCI's."""
    types = [x.media_type() for x in layers]
    if kind is None:
        kind = mt.DOCKER_MANIFEST if all(t in DOCKER_TYPES for t in types) else mt.OCI_MANIFEST
    cfg_type = mt.DOCKER_CONFIG if kind == mt.DOCKER_MANIFEST else mt.OCI_CONFIG
    if kind == mt.OCI_MANIFEST:
        from .layer import oci_type

        types = [oci_type(t) for t in types]
    cfg = Descriptor(cfg_type, Digest.of(raw_config), len(raw_config))
    return Manifest(kind, cfg, tuple(Descriptor(t, x.digest(), x.size()) for t, x in zip(types, layers, strict=True)))


def diff_ids_of(config: dict[str, Any]) -> list[Digest]:
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids", []), list):
        raise InvalidArgument("image config has no valid rootfs.diff_ids")
    return [Digest.parse(str(d)) for d in rootfs.get("diff_ids") or []]


def check_diff_ids(config: dict[str, Any], layers: Sequence[Any], what: str) -> None:
    """The config's diff_ids must name the layers one for one (OCI image spec, config.md)."""
    ids = diff_ids_of(config)
    if len(ids) != len(layers):
        raise DataCorruption(f"{what}: config lists {len(ids)} layers, manifest has {len(layers)}")


def config_json(config: dict[str, Any]) -> bytes:
    """Bytes for a config pallet writes (compact, key order kept)."""
    return dumps(config)


def pretty(obj: Any) -> str:
    return json.dumps(obj, indent=4)


class NamedImage:
    """An image as an archive holds it: the image and the references it carries (may be none)."""

    def __init__(self, image: StaticImage, tags: Sequence[Any] = ()) -> None:
        self.image = image
        self.tags = list(tags)

    def __repr__(self) -> str:
        return f"NamedImage({self.image!r}, {[str(t) for t in self.tags]})"
