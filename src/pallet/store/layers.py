"""The extracted-layer store: ROOT/layers/<diffid-hex>/{diff/,layer.json}.

``add`` takes a Layer and, in ONE pass over its blob, hashes the compressed bytes, writes them to
a blob temp file, decompresses (gzip via isal, zstd, or none: sniffed from the magic bytes) and
hashes the tar, all in a read-ahead thread (pump.py), while the caller's thread extracts the
tar into ROOT/tmp/st-layer-*/diff (image/apply.py). Only when the blob digest, the blob size and
the diff-id all match are the blob renamed to its address and the tree renamed to
ROOT/layers/<hex>, both WITHOUT a sync: they carry this boot's unsynced mark (durable.py) and
``Store.write_image`` syncs once for the whole image before any row names them. Writeback of the
blob and of large files is started while they are written, so that one sync finds little left.
(Where xattrs are unsupported, the tree is synced before its rename, in a thread that overlaps
the next layer's extraction: ``add_async``.) Any failure removes the temp dir and temp blob:
nothing is left behind. A per-layer flock makes a second process adding the same layer wait,
then find it present. A layer published in an earlier boot and never synced counts as absent
and is replaced by the next ``add``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from pallet.errors import DataCorruption, NotFound, OSFailure, PalletError
from pallet.image.apply import Applier
from pallet.image.base import Layer
from pallet.image.tario import TarReader
from pallet.oci.digest import Digest
from pallet.oci.mediatypes import sniff_compression
from pallet.store import durable
from pallet.store.blobs import BlobStore, BlobWriter, fsync_dir
from pallet.store.locks import lock_file
from pallet.store.paths import Paths
from pallet.store.pump import Pump

CHUNK = 1 << 20
MARKER = "layer.json"


@dataclass(frozen=True)
class LayerInfo:
    diff_id: Digest
    size: int          # bytes of the uncompressed tar
    created: bool      # False when the layer was already present


class Pending:
    """A layer being published by a thread (or already done). ``wait()`` returns its LayerInfo
    or raises what publishing raised."""

    def __init__(self, info: LayerInfo | None = None) -> None:
        self._info = info
        self._exc: BaseException | None = None
        self._t: threading.Thread | None = None

    def start(self, fn: Any, *args: Any) -> None:
        def run() -> None:
            try:
                self._info = fn(*args)
            except BaseException as e:  # re-raised by wait()
                self._exc = e

        self._t = threading.Thread(target=run, name="pallet-layer-publish", daemon=True)
        self._t.start()

    def wait(self) -> LayerInfo:
        if self._t is not None:
            self._t.join()
        if self._exc is not None:
            raise self._exc
        assert self._info is not None
        return self._info


class _Tee:
    """The compressed stream: every byte read is hashed, counted and written to the blob."""

    def __init__(self, src: BinaryIO, writer: BlobWriter | None, algorithm: str) -> None:
        self.src = src
        self.writer = writer
        self.hasher = hashlib.new(algorithm)
        self.size = 0
        self._pending = b""

    def readable(self) -> bool:
        return True

    def unread(self, b: bytes) -> None:
        self._pending = b + self._pending

    def read(self, n: int = -1) -> bytes:
        if self._pending:
            if n < 0 or n >= len(self._pending):
                b, self._pending = self._pending, b""
            else:
                b, self._pending = self._pending[:n], self._pending[n:]
            return b
        try:
            b = self.src.read(CHUNK if n < 0 else n)
        except PalletError:
            raise
        except OSError as e:
            raise OSFailure.from_oserror(e, "read layer") from None
        if b:
            self.hasher.update(b)
            self.size += len(b)
            if self.writer is not None:
                try:
                    self.writer.write_unhashed(b)
                except OSError as e:  # ENOSPC, EIO: the store's fault, not the stream's
                    raise OSFailure.from_oserror(e, "write blob", self.writer.tmp) from None
        return b

    def readinto(self, buf: Any) -> int:
        b = self.read(len(buf))
        buf[:len(b)] = b
        return len(b)

    def close(self) -> None:
        pass


def _decoder(tee: _Tee, kind: str) -> Any:
    if kind == "gzip":
        from isal import igzip

        return igzip.IGzipFile(fileobj=tee, mode="rb")
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(tee, read_size=CHUNK,  # type: ignore[arg-type]
                                                          read_across_frames=True, closefd=False)
    return tee


class LayerStore:
    def __init__(self, paths: Paths, blobs: BlobStore, named: Callable[[Digest], bool] | None = None) -> None:
        self.paths = paths
        self.blobs = blobs
        self.named = named  # does a row name this layer? (trusts an unsynced layer of an earlier boot)

    def has(self, diff_id: Digest) -> bool:
        """Present AND trusted (durable.py)."""
        named = self.named
        return durable.trusted(self.paths.layer(diff_id) / MARKER,
                               (lambda: named(diff_id)) if named is not None else None)

    def present(self, diff_id: Digest) -> bool:
        return os.path.lexists(self.paths.layer(diff_id))

    def dir(self, diff_id: Digest) -> os.PathLike[str]:
        if not self.has(diff_id):
            raise NotFound(f"layer {diff_id} not found in the store")
        return self.paths.layer_diff(diff_id)

    def info(self, diff_id: Digest) -> dict[str, Any]:
        try:
            with open(self.paths.layer(diff_id) / MARKER, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"layer {diff_id} not found in the store") from None

    def add(self, layer: Layer) -> LayerInfo:
        return self.add_async(layer).wait()

    def add_async(self, layer: Layer) -> Pending:
        """Extract now (into ROOT/tmp) and publish (blob rename, layer rename; unsynced, marked).
        Without xattr support, publishing (syncfs + renames) runs in a thread, so the flush of one
        layer overlaps the extraction of the next. ``wait()`` on the result, then sync (as
        write_image does), before naming the layer in any row. The layer's lock is held until
        published."""
        diff_id, digest = layer.diff_id(), layer.digest()
        if self.has(diff_id):
            self._ensure_blob(layer, digest)
            return Pending(LayerInfo(diff_id, int(self.info(diff_id)["size"]), False))
        lockfd = lock_file(self.paths.layer_lock(diff_id))
        try:
            if self.has(diff_id):
                self._ensure_blob(layer, digest)
                os.close(lockfd)
                return Pending(LayerInfo(diff_id, int(self.info(diff_id)["size"]), False))
            if self.present(diff_id):  # unsynced in an earlier boot (or broken): replace it
                self._discard(diff_id)
            tmp, writer, size, lazy = self._prepare(layer, diff_id, digest)
        except BaseException:
            os.close(lockfd)
            raise
        if lazy:
            return Pending(self._publish(tmp, writer, diff_id, digest, size, lockfd, True))
        p = Pending()
        p.start(self._publish, tmp, writer, diff_id, digest, size, lockfd, False)
        return p

    def _discard(self, diff_id: Digest) -> None:
        """Remove an untrusted layer dir. Safe under the layer's lock alone: no row names it
        (else it would be trusted), so no image or container uses it."""
        trash = tempfile.mkdtemp(prefix="st-gone-", dir=self.paths.tmp)
        try:
            os.rename(self.paths.layer(diff_id), os.path.join(trash, "l"))
        except FileNotFoundError:
            pass
        shutil.rmtree(trash, ignore_errors=True)

    def _ensure_blob(self, layer: Layer, digest: Digest) -> None:
        if not self.blobs.has(digest):
            with layer.compressed() as src:
                self.blobs.put(src, digest, layer.size(), lazy=True)

    def _prepare(self, layer: Layer, diff_id: Digest,
                 digest: Digest) -> tuple[str, BlobWriter | None, int, bool]:
        tmp = tempfile.mkdtemp(prefix="st-layer-", dir=self.paths.tmp)
        writer = None if self.blobs.has(digest) else BlobWriter(self.paths, digest.algorithm)
        try:
            os.mkdir(os.path.join(tmp, "diff"), 0o755)
            with layer.compressed() as src:
                size = self._ingest(src, writer, digest, diff_id, layer.size(), os.path.join(tmp, "diff"))
            with open(os.path.join(tmp, MARKER), "w") as f:
                json.dump({"diff_id": str(diff_id), "size": size, "blob": str(digest),
                           "media_type": layer.media_type()}, f)
                lazy = durable.mark(f.fileno())
            return tmp, writer, size, lazy
        except BaseException:
            if writer is not None:
                writer.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _publish(self, tmp: str, writer: BlobWriter | None, diff_id: Digest, digest: Digest, size: int,
                 lockfd: int, lazy: bool) -> LayerInfo:
        try:
            if not lazy:
                durable.syncfs(tmp)  # unmarked: the tree and the blob reach the disk BEFORE either is named
            if writer is not None:
                writer.commit(digest, actual=digest, lazy=lazy)
                writer = None
            dest = self.paths.layer(diff_id)
            try:
                os.rename(tmp, dest)
            except OSError as e:
                if not self.has(diff_id):
                    raise OSFailure.from_oserror(e, "rename layer", str(dest)) from None
                shutil.rmtree(tmp, ignore_errors=True)  # someone else finished it first
                return LayerInfo(diff_id, size, False)
            if not lazy:
                fsync_dir(self.paths.layers)
            return LayerInfo(diff_id, size, True)
        except BaseException:
            if writer is not None:
                writer.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            os.close(lockfd)

    def _ingest(self, src: BinaryIO, writer: BlobWriter | None, digest: Digest, diff_id: Digest,
                size: int | None, dest: str) -> int:
        tee = _Tee(src, writer, digest.algorithm)
        head = tee.read(CHUNK)
        tee.unread(head)
        kind = sniff_compression(head)
        dec = _decoder(tee, kind)
        uhash = hashlib.new(diff_id.algorithm) if kind else None
        usize = 0

        def produce() -> bytes:  # runs in the pump thread
            nonlocal usize
            try:
                b = dec.read(CHUNK)
            except PalletError:
                raise
            except Exception as e:  # isal/zlib/zstd errors have no common base class
                raise DataCorruption(f"layer {digest}: corrupt {kind or 'tar'} stream: {e}") from None
            if b:
                if type(b) is not bytes:  # the tar reader hands out views: it needs immutable chunks
                    b = bytes(b)
                if uhash is not None:
                    uhash.update(b)
                usize += len(b)
                return b
            while tee.read(CHUNK):  # anything after the compressed stream counts for the digest
                pass
            return b""

        pump = Pump(produce)
        root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        applier = Applier(root_fd, writeback=durable.start_writeback)
        try:
            reader = TarReader(pump.read)
            applier.apply(reader)
            reader.drain()
        finally:
            pump.close()  # joins: nothing writes to the blob after this
            applier.close()
            os.close(root_fd)
            if dec is not tee:
                dec.close()
        got = Digest(digest.algorithm, tee.hasher.hexdigest())
        if got != digest:
            raise DataCorruption(f"layer blob digest mismatch: expected {digest}, got {got}")
        if size is not None and size >= 0 and tee.size != size:
            raise DataCorruption(f"layer blob {digest} size mismatch: expected {size}, got {tee.size}")
        got_diff = Digest(diff_id.algorithm, uhash.hexdigest()) if uhash is not None else got
        if got_diff != diff_id:
            raise DataCorruption(f"layer diff-id mismatch: expected {diff_id}, got {got_diff}")
        return usize

    def remove(self, diff_id: Digest) -> None:
        """Rename away (atomic disappearance), then delete. Caller holds the store lock exclusively."""
        src = self.paths.layer(diff_id)
        if not src.exists():
            return
        trash = tempfile.mkdtemp(prefix="st-gone-", dir=self.paths.tmp)
        os.rename(src, os.path.join(trash, "l"))
        shutil.rmtree(trash, ignore_errors=True)
        try:
            os.unlink(self.paths.layer_lock(diff_id))
        except FileNotFoundError:
            pass

    def all(self) -> list[str]:
        return os.listdir(self.paths.layers) if self.paths.layers.is_dir() else []
