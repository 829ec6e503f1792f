"""The docker-archive format (``docker save`` / ``docker load``): a tar holding
``manifest.json`` (a list of {Config, RepoTags, Layers}), ``repositories`` (legacy), the configs
and the layer tars.

Three layouts are read: docker <= 24's ``<v1-id>/layer.tar`` directories, skopeo's
``<diff-id>.tar`` files, and docker >= 25's OCI layout inside (``blobs/sha256/<hex>`` named from
``manifest.json``). Layers are read in place from the archive and verified against the
config's diff-ids. pallet writes ``<config-hex>.json``, ``<diff-id-hex>/layer.tar`` (uncompressed,
as docker-archive readers expect), ``manifest.json`` and ``repositories``.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, cast

from pallet.errors import DataCorruption, InvalidArgument
from pallet.oci.digest import Digest
from pallet.oci.manifest import dumps
from pallet.oci.reference import Reference

from .archive import TarIndex
from .base import Image
from .layer import BlobLayer, docker_layer_type
from .static import NamedImage, StaticImage, check_diff_ids, diff_ids_of, parse_config
from .streams import CHUNK
from .tarwriter import TarWriter

_HEX_NAME = re.compile(r"(?:^|/)([a-f0-9]{64})(?:\.json)?$")


def is_docker_archive(idx: TarIndex) -> bool:
    return idx.has("manifest.json")


def read_docker_archive(idx: TarIndex) -> list[NamedImage]:
    """The images of a docker-archive, in manifest.json order. Nothing is read but the small
    JSON files; layers are read when the consumer asks."""
    try:
        entries = json.loads(idx.read_small("manifest.json"))
    except ValueError as e:
        raise DataCorruption(f"{idx.what}: manifest.json is not valid JSON ({e})") from None
    if not isinstance(entries, list) or not entries:
        raise DataCorruption(f"{idx.what}: manifest.json lists no image")
    out = []
    for n, ent in enumerate(entries):
        if not isinstance(ent, dict) or not isinstance(ent.get("Config"), str) \
                or not isinstance(ent.get("Layers"), list):
            raise DataCorruption(f"{idx.what}: manifest.json entry {n} lacks Config or Layers")
        out.append(_read_entry(idx, ent))
    return out


def _read_entry(idx: TarIndex, e: dict[str, Any]) -> NamedImage:
    cfg_name = e["Config"]
    raw = idx.read_small(cfg_name)
    m = _HEX_NAME.search(cfg_name)
    if m and Digest.of(raw).encoded != m.group(1):
        raise DataCorruption(f"{idx.what}: config {cfg_name} does not match its digest "
                             f"(content is {Digest.of(raw)})")
    config = parse_config(raw)
    diff_ids = diff_ids_of(config)
    names = [str(x) for x in e["Layers"]]
    if len(names) != len(diff_ids):
        raise DataCorruption(f"{idx.what}: {cfg_name} lists {len(diff_ids)} layers, "
                             f"manifest.json {len(names)}")
    layers = []
    for name, diff_id in zip(names, diff_ids, strict=True):
        size = idx.size(name)
        with idx.open(name) as f:
            head = f.read(4)
        from pallet.oci.mediatypes import sniff_compression

        comp = sniff_compression(head)
        layers.append(BlobLayer(_opener(idx, name), media_type=docker_layer_type(comp),
                                size=size, digest=None, diff_id=diff_id,
                                what=f"{idx.what}: layer {name}"))
    img = StaticImage(raw, layers)
    check_diff_ids(config, layers, idx.what)
    tags = []
    for t in e.get("RepoTags") or []:
        try:
            tags.append(Reference.parse(str(t)))
        except InvalidArgument as err:
            raise DataCorruption(f"{idx.what}: bad RepoTags entry {t!r}: {err}") from None
    return NamedImage(img, tags)


def _opener(idx: TarIndex, name: str) -> Callable[[], BinaryIO]:
    return lambda: cast(BinaryIO, idx.open(name))


def write_docker_archive(out: BinaryIO, items: Sequence[tuple[Image, Sequence[Reference]]],
                         tmpdir: str) -> None:
    """Write ``items`` (image, tags) as one docker-archive to ``out`` (may be unseekable).
    Compressed layers are decompressed into a temp file in ``tmpdir`` first (a tar header
    needs the size)."""
    manifest = []
    repos: dict[str, dict[str, str]] = {}
    for img, tags in items:
        diff_ids = [layer.diff_id() for layer in img.layers()]
        manifest.append({"Config": f"{img.config_digest().encoded}.json",
                         "RepoTags": [t.familiar for t in tags if t.tag],
                         "Layers": [f"{d.encoded}/layer.tar" for d in diff_ids]})
        for t in tags:
            if t.tag and diff_ids:
                repos.setdefault(t.familiar_name, {})[t.tag] = diff_ids[-1].encoded
    w = TarWriter(out)
    w.add_bytes("manifest.json", dumps(manifest))
    w.add_bytes("repositories", dumps(repos))
    done: set[str] = set()
    for img, _tags in items:
        cfg = f"{img.config_digest().encoded}.json"
        if cfg not in done:
            done.add(cfg)
            w.add_bytes(cfg, img.raw_config())
        for layer in img.layers():
            name = f"{layer.diff_id().encoded}/layer.tar"
            if name in done:
                continue
            done.add(name)
            _add_layer(w, name, layer, tmpdir)
    w.close()


def _add_layer(w: TarWriter, name: str, layer: Any, tmpdir: str) -> None:
    if layer.digest() == layer.diff_id():
        with layer.compressed() as src:
            w.add_stream(name, src, layer.size())
        return
    os.makedirs(tmpdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=tmpdir) as tmp:
        with layer.uncompressed() as src:
            while True:
                b = src.read(CHUNK)
                if not b:
                    break
                tmp.write(b)
        size = tmp.tell()
        tmp.seek(0)
        w.add_stream(name, tmp, size)
