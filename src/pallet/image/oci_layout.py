"""The OCI image layout (image-spec image-layout.md): ``oci-layout``, ``index.json`` and
``blobs/<alg>/<hex>``, as a directory or inside a tar (an oci-archive).

Names: docker >= 25 and containerd put the full reference in ``io.containerd.image.name``;
the spec's ``org.opencontainers.image.ref.name`` usually holds only a tag (skopeo, docker), so
it names the image only when it reads as ``name:tag``. pallet writes both, one index entry
per tag. Docker-typed manifests are converted to OCI media types on write (the config bytes,
hence the image ID, are kept).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, cast

from pallet.errors import DataCorruption, InvalidArgument, NotFound
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest
from pallet.oci.manifest import Descriptor, Index, Manifest, Platform, dumps, parse
from pallet.oci.reference import Reference

from .archive import MAX_SMALL, TarIndex
from .base import Image
from .layer import BlobLayer, oci_type
from .static import NamedImage, StaticImage, check_diff_ids, diff_ids_of, parse_config
from .tarwriter import TarWriter

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'


class DirSource:
    """An OCI layout directory with the same reading surface as TarIndex."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.what = path

    def _p(self, name: str) -> str:
        return os.path.join(self.path, name)

    def has(self, name: str) -> bool:
        return os.path.isfile(self._p(name))

    def size(self, name: str) -> int:
        try:
            return os.stat(self._p(name)).st_size
        except FileNotFoundError:
            raise NotFound(f"{self.what}: no {name}") from None

    def open(self, name: str) -> BinaryIO:
        try:
            return open(self._p(name), "rb")
        except FileNotFoundError:
            raise NotFound(f"{self.what}: no {name}") from None

    def read_small(self, name: str, cap: int = MAX_SMALL) -> bytes:
        if self.size(name) > cap:
            raise InvalidArgument(f"{self.what}: {name} is over the {cap}-byte limit")
        with self.open(name) as f:
            return f.read()


Source = TarIndex | DirSource


def is_oci_layout(src: Source) -> bool:
    return src.has("oci-layout") and src.has("index.json")


def blob_name(d: Digest) -> str:
    return f"blobs/{d.algorithm}/{d.encoded}"


def _read_blob(src: Source, desc: Descriptor, what: str) -> bytes:
    name = blob_name(desc.digest)
    if not src.has(name):
        raise DataCorruption(f"{src.what}: {what} {desc.digest} is missing")
    data = src.read_small(name)
    if len(data) != desc.size:
        raise DataCorruption(f"{src.what}: {what} {desc.digest} is {len(data)} bytes, index says {desc.size}")
    if Digest.of(data, desc.digest.algorithm) != desc.digest:
        raise DataCorruption(f"{src.what}: {what} does not match its digest {desc.digest}")
    return data


def read_oci_layout(src: Source, platform: Platform | None = None) -> list[NamedImage]:
    try:
        layout = json.loads(src.read_small("oci-layout"))
        if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
            raise ValueError("no imageLayoutVersion")
    except (ValueError, NotFound) as e:
        raise DataCorruption(f"{src.what}: invalid oci-layout file ({e})") from None
    index = parse(src.read_small("index.json"), mt.OCI_INDEX)
    if not isinstance(index, Index):
        raise DataCorruption(f"{src.what}: index.json is not an image index")
    want = platform or Platform.host()
    out: list[NamedImage] = []
    by_digest: dict[Digest, NamedImage] = {}
    for desc in index.manifests:
        img = _resolve(src, desc, want, 0)
        tags = _names(desc)
        prev = by_digest.get(img.config_digest())
        if prev is not None:
            prev.tags.extend(t for t in tags if t not in prev.tags)
            continue
        named = NamedImage(img, tags)
        by_digest[img.config_digest()] = named
        out.append(named)
    if not out:
        raise DataCorruption(f"{src.what}: index.json lists no image")
    return out


def _names(desc: Descriptor) -> list[Reference]:
    ann = desc.annotations
    for key in (CONTAINERD_NAME, REF_NAME):
        text = ann.get(key, "")
        if not text or (key == REF_NAME and ":" not in text and "/" not in text):
            continue
        try:
            return [Reference.parse(text)]
        except InvalidArgument:
            continue
    return []


def _resolve(src: Source, desc: Descriptor, want: Platform, depth: int) -> StaticImage:
    if depth > 4:
        raise DataCorruption(f"{src.what}: indexes nested too deeply")
    if desc.media_type in mt.INDEXES:
        sub = parse(_read_blob(src, desc, "index"), desc.media_type)
        if not isinstance(sub, Index):
            raise DataCorruption(f"{src.what}: {desc.digest} is not an index")
        return _resolve(src, sub.select(want), want, depth + 1)
    if desc.media_type and desc.media_type not in mt.MANIFESTS:
        raise InvalidArgument(f"{src.what}: unsupported media type {desc.media_type!r} in index.json")
    raw = _read_blob(src, desc, "manifest")
    m = parse(raw, desc.media_type or mt.OCI_MANIFEST)
    if isinstance(m, Index):
        return _resolve(src, Descriptor(m.media_type, desc.digest, desc.size), want, depth + 1)
    if m.config.media_type not in mt.CONFIGS:
        raise InvalidArgument(f"{src.what}: unsupported config media type {m.config.media_type!r}")
    raw_cfg = _read_blob(src, m.config, "config")
    config = parse_config(raw_cfg)
    diff_ids = diff_ids_of(config)
    check_diff_ids(config, m.layers, src.what)
    layers = []
    for ld, diff_id in zip(m.layers, diff_ids, strict=True):
        name = blob_name(ld.digest)
        if not src.has(name):
            raise DataCorruption(f"{src.what}: layer {ld.digest} is missing")
        if src.size(name) != ld.size:
            raise DataCorruption(f"{src.what}: layer {ld.digest} is {src.size(name)} bytes, manifest says {ld.size}")
        layers.append(BlobLayer(_opener(src, name), media_type=ld.media_type, size=ld.size,
                                digest=ld.digest, diff_id=diff_id, what=f"{src.what}: layer {ld.digest}"))
    return StaticImage(raw_cfg, layers, raw_manifest=raw)


def _opener(src: Source, name: str) -> Callable[[], BinaryIO]:
    return lambda: cast(BinaryIO, src.open(name))


def oci_manifest(img: Image) -> bytes:
    """The image's manifest with OCI media types (unchanged bytes when it already has them)."""
    m = img.manifest()
    if m.media_type == mt.OCI_MANIFEST:
        return img.raw_manifest()
    cfg = Descriptor(mt.OCI_CONFIG, m.config.digest, m.config.size)
    layers = tuple(Descriptor(oci_type(x.media_type), x.digest, x.size) for x in m.layers)
    return Manifest(mt.OCI_MANIFEST, cfg, layers).to_bytes()


def write_oci_archive(out: BinaryIO, items: Sequence[tuple[Image, Sequence[Reference]]]) -> None:
    """Write ``items`` (image, tags) as an OCI layout inside a tar, to ``out`` (may be unseekable)."""
    _write_layout(TarWriter(out), items)


def write_oci_dir(path: str, items: Sequence[tuple[Image, Sequence[Reference]]]) -> None:
    """Write ``items`` as an OCI layout directory ``path`` (must not exist). Built in a sibling
    temp dir and renamed into place when complete: a failure leaves nothing."""
    from .tarwriter import DirWriter

    if os.path.lexists(path):
        raise InvalidArgument(f"{path} already exists")
    w = DirWriter(path)
    try:
        _write_layout(w, items)
    except BaseException:
        w.abort()
        raise


def _write_layout(w: Any, items: Sequence[tuple[Image, Sequence[Reference]]]) -> None:
    entries: list[dict[str, Any]] = []
    small: dict[str, bytes] = {}
    for img, tags in items:
        raw = oci_manifest(img)
        d = Digest.of(raw)
        small[blob_name(d)] = raw
        small[blob_name(img.config_digest())] = img.raw_config()
        base = Descriptor(mt.OCI_MANIFEST, d, len(raw)).to_json()
        named = [t for t in tags if t.tag]
        if not named:
            entries.append(base)
        for t in named:
            entries.append(dict(base, annotations={CONTAINERD_NAME: str(t), REF_NAME: t.tag}))
    index = Index(mt.OCI_INDEX, ()).to_json()
    index["manifests"] = entries
    w.add_bytes("oci-layout", LAYOUT_VERSION)
    w.add_bytes("index.json", dumps(index))
    for name, data in small.items():
        w.add_bytes(name, data)
    done = set(small)
    for img, _tags in items:
        for layer in img.layers():
            name = blob_name(layer.digest())
            if name in done:
                continue
            done.add(name)
            with layer.compressed() as f:
                w.add_stream(name, f, layer.size())
    w.close()
