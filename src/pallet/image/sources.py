"""Open whatever ``pallet load`` is given: a docker-archive or an oci-archive (plain or
compressed, a file or stdin), or an OCI layout directory.

Contract: ``open_archive`` is a context manager yielding the images; every temp file it makes
(stdin spool, decompressed copy) lives in ``tmpdir`` and is removed on exit, success or not.
Layers of the yielded images are only readable inside the ``with``.
"""
from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, BinaryIO, cast

from pallet.errors import DataCorruption, InvalidArgument, NotFound

from .archive import TarIndex, TempPlace, sniff_archive
from .docker_archive import is_docker_archive, read_docker_archive
from .oci_layout import DirSource, is_oci_layout, read_oci_layout
from .static import NamedImage


@contextmanager
def open_archive(path: str, tmpdir: str | Callable[[], AbstractContextManager[Any]],
                 stdin: BinaryIO | None = None) -> Iterator[list[NamedImage]]:
    """``path`` is a file, a directory (OCI layout) or ``-`` (stdin). ``tmpdir``: see TempPlace."""
    place = TempPlace(tmpdir)
    try:
        if path == "-":
            src = stdin if stdin is not None else sys.stdin.buffer
            if os.isatty(src.fileno()) if hasattr(src, "fileno") else False:
                raise InvalidArgument("requested load from stdin, but stdin is empty (a terminal)")
            head = _peek(src)
            kind = sniff_archive(head)
            real, what = place.spool(cast(BinaryIO, _Prefixed(head, src)), kind), "stdin"
        else:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise NotFound(f"open {path}: no such file or directory") from None
            if stat.S_ISDIR(st.st_mode):
                d = DirSource(path)
                if not is_oci_layout(d):
                    raise InvalidArgument(f"{path}: a directory, but not an OCI image layout")
                yield read_oci_layout(d)
                return
            with open(path, "rb") as f:
                kind = sniff_archive(f.read(6))
                real = path
                if kind:
                    f.seek(0)
                    real = place.spool(f, kind)
            what = path
        if os.path.getsize(real) == 0:
            raise DataCorruption(f"{what}: empty archive")
        idx = TarIndex(real, what)
        if is_docker_archive(idx):
            yield read_docker_archive(idx)
        elif is_oci_layout(idx):
            yield read_oci_layout(idx)
        else:
            raise InvalidArgument(f"{what}: neither a docker-archive (no manifest.json) "
                                  "nor an oci-archive (no oci-layout and index.json)")
    finally:
        place.close()


def _peek(src: BinaryIO) -> bytes:
    head = b""
    while len(head) < 6:
        b = src.read(6 - len(head))
        if not b:
            break
        head += b
    return head


class _Prefixed(io.RawIOBase):
    """``head`` followed by the rest of ``src`` (stdin cannot be rewound)."""

    def __init__(self, head: bytes, src: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._src = src

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._src.read(len(b))
        b[: len(data)] = data
        return len(data)
