"""The Image and Layer protocols (after go-containerregistry's v1.Image / v1.Layer).

A small interface; everything else is derived (see ``partial.py`` helpers when they exist).
Sources (docker-archive, oci-layout, a registry, the local store) produce Images; sinks
(save, push, the store) consume them. Implementations are lazy: nothing is read until asked,
and layer content is always a stream, never whole ``bytes``.
"""
from __future__ import annotations

from typing import Any, BinaryIO, Protocol, runtime_checkable

from pallet.oci.digest import Digest
from pallet.oci.manifest import Manifest


@runtime_checkable
class Layer(Protocol):
    def digest(self) -> Digest:
        """Digest of the blob as distributed (compressed, if it is)."""
        ...

    def diff_id(self) -> Digest:
        """Digest of the uncompressed tar (the config's rootfs.diff_ids entry)."""
        ...

    def size(self) -> int:
        """Size in bytes of the blob as distributed."""
        ...

    def media_type(self) -> str:
        ...

    def compressed(self) -> BinaryIO:
        """The blob as distributed. The caller closes it. Reads are verified against
        ``digest()`` where the source can be wrong (archives, registries): a mismatch raises
        DataCorruption at EOF."""
        ...

    def uncompressed(self) -> BinaryIO:
        """The layer tar. The caller closes it."""
        ...


@runtime_checkable
class Image(Protocol):
    def raw_manifest(self) -> bytes:
        ...

    def manifest(self) -> Manifest:
        ...

    def digest(self) -> Digest:
        """Digest of ``raw_manifest()``."""
        ...

    def raw_config(self) -> bytes:
        ...

    def config_file(self) -> dict[str, Any]:
        """The parsed image config (docker/OCI config JSON, as a dict)."""
        ...

    def config_digest(self) -> Digest:
        """Digest of ``raw_config()``: the image ID docker shows."""
        ...

    def layers(self) -> list[Layer]:
        """In order, base first; matches ``manifest().layers`` and the config's diff_ids."""
        ...
