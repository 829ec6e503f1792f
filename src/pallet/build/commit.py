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

from pallet.build.dispatch import history_entry, now
from pallet.image.diff import write_layer
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


def layer_from_upper(store: Store, upperdir: str, *, adopt: bool = False,
                     exclude: set[str] | frozenset[str] = frozenset()) -> NewLayer:
    """Archive ``upperdir`` into a layer blob (written straight into a store blob writer, hashed
    once) and make the layer present in the store.

    With ``adopt`` (the build: the upper dir is ours and is discarded afterwards) the upper
    dir itself becomes the layer tree: it already is in the store's format (overlay whiteouts,
    opaque xattrs), so it is renamed into ROOT/layers/<diff-id>/diff under the same lock,
    marker and sync rules as store/layers.py, instead of extracting the tar again. Without
    ``adopt`` (``pallet commit``: the container keeps its upper dir) the blob is extracted by
    ``store.add_layer``."""
    from pallet.store.blobs import BlobWriter

    w = BlobWriter(store.paths)
    try:
        out = _FdWriter(w)
        res = write_layer(upperdir, out, strip_overlay_xattrs=adopt, exclude=exclude)  # type: ignore[arg-type]
        out.flush()
        diff_id = Digest.parse(res.diff_id)
        with store.lock.shared():
            if store.has_blob(diff_id):
                w.abort()
            else:
                w.commit(actual=diff_id)
            if adopt:
                _adopt(store, upperdir, diff_id, res.size)
    except BaseException:
        w.abort()
        raise
    stored = stored_layer(store, diff_id, diff_id, res.size, mt.DOCKER_LAYER)
    if not adopt:
        store.add_layer(stored)
    return NewLayer(diff_id, res.size, stored)


def stored_layer(store: Store, digest: Digest, diff_id: Digest, size: int, media_type: str) -> Any:
    """A Layer over a blob already in the store (public API: ``open_blob``)."""
    from pallet.image.layer import BlobLayer

    return BlobLayer(lambda: store.open_blob(digest), media_type=media_type, size=size, digest=digest,
                     diff_id=diff_id, what=f"layer {digest}")


class _FdWriter:
    """Buffers small tar writes into 1 MiB chunks for a BlobWriter (which hashes nothing
    here: write_layer hashes)."""

    def __init__(self, w: Any) -> None:
        self.w = w
        self.buf = bytearray()

    def write(self, b: bytes) -> int:
        if len(b) >= 1 << 20 and not self.buf:
            self.w.write_unhashed(b)
            return len(b)
        self.buf += b
        if len(self.buf) >= 1 << 20:
            self.flush()
        return len(b)

    def flush(self) -> None:
        if self.buf:
            self.w.write_unhashed(bytes(self.buf))
            self.buf.clear()


def _adopt(store: Store, upperdir: str, diff_id: Digest, size: int) -> None:
    """Publish ``upperdir`` as ROOT/layers/<hex>/ (diff/ + layer.json, the layout and the
    per-layer lock file documented in store/paths.py): under the layer's flock, marker written,
    filesystem synced, then one atomic rename, as store/layers.py publishes an extracted layer."""
    import fcntl
    import shutil

    if store.has_layer(diff_id):
        return
    lockfd = os.open(store.paths.layer_lock(diff_id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lockfd, fcntl.LOCK_EX)
        if store.has_layer(diff_id):
            return
        tmp = tempfile.mkdtemp(prefix="layer-", dir=store.paths.tmp)
        try:
            os.chmod(upperdir, 0o755)
            os.rename(upperdir, os.path.join(tmp, "diff"))
            with open(os.path.join(tmp, "layer.json"), "w") as f:
                json.dump({"diff_id": str(diff_id), "size": size, "blob": str(diff_id),
                           "media_type": mt.DOCKER_LAYER}, f)
            _syncfs(tmp)
            os.rename(tmp, store.paths.layer(diff_id))
            _fsync_dir(str(store.paths.layers))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        os.close(lockfd)


def _syncfs(path: str) -> None:
    """One syncfs(2) for the filesystem holding ``path`` (cheaper than an fsync per file)."""
    import ctypes

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _has_changes(upper: str, skip: set[str]) -> bool:
    import stat

    from pallet.image.diff import sorted_walk

    for rel, st in sorted_walk(upper):
        if rel in skip or (stat.S_ISDIR(st.st_mode) and any(p.startswith(rel + "/") for p in skip)):
            continue
        return True
    return False


def commit_upper(store: Store, base: ImageRecord | None, upperdir: str, *,
                 config: dict[str, Any] | None = None, created_by: str = "", comment: str = "",
                 author: str = "", tags: Sequence[Reference] = ()) -> ImageRecord:
    """``base`` None means scratch. ``config`` is the new container config (``Cmd``, ``Env``,
    ...; default: the base's). Returns the stored image."""
    from pallet.image.diff import engine_mountpoints

    skip = engine_mountpoints(upperdir)
    empty = not _has_changes(upperdir, skip)
    new = None if empty else layer_from_upper(store, upperdir, exclude=skip)
    base_cfg = base.config if base else None
    layers = list(store.image(base).layers()) if base else []
    history = list((base_cfg or {}).get("history") or [])
    history.append(history_entry(created_by, empty=empty, comment=comment, author=author))
    diff_ids = list(base.diff_ids if base else []) + ([new.diff_id] if new else [])
    cc = config if config is not None else copy.deepcopy((base_cfg or {}).get("config") or {})
    cfg = image_config(base_cfg, cc, diff_ids, history, author=author, comment=comment)
    return write(store, cfg, layers + ([new.layer] if new else []), tags)
