"""Content-addressed blobs: ROOT/blobs/sha256/<hex>, verified while written, atomic.

A blob is written to a temp file in ROOT/tmp (same filesystem), hashed as it is written,
fsync'd, and only then renamed to its address with ``os.replace``. A digest or size mismatch,
a read error or a crash leaves nothing at the address (a crash may leave a temp file, which
Store.open / Store.check remove). Blobs are immutable once present.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import BinaryIO

from pallet.errors import DataCorruption, NotFound, OSFailure
from pallet.oci.digest import Digest
from pallet.store.paths import Paths

CHUNK = 1 << 20


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriter:
    """A temp file that becomes a blob: ``write`` data, then ``commit(expected)`` or ``abort``."""

    def __init__(self, paths: Paths, algorithm: str = "sha256") -> None:
        self.paths = paths
        self.fd, self.tmp = tempfile.mkstemp(prefix="st-blob-", dir=paths.tmp)
        self.hasher = hashlib.new(algorithm)
        self.algorithm = algorithm
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.hasher.update(data)
        self.size += len(data)
        mv = memoryview(data)
        while mv:
            n = os.write(self.fd, mv)
            mv = mv[n:]

    def write_unhashed(self, data: bytes | memoryview) -> None:
        """For callers that hash the same bytes themselves (set ``digest`` before commit)."""
        self.size += len(data)
        mv = memoryview(data)
        while mv:
            n = os.write(self.fd, mv)
            mv = mv[n:]

    def digest(self) -> Digest:
        return Digest(self.algorithm, self.hasher.hexdigest())

    def commit(self, expected: Digest | None = None, size: int | None = None,
               actual: Digest | None = None) -> Digest:
        """Verify, fsync, rename into place. Raises DataCorruption (and aborts) on mismatch."""
        try:
            got = actual or self.digest()
            if expected is not None and got != expected:
                raise DataCorruption(f"blob digest mismatch: expected {expected}, got {got}")
            if size is not None and size != self.size:
                raise DataCorruption(f"blob {got} size mismatch: expected {size} bytes, got {self.size}")
            try:
                os.fsync(self.fd)
            except OSError as e:
                raise OSFailure.from_oserror(e, "fsync blob", self.tmp) from None
            os.close(self.fd)
            self.fd = -1
            dest = self.paths.blob(got)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, dest)
            fsync_dir(dest.parent)
            return got
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


class BlobStore:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def has(self, d: Digest) -> bool:
        return self.paths.blob(d).is_file()

    def path(self, d: Digest) -> os.PathLike[str]:
        p = self.paths.blob(d)
        if not p.is_file():
            raise NotFound(f"blob {d} not found in the store")
        return p

    def open(self, d: Digest) -> BinaryIO:
        try:
            return open(self.paths.blob(d), "rb")  # noqa: SIM115 (the caller closes it)
        except FileNotFoundError:
            raise NotFound(f"blob {d} not found in the store") from None

    def read(self, d: Digest, cap: int = 64 << 20) -> bytes:
        with self.open(d) as f:
            data = f.read(cap + 1)
        if len(data) > cap:
            raise DataCorruption(f"blob {d} is larger than the {cap}-byte limit for metadata")
        return data

    def size(self, d: Digest) -> int:
        try:
            return self.paths.blob(d).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {d} not found in the store") from None

    def put(self, src: bytes | BinaryIO, expected: Digest | None = None,
            size: int | None = None) -> tuple[Digest, int]:
        if expected is not None and self.has(expected):
            if isinstance(src, bytes | bytearray | memoryview):
                got = Digest.of(bytes(src), expected.algorithm)
                if got != expected:
                    raise DataCorruption(f"blob digest mismatch: expected {expected}, got {got}")
            return expected, self.size(expected)
        w = BlobWriter(self.paths, expected.algorithm if expected else "sha256")
        try:
            if isinstance(src, bytes | bytearray | memoryview):
                try:
                    w.write(src)
                except OSError as e:
                    raise OSFailure.from_oserror(e, "write blob", w.tmp) from None
            else:
                read = src.read
                while True:
                    try:
                        b = read(CHUNK)
                    except OSError as e:
                        raise OSFailure.from_oserror(e, "read blob source") from None
                    if not b:
                        break
                    try:
                        w.write(b)
                    except OSError as e:
                        raise OSFailure.from_oserror(e, "write blob", w.tmp) from None
                    if size is not None and w.size > size:
                        raise DataCorruption(f"blob is larger than the expected {size} bytes")
        except BaseException:
            w.abort()
            raise
        d = w.commit(expected, size)
        return d, w.size

    def remove(self, d: Digest) -> None:
        try:
            os.unlink(self.paths.blob(d))
        except FileNotFoundError:
            pass

    def all(self) -> list[Digest]:
        out = []
        for algo in ("sha256", "sha512"):
            dd = self.paths.blob_dir(algo)
            if dd.is_dir():
                for name in os.listdir(dd):
                    out.append(Digest(algo, name))
        return out
