"""Turn an overlay upper dir into a layer and an image in the store (``docker commit``'s core,
also every RUN/COPY/ADD step of a build).

``commit_upper(store, base, upperdir, ...)`` is what the engine calls for ``pallet commit``:
the upper dir becomes one uncompressed layer tar (image/diff.py: whiteouts and opaque dirs in
OCI form), written to the store's tmp dir while hashed, added to the store (blob + extracted
tree), and a new image = base layers + this layer, config = ``config`` (or the base's) with a
history entry. Nothing is left in tmp/ whatever happens.
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pallet.image.config import now
from pallet.image.diff import write_layer
from pallet.image.layer import BlobLayer
from pallet.image.static import StaticImage
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest
from pallet.oci.reference import Reference
from pallet.store import ImageRecord, Store


@dataclass
class NewLayer:
    diff_id: Digest
    size: int
    layer: Any    # pallet.image.base.Layer


def layer_from_upper(store: Store, upperdir: str) -> NewLayer:
    """Archive ``upperdir`` and add the layer to the store (idempotent when already there)."""
    fd, tmp = tempfile.mkstemp(prefix="commit-", suffix=".tar", dir=store.paths.tmp)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            res = write_layer(upperdir, out)
        diff_id = Digest.parse(res.diff_id)
        layer = BlobLayer(lambda: open(tmp, "rb"), media_type=mt.DOCKER_LAYER, size=res.size,
                          digest=diff_id, diff_id=diff_id, what=f"layer {diff_id.short}")
        store.add_layer(layer)
        from pallet.store.view import StoredLayer

        stored = StoredLayer(store, diff_id, diff_id, res.size, mt.DOCKER_LAYER)
        return NewLayer(diff_id, res.size, stored)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def history_entry(created_by: str, *, empty: bool, comment: str = "", author: str = "",
                  created: str | None = None) -> dict[str, Any]:
    h: dict[str, Any] = {"created": created or now(), "created_by": created_by}
    if author:
        h["author"] = author
    if comment:
        h["comment"] = comment
    if empty:
        h["empty_layer"] = True
    return h


def image_config(base_cfg: dict[str, Any] | None, container_config: dict[str, Any],
                 diff_ids: Sequence[Digest], history: list[dict[str, Any]], *,
                 author: str = "", comment: str = "", parent_id: str = "") -> dict[str, Any]:
    """An image config as docker writes one (architecture/os from the base, or the host's)."""
    if base_cfg:
        cfg: dict[str, Any] = {k: copy.deepcopy(v) for k, v in base_cfg.items()
                               if k in ("architecture", "os", "variant", "os.version")}
    else:
        from pallet.oci.manifest import Platform

        p = Platform.host()
        cfg = {"architecture": p.architecture, "os": p.os}
        if p.variant:
            cfg["variant"] = p.variant
    created = history[-1]["created"] if history else now()
    cfg["config"] = container_config
    cfg["created"] = created
    if author:
        cfg["author"] = author
    if comment:
        cfg["comment"] = comment
    cfg["history"] = history
    cfg["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in diff_ids]}
    return cfg


def write(store: Store, cfg: dict[str, Any], layers: Sequence[Any],
          tags: Sequence[Reference] = ()) -> ImageRecord:
    raw = json.dumps(cfg, separators=(",", ":")).encode()
    return store.write_image(StaticImage(raw, list(layers)), tags)


def commit_upper(store: Store, base: ImageRecord | None, upperdir: str, *,
                 config: dict[str, Any] | None = None, created_by: str = "", comment: str = "",
                 author: str = "", tags: Sequence[Reference] = ()) -> ImageRecord:
    """``base`` None means scratch. ``config`` is the new container config (``Cmd``, ``Env``,
    ...; default: the base's). Returns the stored image."""
    new = layer_from_upper(store, upperdir)
    base_cfg = base.config if base else None
    layers = list(store.image(base).layers()) if base else []
    history = list((base_cfg or {}).get("history") or [])
    history.append(history_entry(created_by, empty=False, comment=comment, author=author))
    diff_ids = list(base.diff_ids if base else []) + [new.diff_id]
    cc = config if config is not None else copy.deepcopy((base_cfg or {}).get("config") or {})
    cfg = image_config(base_cfg, cc, diff_ids, history, author=author, comment=comment)
    return write(store, cfg, layers + [new.layer], tags)
