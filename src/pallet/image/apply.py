"""Apply a layer tar to an empty directory, per the OCI image spec (image-layout layer.md).

* ``.wh.NAME`` becomes an overlayfs whiteout: a 0/0 character device NAME.
* ``.wh..wh..opq`` marks its directory opaque: ``trusted.overlay.opaque=y``.
* Other ``.wh..wh.*`` entries (aufs bookkeeping) are ignored, as docker does.
* Hard links, symlinks (kept as they are, absolute targets too, never followed), device nodes,
  fifos, PAX ``SCHILY.xattr.*`` (except ``trusted.overlay.*``, which would let a layer forge
  overlay metadata), ownership (when root), modes and mtimes are restored.

Security contract: nothing is ever created, changed or removed outside ``root_fd``'s tree,
whatever the tar holds. Every path is split into components, ``..`` is refused, absolute
names are taken relative to the root, and each parent directory is reached by ``openat``
one component at a time with ``O_NOFOLLOW|O_DIRECTORY``, so a symlink planted by an earlier
entry (or a file where a directory should be) stops extraction with InvalidArgument instead of
being followed. Final components are created with ``O_EXCL``/``mkdirat``/``symlinkat``/
``linkat`` without following. Hard-link targets are resolved the same way and must already exist.

The caller owns the directory: on any error it removes the whole temp tree (see store/layers.py).
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable

from pallet.errors import InvalidArgument, OSFailure
from pallet.image.filewriter import BATCH, MAX_FILE, FileWriter
from pallet.image.tario import BLK, CHR, DIR, FIFO, HARDLINK, REG, SYMLINK, TarReader

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
WH_META = ".wh..wh."
_DIRFLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILEFLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_CACHED = 256
MAX_DEPTH = 256  # path components; real layers stay far below (and _dir recurses per component)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def split_name(name: str) -> tuple[str, ...]:
    """Tar name -> path components under the root; refuses ``..`` anywhere."""
    while name[:2] == "./":
        name = name[2:]
    if (name and len(name) < 1024 and name[0] not in "/." and "/." not in name and "//" not in name
            and "\0" not in name):
        return tuple(name.rstrip("/").split("/"))  # the common case: nothing to clean
    parts = tuple(p for p in name.split("/") if p and p != ".")
    if len(parts) > MAX_DEPTH:
        raise InvalidArgument(f"tar entry name is {len(parts)} components deep (over {MAX_DEPTH})")
    if ".." in parts:
        raise InvalidArgument(f"tar entry {name!r} has a '..' component (escapes the layer)")
    if any("\0" in p for p in parts):
        raise InvalidArgument(f"tar entry {name!r} has a NUL byte")
    return parts


class Applier:
    """Extracts entries under ``root_fd`` (an open directory; the caller closes it)."""

    def __init__(self, root_fd: int, *, privileged: bool | None = None,
                 writeback: Callable[[int, int, int], None] | None = None) -> None:
        self.root_fd = root_fd
        # called as writeback(fd, offset, length) while large files are written (store/durable.py)
        self.writeback = writeback
        self.privileged = os.geteuid() == 0 if privileged is None else privileged
        self._dirs: dict[tuple[str, ...], int] = {}
        self._fast: dict[str, int] = {}  # "a/b" -> the same fds as _dirs[("a", "b")]
        self._dirmeta: list[tuple[tuple[str, ...], int, int, dict[str, bytes] | None]] = []

    # -- directory resolution ---------------------------------------------------------------
    def _dir(self, parts: tuple[str, ...], create: bool = True) -> int:
        if not parts:
            return self.root_fd
        fd = self._dirs.get(parts)
        if fd is not None:
            return fd
        pfd = self._dir(parts[:-1], create)
        name = parts[-1]
        try:
            fd = os.open(name, _DIRFLAGS, dir_fd=pfd)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=pfd)
            fd = os.open(name, _DIRFLAGS, dir_fd=pfd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidArgument(f"tar entry path {'/'.join(parts)!r} goes through a symlink or a "
                                      "non-directory (refusing to follow it)") from None
            raise
        self._dirs[parts] = fd
        return fd

    def _forget(self, parts: tuple[str, ...]) -> None:
        self._fast.clear()
        n = len(parts)
        for k in [k for k in self._dirs if k[:n] == parts]:
            os.close(self._dirs.pop(k))

    def close(self) -> None:
        self._fast.clear()
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def _remove(self, pfd: int, parts: tuple[str, ...]) -> None:
        name = parts[-1]
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            self._forget(parts)
            shutil.rmtree(name, dir_fd=pfd)
        else:
            os.unlink(name, dir_fd=pfd)

    # -- entries ----------------------------------------------------------------------------
    def apply(self, reader: TarReader) -> int:
        """Extract every entry; returns the number of entries. Restores directory modes and
        mtimes last (children change a directory's mtime)."""
        writer = FileWriter()
        try:
            count = self._apply(reader, writer)
        except BaseException as ex:
            writer.abort()
            if isinstance(ex, OSError):  # from directory resolution or whiteouts
                raise OSFailure.from_oserror(ex, "extract layer") from None
            if isinstance(ex, ValueError):  # os.* refuse embedded NULs (link targets, xattr names)
                raise InvalidArgument(f"layer tar holds an invalid name or value: {ex}") from None
            raise
        writer.finish()
        try:
            self._finish_dirs()
        except OSError as ex:
            raise OSFailure.from_oserror(ex, "extract layer") from None
        return count

    def _apply(self, reader: TarReader, writer: FileWriter) -> int:
        """The entry loop.

        The regular-file path is inlined and lean (it is most of every layer): the file is
        created with its final mode (no fchmod unless the umask or setuid/setgid/sticky bits
        require one) and chown'd only when the owner differs from ours."""
        count = 0
        priv = self.privileged
        euid, egid = os.geteuid(), os.getegid()
        umask = _umask()
        dirs = self._dirs
        open_, close, utime, fchown, fchmod = os.open, os.close, os.utime, os.fchown, os.fchmod
        copy, take = reader.copy_to, reader.take
        wb = self.writeback
        fast = self._fast
        for e in reader:
            count += 1
            if len(dirs) > _MAX_CACHED:
                self.close()
            name = e.name
            n = name[2:] if name[:2] == "./" else name
            parts: tuple[str, ...] | None
            pfd: int | None
            if (n and len(n) < 1024 and n[0] not in "/." and "/." not in n and "//" not in n and n[-1] != "/"
                    and "\0" not in n):
                # the common case: a clean relative name, no '.'/'..' component, not a whiteout
                parts = None
                i = n.rfind("/")
                if i < 0:
                    pfd, base = self.root_fd, n
                else:
                    pfd = fast.get(n[:i])
                    if pfd is None:
                        pfd = fast[n[:i]] = self._dir(tuple(n[:i].split("/")))
                    base = n[i + 1:]
            else:
                parts = split_name(name)
                if not parts:
                    if e.type == DIR:
                        self._dirmeta.append(((), e.mode, e.mtime_ns, e.xattrs))
                        if priv:
                            os.chown(self.root_fd, e.uid, e.gid)
                    continue
                base = parts[-1]
                if base[:4] == WH_PREFIX:
                    self._whiteout(parts, e.name)
                    continue
                pfd = dirs.get(parts[:-1]) if len(parts) > 1 else self.root_fd
                if pfd is None:
                    pfd = self._dir(parts[:-1])
            assert pfd is not None
            t = e.type
            try:
                if t == REG:
                    mode = e.mode
                    try:
                        fd = open_(base, _FILEFLAGS, mode & 0o777, dir_fd=pfd)
                    except FileExistsError:
                        self._remove(pfd, parts or split_name(name))
                        fd = open_(base, _FILEFLAGS, mode & 0o777, dir_fd=pfd)
                    size = e.size
                    if size <= MAX_FILE:  # finished by the writer thread (see filewriter.py)
                        owner = (e.uid, e.gid) if priv and (e.uid != euid or e.gid != egid) else None
                        batch = writer.batch
                        batch.append((fd, take(size) if size else None, owner,
                                      mode if owner and mode & 0o6000 or mode & umask or mode & 0o7000 else None,
                                      e.mtime_ns, e.xattrs, e.name))
                        if len(batch) >= BATCH:
                            writer.submit()
                        continue
                    try:
                        if size:
                            copy(fd, wb)
                        if priv and (e.uid != euid or e.gid != egid):
                            fchown(fd, e.uid, e.gid)
                            if mode & 0o6000:
                                fchmod(fd, mode)  # chown cleared setuid/setgid
                        if mode & umask or mode & 0o7000:
                            fchmod(fd, mode)
                        if e.xattrs:
                            _setxattrs(fd, e.xattrs, e.name)
                        utime(fd, ns=(e.mtime_ns, e.mtime_ns))
                    finally:
                        close(fd)
                else:
                    parts = parts or split_name(name)
                    if t == DIR:
                        self._mkdir(pfd, parts, e)
                    elif t == SYMLINK:
                        self._symlink(pfd, parts, e)
                    elif t == HARDLINK:
                        self._hardlink(pfd, parts, e.linkname, e.name)
                    elif t in (CHR, BLK, FIFO):
                        self._node(pfd, parts, e)
            except InvalidArgument:
                raise
            except OSError as ex:
                raise OSFailure.from_oserror(ex, "extract", e.name) from None
        return count

    def _create(self, pfd: int, parts: tuple[str, ...], make) -> None:  # type: ignore[no-untyped-def]
        try:
            make()
        except FileExistsError:
            self._remove(pfd, parts)
            make()

    def _mkdir(self, pfd: int, parts: tuple[str, ...], e) -> None:  # type: ignore[no-untyped-def]
        base = parts[-1]
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.lstat(base, dir_fd=pfd)
            if not stat.S_ISDIR(st.st_mode):
                self._remove(pfd, parts)
                os.mkdir(base, 0o700, dir_fd=pfd)
        if self.privileged:
            os.chown(base, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
        self._dirmeta.append((parts, e.mode, e.mtime_ns, e.xattrs))

    def _symlink(self, pfd: int, parts: tuple[str, ...], e) -> None:  # type: ignore[no-untyped-def]
        base = parts[-1]
        self._create(pfd, parts, lambda: os.symlink(e.linkname, base, dir_fd=pfd))
        if self.privileged:
            os.chown(base, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
        os.utime(base, ns=(e.mtime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, pfd: int, parts: tuple[str, ...], target: str, name: str) -> None:
        tparts = split_name(target)
        if not tparts:
            raise InvalidArgument(f"tar entry {name!r} is a hard link to the layer root")
        try:
            tpfd = self._dir(tparts[:-1], create=False)
            os.lstat(tparts[-1], dir_fd=tpfd)
        except FileNotFoundError:
            raise InvalidArgument(f"tar entry {name!r} is a hard link to {target!r}, which is not "
                                  "in the layer") from None
        if tparts == parts:
            return
        self._create(pfd, parts, lambda: os.link(tparts[-1], parts[-1], src_dir_fd=tpfd,
                                                 dst_dir_fd=pfd, follow_symlinks=False))

    def _node(self, pfd: int, parts: tuple[str, ...], e) -> None:  # type: ignore[no-untyped-def]
        base = parts[-1]
        kind = {CHR: stat.S_IFCHR, BLK: stat.S_IFBLK, FIFO: stat.S_IFIFO}[e.type]
        dev = os.makedev(e.devmajor, e.devminor) if e.type != FIFO else 0
        try:
            self._create(pfd, parts, lambda: os.mknod(base, kind | 0o600, dev, dir_fd=pfd))
        except PermissionError:
            raise InvalidArgument(f"tar entry {e.name!r} is a device node: extracting it needs root") from None
        if self.privileged:
            os.chown(base, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(base, e.mode, dir_fd=pfd)  # a node we just made, never a symlink
        if e.xattrs:
            _setxattrs(f"/proc/self/fd/{pfd}/{base}", e.xattrs, e.name)
        os.utime(base, ns=(e.mtime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _whiteout(self, parts: tuple[str, ...], name: str) -> None:
        base = parts[-1]
        pfd = self._dir(parts[:-1])
        if base == WH_OPAQUE:
            try:
                os.setxattr(pfd, "trusted.overlay.opaque", b"y")
            except OSError as ex:
                raise OSFailure.from_oserror(ex, "setxattr trusted.overlay.opaque", name) from None
            return
        if base.startswith(WH_META):
            return
        target = base[len(WH_PREFIX):]
        if target in ("", ".", ".."):
            raise InvalidArgument(f"tar entry {name!r} is an invalid whiteout")
        if "/" in target:
            raise InvalidArgument(f"tar entry {name!r} is an invalid whiteout")
        # layer.md: a whiteout applies to LOWER layers only; an entry this same layer already
        # made under that name stays (and hides the lower one anyway), so nothing to do
        try:
            os.mknod(target, stat.S_IFCHR | 0o600, 0, dir_fd=pfd)
        except FileExistsError:
            return
        except PermissionError:
            raise InvalidArgument(f"tar entry {name!r} is a whiteout: extracting it needs root") from None

    def _finish_dirs(self) -> None:
        seen: set[tuple[str, ...]] = set()
        for parts, mode, mtime_ns, xattrs in reversed(self._dirmeta):  # children before parents
            if parts in seen:
                continue  # a directory listed twice: its last entry wins (as tar -x)
            seen.add(parts)
            if len(self._dirs) > _MAX_CACHED:
                self.close()
            try:
                fd = self._dir(parts, create=False)
            except (FileNotFoundError, InvalidArgument):
                continue  # replaced later in the tar
            if xattrs:
                _setxattrs(fd, xattrs, "/".join(parts))
            os.chmod(fd, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        self._dirmeta.clear()


def _setxattrs(target: int | str, xattrs: dict[str, bytes], name: str) -> None:
    for k, v in xattrs.items():
        if k.startswith("trusted.overlay."):
            continue
        try:
            os.setxattr(target, k, v, follow_symlinks=isinstance(target, int))
        except OSError as ex:
            if ex.errno in (errno.ENOTSUP, errno.EPERM):
                continue  # not supported by this filesystem, or not permitted unprivileged
            raise OSFailure.from_oserror(ex, f"setxattr {k}", name) from None
