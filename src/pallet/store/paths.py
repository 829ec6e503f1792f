"""The one documented on-disk layout of the local store (after distribution's ``paths.go``).

Everything pallet keeps lives under two directories::

    ROOT (--root, default /var/lib/pallet; persistent)
      db.sqlite                 metadata (SQLite, WAL): images, image_layers, tags, repo_digests, layers
                                (with reference counts); the engine adds its containers table here
      blobs/sha256/<hex>        content-addressed blobs (manifests, configs, layer blobs as distributed)
      layers/<diffid-hex>/      one extracted layer, keyed by the diff-id of its uncompressed tar
        diff/                     the tree (an overlayfs lowerdir; whiteouts are char 0/0 devices,
                                  opaque dirs carry trusted.overlay.opaque=y)
        layer.json                completion marker: {"diff_id", "size"} written before the rename; while
                                  not yet synced it carries xattr user.pallet.unsynced=<boot id> (durable.py)
      tmp/                      every temporary file or dir (same filesystem as blobs/ and layers/, so
                                the final os.rename is atomic; chattr +T: see spread_subdirs); anything here is garbage once no
                                pallet process writes (cleaned by Store.open and Store.check)
      locks/                    flock(2) lock files: store.lock (shared by writers, exclusive by
                                deleters/check), layer-<hex>.lock (one extraction of a layer at a time)
      containers/<id>/          per-container persistent data (engine)
      volumes/<name>/           named volumes (engine)

    RUNROOT (--runroot, default /run/pallet; volatile, gone after reboot)
      locks/                    per-container run-state locks (engine)
      containers/<id>/          per-container run state: pid files, bundle, sockets (engine)

Contract: a path in blobs/ or layers/ is complete when it exists (it appears only by an atomic
rename of a finished, verified temp file or dir). Nothing outside tmp/ is ever half-written.
Durability: content named by a db row was synced before the row was written; content published
but not yet synced is marked for its boot and is not trusted after a crash (store/durable.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pallet.oci.digest import Digest


@dataclass(frozen=True)
class Paths:
    root: Path
    runroot: Path

    @classmethod
    def of(cls, root: str | os.PathLike[str], runroot: str | os.PathLike[str]) -> Paths:
        return cls(Path(root).absolute(), Path(runroot).absolute())

    # -- ROOT -------------------------------------------------------------------------------
    @property
    def db(self) -> Path:
        return self.root / "db.sqlite"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    def blob_dir(self, algorithm: str = "sha256") -> Path:
        return self.root / "blobs" / algorithm

    def blob(self, d: Digest) -> Path:
        return self.root / "blobs" / d.algorithm / d.encoded

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    def layer(self, diff_id: Digest) -> Path:
        """The layer's directory (holds ``diff/`` and ``layer.json``)."""
        return self.root / "layers" / diff_id.encoded

    def layer_diff(self, diff_id: Digest) -> Path:
        """The extracted tree: what overlayfs takes as a lowerdir."""
        return self.root / "layers" / diff_id.encoded / "diff"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def store_lock(self) -> Path:
        return self.root / "locks" / "store.lock"

    def layer_lock(self, diff_id: Digest) -> Path:
        return self.root / "locks" / f"layer-{diff_id.encoded}.lock"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    # -- RUNROOT ----------------------------------------------------------------------------
    @property
    def run_locks(self) -> Path:
        return self.runroot / "locks"

    @property
    def run_containers(self) -> Path:
        return self.runroot / "containers"

    def create(self) -> None:
        """Make every directory of the layout (idempotent). A new ROOT is private (0700)."""
        if not self.root.exists():
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in (self.blob_dir(), self.layers, self.tmp, self.locks, self.containers, self.volumes):
            d.mkdir(parents=True, exist_ok=True)
        for d in (self.run_locks, self.run_containers):
            d.mkdir(parents=True, exist_ok=True)
        spread_subdirs(self.tmp)


_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000


def spread_subdirs(path: str | os.PathLike[str]) -> None:
    """``chattr +T`` (FS_TOPDIR_FL) on ``path``: ext4 then places each new subdirectory (every
    layer extraction's temp dir) in a fresh block group, as it does for top-level directories,
    instead of the parent's group. Why: on ext4 without a journal (this machine's disk) each
    inode allocation scans past every inode of the group deleted in the last 60-360 s
    (``recently_deleted``); in a group where stores and test trees come and go, that made each
    ``open(O_CREAT)`` cost 0.5-3 ms (2,000 files: 2-3 s of system time per pull); in a fresh
    group it costs microseconds. Best effort: other filesystems ignore or refuse it."""
    import fcntl
    import struct

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        flags = struct.unpack_from("i", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(8)))[0]
        if not flags & _FS_TOPDIR_FL:
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("i", flags | _FS_TOPDIR_FL) + bytes(4))
    except OSError:
        pass
    finally:
        os.close(fd)
