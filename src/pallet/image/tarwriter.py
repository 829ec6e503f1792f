"""Write a tar stream (POSIX pax format) to any writable, possibly unseekable, file object.

Members are copied in large chunks straight from their source stream; the writer never needs
to seek, so ``pallet save`` can stream to stdout. Timestamps are fixed (0) so that saving the
same images twice yields the same bytes.
"""
from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from typing import BinaryIO

from pallet.errors import DataCorruption

from .streams import CHUNK

BLOCK = 512


class TarWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._dirs: set[str] = set()

    def _header(self, ti: tarfile.TarInfo) -> None:
        ti.mtime = 0
        ti.uname = ti.gname = ""
        self._out.write(ti.tobuf(format=tarfile.PAX_FORMAT))

    def mkdir(self, name: str) -> None:
        name = name.rstrip("/")
        if name in self._dirs:
            return
        self._dirs.add(name)
        ti = tarfile.TarInfo(name + "/")
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        self._header(ti)

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, io.BytesIO(data), len(data))

    def add_stream(self, name: str, src: BinaryIO, size: int) -> None:
        """Copy exactly ``size`` bytes of ``src``; a short source raises DataCorruption (the
        stream is then unusable: callers write to a temp file and discard it on error)."""
        if "/" in name:
            parent = name.rsplit("/", 1)[0]
            parts = parent.split("/")
            for i in range(1, len(parts) + 1):
                self.mkdir("/".join(parts[:i]))
        ti = tarfile.TarInfo(name)
        ti.size = size
        ti.mode = 0o644
        self._header(ti)
        left = size
        buf = bytearray(CHUNK)
        mv = memoryview(buf)
        while left:
            want = min(left, CHUNK)
            n = src.readinto(mv[:want]) if hasattr(src, "readinto") else _read_into(src, mv[:want])
            if not n:
                raise DataCorruption(f"{name}: source ended {left} bytes early")
            self._out.write(mv[:n])
            left -= n
        # drain so verifying readers see EOF and check the digest
        if src.read(1):
            raise DataCorruption(f"{name}: source longer than its stated {size} bytes")
        pad = (-size) % BLOCK
        if pad:
            self._out.write(b"\0" * pad)

    def close(self) -> None:
        self._out.write(b"\0" * (2 * BLOCK))
        self._out.flush()


def _read_into(src: BinaryIO, mv: memoryview) -> int:
    data = src.read(len(mv))
    mv[: len(data)] = data
    return len(data)


class DirWriter:
    """The TarWriter surface over a directory: files go to a temp dir next to ``path``;
    ``close`` renames it to ``path``, ``abort`` removes it."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        parent = os.path.dirname(self.path)
        if not os.path.isdir(parent):
            from pallet.errors import NotFound

            raise NotFound(f"{path}: directory {parent} does not exist")
        self._tmp = tempfile.mkdtemp(prefix=".pallet-save-", dir=parent)

    def mkdir(self, name: str) -> None:
        os.makedirs(os.path.join(self._tmp, name), exist_ok=True)

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, io.BytesIO(data), len(data))

    def add_stream(self, name: str, src: BinaryIO, size: int) -> None:
        dest = os.path.join(self._tmp, name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        n = 0
        with open(dest, "wb") as f:
            while True:
                b = src.read(CHUNK)
                if not b:
                    break
                n += len(b)
                f.write(b)
        if n != size:
            raise DataCorruption(f"{name}: {n} bytes, expected {size}")

    def close(self) -> None:
        os.chmod(self._tmp, 0o755)
        os.rename(self._tmp, self.path)

    def abort(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)
