"""Helpers for the store tests: in-memory layers and images built from tar bytes."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from typing import Any, BinaryIO

from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest
from pallet.oci.manifest import Descriptor, Manifest


class BytesLayer:
    """A Layer over bytes; ``digest``/``diff_id`` may be forced wrong to test verification."""

    def __init__(self, tar: bytes, compression: str = "", digest: Digest | None = None,
                 diff_id: Digest | None = None) -> None:
        self.tar = tar
        if compression == "gzip":
            self.blob = gzip.compress(tar, 1, mtime=0)
            self._mt = mt.OCI_LAYER_GZIP
        elif compression == "zstd":
            import zstandard

            self.blob = zstandard.ZstdCompressor().compress(tar)
            self._mt = mt.OCI_LAYER_ZSTD
        else:
            self.blob = tar
            self._mt = mt.OCI_LAYER
        self._digest = digest or Digest.of(self.blob)
        self._diff_id = diff_id or Digest.of(tar)

    def digest(self) -> Digest:
        return self._digest

    def diff_id(self) -> Digest:
        return self._diff_id

    def size(self) -> int:
        return len(self.blob)

    def media_type(self) -> str:
        return self._mt

    def compressed(self) -> BinaryIO:
        return io.BytesIO(self.blob)

    def uncompressed(self) -> BinaryIO:
        return io.BytesIO(self.tar)


class BytesImage:
    def __init__(self, layers: list[BytesLayer], config_extra: dict[str, Any] | None = None) -> None:
        self._layers = layers
        cfg = {"architecture": "amd64", "os": "linux", "created": "2026-11-28T00:00:00Z",
               "config": {"Cmd": ["/bin/sh"]},
               "rootfs": {"type": "layers", "diff_ids": [str(x.diff_id()) for x in layers]}}
        cfg.update(config_extra or {})
        self._config = json.dumps(cfg).encode()
        self._manifest = Manifest(mt.OCI_MANIFEST, Descriptor(mt.OCI_CONFIG, Digest.of(self._config),
                                                              len(self._config)),
                                  tuple(Descriptor(x.media_type(), x.digest(), x.size()) for x in layers))

    def raw_manifest(self) -> bytes:
        return self._manifest.to_bytes()

    def manifest(self) -> Manifest:
        return self._manifest

    def digest(self) -> Digest:
        return Digest.of(self.raw_manifest())

    def raw_config(self) -> bytes:
        return self._config

    def config_file(self) -> dict[str, Any]:
        return json.loads(self._config)

    def config_digest(self) -> Digest:
        return Digest.of(self._config)

    def layers(self) -> list[BytesLayer]:
        return self._layers


def make_tar(entries: list[tuple[str, str, Any]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """entries: (name, kind, arg): kind in file (arg bytes), dir, symlink/link (arg target),
    chr (arg (major, minor)), fifo. ``arg`` may be a dict of TarInfo attributes for extras."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, kind, arg in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.mode = 0o644
            data = None
            if kind == "file":
                data = arg if isinstance(arg, bytes) else b""
                ti.size = len(data)
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
            elif kind == "chr":
                ti.type, (ti.devmajor, ti.devminor) = tarfile.CHRTYPE, arg
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
