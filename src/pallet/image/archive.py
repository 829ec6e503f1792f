"""Read a tar archive in place: an index of its members, each readable as a window on the
file (no extraction, no copy). Used by the docker-archive and oci-archive sources.

Contract: ``TarIndex(path)`` needs a seekable regular file; ``spool`` turns stdin (or a
compressed archive) into one, in a directory the caller owns and cleans. Symlinked and
hard-linked members (``docker save`` links a layer shared by two images) resolve to their
target. A truncated or corrupt archive raises DataCorruption.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, BinaryIO

from pallet.errors import DataCorruption, InvalidArgument, NotFound

from .streams import CHUNK, Section

MAX_SMALL = 16 * 1024 * 1024  # manifests, configs, index.json: read whole, so capped


def _norm(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


class TarIndex:
    def __init__(self, path: str | os.PathLike[str], what: str = "") -> None:
        self.path = os.fspath(path)
        self.what = what or self.path
        self._members: dict[str, tarfile.TarInfo] = {}
        size = os.stat(self.path).st_size
        try:
            with tarfile.open(self.path, "r:") as tf:
                for m in tf:
                    if m.isfile() and m.offset_data + m.size > size:
                        raise DataCorruption(f"{self.what}: truncated archive (member {m.name!r} cut short)")
                    self._members[_norm(m.name)] = m
        except tarfile.ReadError as e:
            raise DataCorruption(f"{self.what}: not a valid tar archive ({e})") from None
        except (EOFError, tarfile.TarError) as e:
            raise DataCorruption(f"{self.what}: corrupt tar archive ({e})") from None
        if not self._members:
            raise DataCorruption(f"{self.what}: empty or invalid tar archive")

    def names(self) -> list[str]:
        return list(self._members)

    def has(self, name: str) -> bool:
        try:
            self._resolve(name)
            return True
        except NotFound:
            return False

    def _resolve(self, name: str, depth: int = 0) -> tarfile.TarInfo:
        key = _norm(name)
        m = self._members.get(key)
        if m is None:
            raise NotFound(f"{self.what}: no {name!r} in the archive")
        if depth > 16:
            raise DataCorruption(f"{self.what}: too many links resolving {name!r}")
        if m.issym():
            target = m.linkname if m.linkname.startswith("/") else posixpath.join(posixpath.dirname(key),
                                                                                  m.linkname)
            return self._resolve(target, depth + 1)
        if m.islnk():
            return self._resolve(m.linkname, depth + 1)
        if not m.isfile():
            raise DataCorruption(f"{self.what}: {name!r} is not a regular file")
        return m

    def size(self, name: str) -> int:
        return self._resolve(name).size

    def open(self, name: str) -> Section:
        m = self._resolve(name)
        return Section(self.path, m.offset_data, m.size, what=f"{self.what}: {name}")

    def read_small(self, name: str, cap: int = MAX_SMALL) -> bytes:
        m = self._resolve(name)
        if m.size > cap:
            raise InvalidArgument(f"{self.what}: {name} is {m.size} bytes, over the {cap}-byte limit")
        with self.open(name) as f:
            return f.read()


class TempPlace:
    """Where spools go: a directory, or a factory of context managers that yield one (such as
    ``Store.temp_dir``: flock'ed, so no cleaner removes it while in use). A factory is entered
    lazily, on the first ``dir()``, and exited by ``close()``: a load from a plain file makes
    no temp dir at all. Files made by ``spool()`` are removed by ``close()``, success or not."""

    def __init__(self, where: str | os.PathLike[str] | Callable[[], AbstractContextManager[Any]]) -> None:
        self._where = where
        self._cm: AbstractContextManager[Any] | None = None
        self._dir: str | None = None
        self._spools: list[str] = []

    def spool(self, src: BinaryIO, decompress_as: str = "") -> str:
        """``spool()`` into this place; the file is removed by ``close()``."""
        path = spool(src, self.dir(), decompress_as)
        self._spools.append(path)
        return path

    def dir(self) -> str:
        if self._dir is None:
            if callable(self._where):
                self._cm = self._where()
                self._dir = os.fspath(self._cm.__enter__())
            else:
                self._dir = os.fspath(self._where)
        return self._dir

    def close(self) -> None:
        for path in self._spools:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._spools.clear()
        cm, self._cm, self._dir = self._cm, None, None
        if cm is not None:
            cm.__exit__(None, None, None)


def spool(src: BinaryIO, tmpdir: str | os.PathLike[str], decompress_as: str = "") -> str:
    """Copy ``src`` (stdin, or a compressed stream) to a new file in ``tmpdir``; returns its path.
    The caller removes it. ``decompress_as`` ("gzip", "zstd", "xz", "bzip2") decompresses on the way."""
    os.makedirs(tmpdir, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="spool-", dir=tmpdir)
    try:
        with os.fdopen(fd, "wb") as out:
            reader = _decoder(src, decompress_as)
            try:
                shutil.copyfileobj(reader, out, CHUNK)
            except (OSError, EOFError, ValueError) as e:
                if isinstance(e, DataCorruption):
                    raise
                raise DataCorruption(f"corrupt {decompress_as or 'input'} stream: {e}") from None
        return path
    except BaseException:
        os.unlink(path)
        raise


def _decoder(src: BinaryIO, kind: str) -> BinaryIO:
    if kind == "":
        return src
    if kind == "xz":
        import lzma

        return lzma.LZMAFile(src)  # type: ignore[return-value]
    if kind == "bzip2":
        import bz2

        return bz2.BZ2File(src)  # type: ignore[return-value]
    from .streams import decompress

    return decompress(src, kind)


def sniff_archive(head: bytes) -> str:
    """Compression of a whole archive (``docker load`` accepts gzip, bzip2, xz, zstd)."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:3] == b"BZh":
        return "bzip2"
    return ""
