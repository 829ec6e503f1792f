"""Content-addressed blobs: ROOT/blobs/sha256/<hex>, verified while written, atomic.

A blob is written to a temp file in ROOT/tmp (same filesystem), hashed as it is written, then
renamed to its address with ``os.replace``: fsync'd first (``put``, ``commit()``), or, for
blobs written as part of an image (``commit(lazy=True)``), marked unsynced for this boot and
synced by the image's one ``syncfs`` (durable.py). A digest or size mismatch, a read error or a
crash leaves nothing trusted at the address (a crash may leave a temp file, which Store.open /
Store.check remove; a lazily written blob of an earlier boot counts as absent unless a row names
it). Blobs are immutable once present.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

from pallet.errors import DataCorruption, NotFound, OSFailure
from pallet.oci.digest import Digest
from pallet.store import durable
from pallet.store.paths import Paths

CHUNK = 1 << 20
KICK = 8 << 20  # start writeback of a lazily written blob every this many bytes


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
        self.kicked = 0  # bytes handed to writeback (start_writeback) so far

    def write(self, data: bytes | memoryview) -> None:
        self.hasher.update(data)
        self.size += len(data)
        mv = memoryview(data)
        while mv:
            n = os.write(self.fd, mv)
            mv = mv[n:]

    def write_unhashed(self, data: bytes | memoryview) -> None:
        """For callers that hash the same bytes themselves (set ``digest`` before commit).
        Starts writeback every KICK bytes (the blob is synced later, with its image)."""
        self.size += len(data)
        mv = memoryview(data)
        while mv:
            n = os.write(self.fd, mv)
            mv = mv[n:]
        if self.size - self.kicked >= KICK:
            durable.start_writeback(self.fd, self.kicked, self.size - self.kicked)
            self.kicked = self.size

    def digest(self) -> Digest:
        return Digest(self.algorithm, self.hasher.hexdigest())

    def commit(self, expected: Digest | None = None, size: int | None = None,
               actual: Digest | None = None, lazy: bool = False) -> Digest:
        """Verify, fsync, rename into place. Raises DataCorruption (and aborts) on mismatch.
        ``lazy``: no fsync; the blob is marked unsynced for this boot (durable.py) and the
        caller's image write syncs it before naming it in a row (fsync when marking fails)."""
        try:
            got = actual or self.digest()
            if expected is not None and got != expected:
                raise DataCorruption(f"blob digest mismatch: expected {expected}, got {got}")
            if size is not None and size != self.size:
                raise DataCorruption(f"blob {got} size mismatch: expected {size} bytes, got {self.size}")
            try:
                if not (lazy and durable.mark(self.fd)):
                    lazy = False
                    os.fsync(self.fd)
            except OSError as e:
                raise OSFailure.from_oserror(e, "fsync blob", self.tmp) from None
            os.close(self.fd)
            self.fd = -1
            dest = self.paths.blob(got)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, dest)
            if not lazy:
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
        # set by Store: does a row name this blob? (trusts an unsynced blob of an earlier boot)
        self.named: Callable[[Digest], bool] | None = None

    def has(self, d: Digest) -> bool:
        """Present AND trusted (durable.py): a lazily written blob of an earlier boot that no
        row names counts as absent (it may not have reached the disk before a crash)."""
        named = self.named
        return durable.trusted(self.paths.blob(d), (lambda: named(d)) if named is not None else None)

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
            size: int | None = None, lazy: bool = False) -> tuple[Digest, int]:
        """Store ``src`` (verified against ``expected``/``size``). ``lazy``: see BlobWriter.commit."""
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
        d = w.commit(expected, size, lazy=lazy)
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
