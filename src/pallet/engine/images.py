"""Image operations behind ``pallet import|load|save|tag|rmi|image prune``: the one place these
state transitions happen, on top of the store API (/work/team/STORE_API.md).

Contract: every function validates its arguments (references, ``--change`` lines, formats)
before touching the store, so a bad argument leaves the store as it was. ``image_in_use`` is
the hook the engine's containers table fills in; ``rmi`` and ``prune`` honour it.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError
from pallet.image.changes import apply_changes
from pallet.image.config import import_config
from pallet.image.static import StaticImage, config_json
from pallet.oci.digest import Digest, is_hex_id
from pallet.oci.reference import Reference
from pallet.store import ImageRecord, Store

FORMATS = ("docker-archive", "oci-archive", "oci-dir")


def image_in_use(store: Store, image_id: Digest) -> str | None:
    """The ID of a container (any state) made from the image, or None (the engine's containers
    table; ``rmi``, ``image prune`` and ``system df`` all go through here)."""
    from pallet.engine import containers, db

    ids = containers.image_in_use(db.connection(store), str(image_id))
    return ids[0] if ids else None


def parse_ref(text: str) -> Reference:
    ref = Reference.parse(text)
    if ref.digest is not None and ref.tag is None:
        raise InvalidArgument(f"{text}: a digest reference cannot be used as a tag")
    return ref


def import_image(st: Store, path: str, ref: str | None = None, changes: Sequence[str] = (),
                 message: str = "", stdin: BinaryIO | None = None,
                 platform: str | None = None) -> ImageRecord:
    from pallet.image.rootfs import rootfs_layer
    from pallet.oci.manifest import Platform

    tag = parse_ref(ref) if ref else None
    plat = Platform.parse(platform) if platform else None
    apply_changes({}, changes)  # reject bad --change lines before reading anything
    with rootfs_layer(path, lambda: st.temp_dir("import-"), stdin) as layer:
        cfg = import_config(layer.diff_id(), changes=changes, message=message,
                            source="-" if path == "-" else path, platform=plat)
        img = _store_fed(StaticImage(config_json(cfg), [layer]))
        return st.write_image(img, tags=[tag] if tag else [])


class _StoreFed:
    """A layer handed to the store, which hashes and size-checks every blob it writes and every
    tar it extracts: reading the source unverified there saves a second sha256 pass."""

    def __init__(self, layer: Any) -> None:
        self._layer = layer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._layer, name)

    def compressed(self) -> BinaryIO:
        fn = getattr(self._layer, "compressed_unverified", None)
        return fn() if fn is not None else self._layer.compressed()


def _store_fed(img: StaticImage) -> StaticImage:
    return StaticImage(img.raw_config(), [_StoreFed(x) for x in img.layers()], img.raw_manifest())


def load(st: Store, path: str, stdin: BinaryIO | None = None) -> list[str]:
    """Load every image of an archive; returns docker's "Loaded image: ..." lines."""
    from pallet.image.sources import open_archive

    lines: list[str] = []
    with open_archive(path, lambda: st.temp_dir("load-"), stdin) as images:
        for named in images:
            new_id = named.image.config_digest()
            for t in named.tags:
                try:
                    old = st.resolve_image(str(t)).id
                except NotFound:
                    continue
                if old != new_id:
                    lines.append(f"The image {t.familiar} already exists, renaming the old one with ID "
                                  f"{old} to empty string")
            rec = st.write_image(_store_fed(named.image), tags=named.tags)
            if named.tags:
                lines.extend(f"Loaded image: {t.familiar}" for t in named.tags)
            else:
                lines.append(f"Loaded image ID: {rec.id}")
    return lines


def _save_items(st: Store, names: Sequence[str]) -> list[tuple[Any, list[Reference]]]:
    """Resolve every name first (a missing one fails before any output is written)."""
    if not names:
        raise InvalidArgument("save needs at least one image")
    order: list[Digest] = []
    tags: dict[Digest, list[Reference]] = {}
    recs: dict[Digest, ImageRecord] = {}
    for n in names:
        for rec in _repo_images(st, n) or [st.resolve_image(n)]:
            _add_save_item(rec, n, order, recs, tags)
    return [(st.image(recs[i]), tags[i]) for i in order]


def _repo_images(st: Store, name: str) -> list[ImageRecord]:
    """``docker save busybox`` (no tag, no digest) saves every tagged image of the repository."""
    if "@" in name or name.startswith("sha256:"):
        return []
    try:
        ref = Reference.parse(name, default_tag=False)
    except InvalidArgument:
        return []
    if ref.tag is not None:
        return []
    return [r for r in st.list_images() if any(t.name == ref.name for t in r.repo_tags)]


def _add_save_item(rec: ImageRecord, n: str, order: list[Digest], recs: dict[Digest, ImageRecord],
                   tags: dict[Digest, list[Reference]]) -> None:
    if rec.id not in recs:
        order.append(rec.id)
        recs[rec.id] = rec
        tags[rec.id] = []
    if not _is_id(n, rec):
        ref = Reference.parse(n, default_tag=False)
        wanted = [ref] if ref.tag else [t for t in rec.repo_tags if t.name == ref.name]
        for t in wanted:
            if t not in tags[rec.id]:
                tags[rec.id].append(t)


def _is_id(text: str, rec: ImageRecord) -> bool:
    t = text[7:] if text.startswith("sha256:") else text
    return is_hex_id(t) and rec.id.encoded.startswith(t)


def save(st: Store, names: Sequence[str], output: str | None, fmt: str = "docker-archive",
         stdout: BinaryIO | None = None) -> None:
    """Write the images to ``output`` (atomically: a temp file renamed at the end) or stdout."""
    from pallet.image.docker_archive import write_docker_archive
    from pallet.image.oci_layout import write_oci_archive, write_oci_dir

    if fmt not in FORMATS:
        raise InvalidArgument(f"unsupported save format {fmt!r} (use one of {', '.join(FORMATS)})")
    if fmt == "oci-dir":
        if not output:
            raise InvalidArgument("--format oci-dir needs -o DIR")
        write_oci_dir(output, _save_items(st, names))
        return
    if output is None:
        out = stdout if stdout is not None else sys.stdout.buffer
        if hasattr(out, "fileno") and os.isatty(out.fileno()):
            raise InvalidArgument("cowardly refusing to save to a terminal. "
                                  "Use the -o flag or redirect")
    items = _save_items(st, names)

    def write(f: BinaryIO) -> None:
        if fmt == "docker-archive":
            write_docker_archive(f, items, str(st.paths.tmp))
        else:
            write_oci_archive(f, items)

    if output is None:
        write(out)
        return
    d = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(d):
        raise NotFound(f"open {output}: directory {d} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".pallet-save-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def tag(st: Store, source: str, target: str) -> None:
    rec = st.resolve_image(source)
    st.tag(rec.id, parse_ref(target))


@dataclass
class RemoveResult:
    lines: list[str] = field(default_factory=list)
    errors: list[PalletError] = field(default_factory=list)


def rmi(st: Store, names: Sequence[str], force: bool = False) -> RemoveResult:
    """docker's semantics: a tag is untagged, and the image deleted with its last tag; an ID
    with several tags needs ``force``; an image a container uses is never deleted."""
    res = RemoveResult()
    for n in names:
        try:
            res.lines.extend(_rmi_one(st, n, force))
        except PalletError as e:
            res.errors.append(e)
    return res


def _rmi_one(st: Store, name: str, force: bool) -> list[str]:
    try:
        rec = st.resolve_image(name)
    except NotFound:
        raise NotFound(f"No such image: {name}") from None
    lines: list[str] = []
    by_id = _is_id(name, rec)
    user = image_in_use(st, rec.id)
    if not by_id:
        ref = Reference.parse(name)
        remaining = [t for t in rec.repo_tags if t != ref]
        if ref.digest is not None and ref.tag is None:
            remaining = list(rec.repo_tags)
        if remaining or (user and force):
            st.untag(ref)
            return [f"Untagged: {ref.familiar}"]
        if user:
            raise Conflict(f'unable to remove repository reference "{name}" (must force) - '
                           f"container {user[:12]} is using its referenced image {rec.id.short}")
    else:
        if len(rec.repo_tags) > 1 and not force:
            raise Conflict(f"unable to delete {rec.id.short} (must be forced) - image is referenced "
                           "in multiple repositories")
        if user:
            raise Conflict(f"unable to delete {rec.id.short} (cannot be forced) - image is being used "
                           f"by container {user[:12]}")
    for t in list(rec.repo_tags) + list(rec.repo_digests):
        lines.append(f"Untagged: {t.familiar}")
    st.delete_image(rec.id)
    lines.append(f"Deleted: {rec.id}")
    lines.extend(f"Deleted: {c}" for c in deleted_layers(st, rec))
    return lines


def deleted_layers(st: Store, rec: ImageRecord) -> list[str]:
    """After ``delete_image``: the chain IDs (image-spec config.md, ``ChainID``) of the image's
    layers that went with it, top first, as docker prints them after the image ID."""
    import hashlib

    chain: list[tuple[str, Digest]] = []
    prev = ""
    for d in rec.diff_ids:
        prev = str(d) if not prev else "sha256:" + hashlib.sha256(f"{prev} {d}".encode()).hexdigest()
        chain.append((prev, d))
    return [c for c, d in reversed(chain) if not st.has_layer(d)]


def layer_sizes(st: Store) -> dict[Digest, int]:
    """diff-id -> uncompressed size of every stored layer (the store's layers table)."""
    return {Digest.parse(k): int(v[0]) for k, v in st.usage().layers.items()}


def prune(st: Store, all_images: bool = False) -> tuple[list[str], int]:
    """Remove dangling images (untagged), or with ``all_images`` every image no container
    uses. Returns (deleted lines, bytes reclaimed)."""
    before = layer_sizes(st)
    lines: list[str] = []
    for rec in st.list_images():
        if (rec.repo_tags and not all_images) or image_in_use(st, rec.id):
            continue
        for t in list(rec.repo_tags) + list(rec.repo_digests):
            lines.append(f"untagged: {t.familiar}")
        st.delete_image(rec.id)
        lines.append(f"deleted: {rec.id}")
        lines.extend(f"deleted: {c}" for c in deleted_layers(st, rec))
    after = layer_sizes(st)
    return lines, sum(s for d, s in before.items() if d not in after)
