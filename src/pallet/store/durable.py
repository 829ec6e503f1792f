"""Deferred durability: content is published now and synced once per image, with a per-boot mark.

Why: a ``syncfs`` per layer (the first design) made every layer wait for the whole filesystem's
dirty pages (its own 540 MB blob + tree of the bench image, and other processes' data), one to
three times per pull or load. Now a layer (or layer blob) is published by rename WITHOUT a sync,
carrying the xattr ``user.pallet.unsynced = <boot id>`` (on the layer's ``layer.json`` marker,
on the blob file); ``Store.write_image`` calls ``syncfs`` ONCE, then clears the marks, and only
then writes the rows that name the content. The trust rule (``trusted``):

* a row names it                 -> rows are written only after the sync: trusted;
* mark == this boot's id         -> written in this boot: the page cache holds it complete
                                    (a SIGKILL loses no page cache), trusted;
* no mark, changed in this boot  -> synced before it was published (or synced and cleared by a
  (ctime >= boot time)              write_image) in this boot: trusted;
* anything else                  -> from an earlier boot with no row: it may have been published,
                                    then the machine went down before any sync, so its data may
                                    not be on disk. It counts as absent: the next writer replaces
                                    it; it is garbage for check --repair (no row names it).

So a crash (power loss, kernel panic) before the sync can never make an incomplete layer or blob
look present; it costs a re-download/re-extract. The mark is set before the rename that publishes;
the ctime test covers filesystems that do not persist metadata in order (this machine's ext4 has
no journal): a mark lost in a crash still leaves a ctime from the earlier boot. (It assumes the
clock does not jump backwards across a reboot by more than the time between the crash and the
boot.) Where user xattrs are not supported (``mark`` returns False) the caller syncs before
publishing, as the first design did. Everything here is a few syscalls: no heavy imports.
"""
from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

XATTR = "user.pallet.unsynced"
_SYNC_FILE_RANGE_WRITE = 2
_boot: bytes | None = None
_btime: float | None = None
_libc: ctypes.CDLL | None = None


def boot_id() -> bytes:
    global _boot
    if _boot is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", "rb") as f:
                _boot = f.read().strip()
        except OSError:
            _boot = b"unknown"
    return _boot


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)  # libc is loaded already: no find_library (forks ldconfig)
    return _libc


def mark(fd: int) -> bool:
    """Mark an open file as written-but-unsynced in this boot; False when xattrs are unsupported
    (the caller must then sync before publishing)."""
    try:
        os.setxattr(fd, XATTR, boot_id())
        return True
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.ENOSPC, errno.E2BIG):
            return False
        raise


def state(path: str | os.PathLike[str]) -> bytes | None:
    """The mark (a boot id) of ``path``, None when unmarked; FileNotFoundError when absent."""
    try:
        return os.getxattr(path, XATTR, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise


def boot_time() -> float:
    """When this boot began (wall clock, /proc/stat btime)."""
    global _btime
    if _btime is None:
        _btime = 0.0
        try:
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"btime "):
                        _btime = float(line.split()[1])
                        break
        except (OSError, ValueError):
            pass
    return _btime


def trusted(path: str | os.PathLike[str], named: Callable[[], bool] | None = None) -> bool:
    """True when ``path`` exists and its content can be relied on (module docstring);
    ``named()`` says whether a db row names it (asked only when the rest does not decide)."""
    try:
        st = os.lstat(path)
        m = state(path)
    except OSError:
        return False
    if m == boot_id() or (m is None and st.st_ctime >= boot_time()):
        return True
    return named is not None and named()


def clear(path: str | os.PathLike[str]) -> None:
    """Drop the mark (after a sync made the content durable). Best effort: a lost clear only
    costs a row lookup later."""
    try:
        os.removexattr(path, XATTR, follow_symlinks=False)
    except OSError:
        pass


def syncfs(path: str | os.PathLike[str]) -> None:
    """Flush the filesystem holding ``path`` (one call instead of an fsync per file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _c().syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def start_writeback(fd: int, offset: int = 0, length: int = 0) -> None:
    """Ask the kernel to start writing ``fd``'s dirty pages now (sync_file_range WRITE: does not
    wait for them), so the one sync at the end of an image finds little left to flush. With
    24 GB of RAM the kernel's own writeback would start only after 30 s."""
    try:
        _c().sync_file_range(fd, ctypes.c_longlong(offset), ctypes.c_longlong(length), _SYNC_FILE_RANGE_WRITE)
    except (AttributeError, OSError):
        pass
