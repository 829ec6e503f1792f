"""A lazy Image view of a stored image (for save, push, build): blobs are read on demand."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, BinaryIO

from pallet.oci import manifest as oci_manifest
from pallet.oci.digest import Digest
from pallet.oci.manifest import Manifest
from pallet.oci.mediatypes import sniff_compression

if TYPE_CHECKING:
    from pallet.store.store import ImageRecord, Store


class StoredLayer:
    def __init__(self, store: Store, digest: Digest, diff_id: Digest, size: int, media_type: str) -> None:
        self._store = store
        self._digest = digest
        self._diff_id = diff_id
        self._size = size
        self._media_type = media_type

    def __repr__(self) -> str:
        return f"StoredLayer({self._digest}, diff_id={self._diff_id})"

    def digest(self) -> Digest:
        return self._digest

    def diff_id(self) -> Digest:
        return self._diff_id

    def size(self) -> int:
        return self._size

    def media_type(self) -> str:
        return self._media_type

    def compressed(self) -> BinaryIO:
        return self._store.open_blob(self._digest)

    def uncompressed(self) -> BinaryIO:
        f = self.compressed()
        kind = sniff_compression(f.peek(4)[:4])  # type: ignore[attr-defined]  # as add_layer did
        if kind == "gzip":
            from isal import igzip

            f.close()  # igzip.open owns (and closes) its own file; IGzipFile(fileobj=) would not
            return igzip.open(self._store.blob_path(self._digest), "rb")  # type: ignore[return-value]
        if kind == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)  # type: ignore[return-value]
        return f

    def path(self) -> str:
        """The blob file (for sendfile/copy_file_range by sinks)."""
        return str(self._store.blob_path(self._digest))


class StoredImage:
    def __init__(self, store: Store, rec: ImageRecord) -> None:
        self._store = store
        self._rec = rec
        self._raw_manifest: bytes | None = None
        self._raw_config: bytes | None = None

    def __repr__(self) -> str:
        return f"StoredImage({self._rec.id})"

    @property
    def record(self) -> ImageRecord:
        return self._rec

    def raw_manifest(self) -> bytes:
        if self._raw_manifest is None:
            self._raw_manifest = self._store.blobs.read(self._rec.manifest_digest)
        return self._raw_manifest

    def manifest(self) -> Manifest:
        m = oci_manifest.parse(self.raw_manifest(), self._rec.manifest_media_type)
        assert isinstance(m, Manifest)
        return m

    def digest(self) -> Digest:
        return self._rec.manifest_digest

    def raw_config(self) -> bytes:
        if self._raw_config is None:
            self._raw_config = self._store.blobs.read(self._rec.id)
        return self._raw_config

    def config_file(self) -> dict[str, Any]:
        return json.loads(self.raw_config())

    def config_digest(self) -> Digest:
        return self._rec.id

    def layers(self) -> list[StoredLayer]:  # type: ignore[override]
        return [StoredLayer(self._store, b.digest, d, b.size, b.media_type)
                for b, d in zip(self._rec.layer_blobs, self._rec.diff_ids, strict=True)]
