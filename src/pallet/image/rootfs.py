"""A rootfs tarball (``docker import``'s input: plain, gzip, zstd, xz or bzip2) as one Layer.

Contract: ``rootfs_layer`` is a context manager; stdin and xz/bzip2 input are spooled to a temp
file in ``tmpdir``, removed on exit. gzip and zstd input is kept as the layer blob (one pass
computes both the blob digest and the diff-id); xz and bzip2 are not layer encodings, so they
become a plain tar.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tarfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, BinaryIO

from pallet.errors import InvalidArgument, NotFound
from pallet.oci.digest import Digest

from .archive import TempPlace, sniff_archive
from .layer import BlobLayer, docker_layer_type
from .streams import CHUNK, Verifying, decompress


@contextmanager
def rootfs_layer(path: str, tmpdir: str | Callable[[], AbstractContextManager[Any]],
                 stdin: BinaryIO | None = None) -> Iterator[BlobLayer]:
    """``tmpdir``: a directory or a lazily entered factory of one (see archive.TempPlace)."""
    place = TempPlace(tmpdir)
    what = "stdin" if path == "-" else path
    try:
        if path == "-":
            src = stdin if stdin is not None else sys.stdin.buffer
            if hasattr(src, "fileno") and os.isatty(src.fileno()):
                raise InvalidArgument("import from stdin, but stdin is a terminal")
            path = place.spool(src)
        elif not os.path.isfile(path):
            if os.path.exists(path):
                raise InvalidArgument(f"{path}: not a regular file")
            raise NotFound(f"open {path}: no such file or directory")
        with open(path, "rb") as f:
            kind = sniff_archive(f.read(6))
        if kind in ("xz", "bzip2"):
            with open(path, "rb") as f:
                path, kind = place.spool(f, kind), ""
        size = os.path.getsize(path)
        if size == 0:
            raise InvalidArgument(f"{what}: empty file, not a tar archive")
        diff_id, digest = _digests(path, kind, what)
        yield BlobLayer(lambda: open(path, "rb"), media_type=docker_layer_type(kind), size=size,
                        digest=digest, diff_id=diff_id, what=what)
    finally:
        place.close()


def _check_tar_header(block: bytes, what: str) -> None:
    if len(block) < 512:
        raise InvalidArgument(f"{what}: not a tar archive (too short)")
    if block == b"\0" * 512:
        return  # an empty tar
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError as e:
        raise InvalidArgument(f"{what}: not a tar archive ({e})") from None


def _digests(path: str, kind: str, what: str) -> tuple[Digest, Digest]:
    """(diff_id, blob digest) in one read of the file."""
    raw = Verifying(open(path, "rb"), None, what=what)
    h = hashlib.sha256()
    with decompress(raw, kind) as tar:  # type: ignore[arg-type]
        head = b""
        while len(head) < 512:
            b = tar.read(512 - len(head))
            if not b:
                break
            head += b
        _check_tar_header(head, what)
        h.update(head)
        while True:
            b = tar.read(CHUNK)
            if not b:
                break
            h.update(b)
        while raw.read(CHUNK):  # trailing bytes after the compressed stream are part of the blob
            pass
        digest = raw.digest
    diff_id = Digest("sha256", h.hexdigest())
    return diff_id, (diff_id if kind == "" else digest)
