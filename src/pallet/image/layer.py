"""A concrete Layer over a blob that can be opened again and again (a file, a region of an
archive, a blob in an OCI layout), and the digests computed lazily when the source lacks them.

Contract: ``compressed()`` verifies the blob digest and size at EOF, ``uncompressed()`` verifies
the diff-id at EOF (DataCorruption on mismatch). A digest the source did not state (a gzipped
layer inside a docker-archive) is computed by one hashing pass, on first use, and cached.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from pallet.errors import DataCorruption, InvalidArgument
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest

from .streams import Verifying, decompress, hash_stream

Opener = Callable[[], BinaryIO]


class BlobLayer:
    """A layer whose blob is returned by ``opener()`` (a fresh stream each call)."""

    def __init__(self, opener: Opener, *, media_type: str, size: int, digest: Digest | None = None,
                 diff_id: Digest | None = None, what: str = "layer") -> None:
        self._open = opener
        self._media_type = media_type
        self._compression = mt.layer_compression(media_type)  # unknown media type -> InvalidArgument
        self._size = size
        self._digest = digest
        self._diff_id = diff_id
        self._what = what
        if self._compression == "" and digest is not None and diff_id is not None and digest != diff_id:
            raise DataCorruption(f"{what}: uncompressed layer with digest {digest} but diff-id {diff_id}")
        if self._compression == "" and digest is not None and diff_id is None:
            self._diff_id = digest
        if self._compression == "" and diff_id is not None and digest is None:
            self._digest = diff_id

    def __repr__(self) -> str:
        return f"BlobLayer({self._what}, {self._media_type}, {self._size} bytes)"

    @property
    def compression(self) -> str:
        return self._compression

    def digest(self) -> Digest:
        if self._digest is None:
            with self._open() as f:
                d, n = hash_stream(f)
            if n != self._size:
                raise DataCorruption(f"{self._what}: size {n}, expected {self._size}")
            self._digest = d
        return self._digest

    def diff_id(self) -> Digest:
        if self._diff_id is None:
            with decompress(self.compressed(), self._compression) as f:
                self._diff_id, _ = hash_stream(f)
        return self._diff_id

    def size(self) -> int:
        return self._size

    def media_type(self) -> str:
        return self._media_type

    def compressed(self) -> BinaryIO:
        return Verifying(self._open(), self._digest, self._size, what=self._what)  # type: ignore[return-value]

    def compressed_unverified(self) -> BinaryIO:
        """The blob without hashing: for consumers that verify it themselves (the store hashes
        every blob it writes), so a layer is hashed once, not twice."""
        return self._open()

    def uncompressed(self) -> BinaryIO:
        inner = decompress(self.compressed(), self._compression)
        if self._compression == "":
            return inner
        return Verifying(inner, self._diff_id, None, what=f"{self._what} (uncompressed)")  # type: ignore[return-value]


def docker_layer_type(compression: str) -> str:
    """The media type a docker-shaped manifest uses for a layer of this compression."""
    if compression == "":
        return mt.DOCKER_LAYER
    if compression == "gzip":
        return mt.DOCKER_LAYER_GZIP
    if compression == "zstd":
        return mt.OCI_LAYER_ZSTD
    raise InvalidArgument(f"unsupported layer compression {compression!r}")


# Docker and OCI name the same layer encodings differently (OCI image spec, media-types.md
# "Compatibility Matrix").
TO_OCI = {
    mt.DOCKER_LAYER: mt.OCI_LAYER,
    mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP,
    mt.DOCKER_LAYER_FOREIGN_GZIP: mt.OCI_LAYER_ND_GZIP,
    mt.DOCKER_CONFIG: mt.OCI_CONFIG,
    mt.DOCKER_MANIFEST: mt.OCI_MANIFEST,
    mt.DOCKER_MANIFEST_LIST: mt.OCI_INDEX,
}


def oci_type(media_type: str) -> str:
    return TO_OCI.get(media_type, media_type)
