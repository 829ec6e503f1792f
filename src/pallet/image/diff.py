"""An overlayfs upper dir -> a layer tar, and the change list ``docker diff`` prints.

Upper-dir conventions (kernel Documentation/filesystems/overlayfs.rst) -> OCI layer
conventions (image-spec layer.md "Whiteouts"):

* a 0/0 character device NAME (a deleted file or dir) -> an empty regular file ``.wh.NAME``;
* a directory with ``trusted.overlay.opaque=y`` (a dir removed then made again, hiding the
  lower one) -> the directory, then ``DIR/.wh..wh..opq``;
* everything else as it is: regular files (hard links kept as links within the layer),
  directories, symlinks, device nodes, fifos, modes, owners, mtimes and xattrs (never the
  ``trusted.overlay.*`` ones).

Entries are written in sorted path order, so the same tree gives the same bytes (and diff-id)
as long as mtimes are equal. Paths never follow symlinks (lstat/readlink only).
"""
from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pallet.errors import OSFailure

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def sorted_walk(root: str) -> Iterator[tuple[str, os.stat_result]]:
    def rec(rel: str) -> Iterator[tuple[str, os.stat_result]]:
        full = os.path.join(root, rel) if rel else root
        try:
            names = sorted(os.listdir(full))
        except OSError as e:
            raise OSFailure.from_oserror(e, "listdir", full) from None
        for name in names:
            r = f"{rel}/{name}" if rel else name
            st = os.lstat(os.path.join(root, r))
            yield r, st
            if stat.S_ISDIR(st.st_mode):
                yield from rec(r)
    return rec("")


def _xattrs(path: str, strip: bool = False) -> dict[str, str]:
    """PAX xattr headers; with ``strip`` the overlay bookkeeping xattrs (origin, impure, ...)
    are also removed from the file, so the tree can serve as a lower layer (opaque stays)."""
    out: dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for n in names:
        if n.startswith("trusted.overlay."):
            if strip and n != "trusted.overlay.opaque":
                try:
                    os.removexattr(path, n, follow_symlinks=False)
                except OSError:
                    pass
            continue
        try:
            v = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            continue
        out["SCHILY.xattr." + n] = v.decode("utf-8", "surrogateescape")
    return out


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = int(st.st_mtime)
    return ti


class _HashWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, b: bytes) -> int:
        self.h.update(b)
        self.size += len(b)
        return self.out.write(b)

    def tell(self) -> int:
        return self.size


@dataclass
class TarResult:
    diff_id: str      # "sha256:<hex>" of the tar
    size: int         # bytes written
    entries: int


def engine_mountpoints(upper: str) -> set[str]:
    """The empty files the engine creates in a container's upper dir as bind-mount targets
    (/etc/hostname, /etc/hosts, /etc/resolv.conf): docker keeps them in an init layer, so
    ``docker diff`` and ``docker commit`` never show them."""
    out = set()
    for rel in ("etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv"):
        try:
            st = os.lstat(os.path.join(upper, rel))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            out.add(rel)
    return out


def write_layer(upper: str, out: BinaryIO, *, strip_overlay_xattrs: bool = False,
                exclude: set[str] | frozenset[str] = frozenset()) -> TarResult:
    """Write the layer tar of ``upper`` to ``out`` (not closed); returns its digest and size.
    ``exclude``: relative paths left out (see engine_mountpoints)."""
    hw = _HashWriter(out)
    tf = _Tar(hw)
    links: dict[tuple[int, int], str] = {}
    n = 0
    try:
        for rel, st in sorted_walk(upper):
            if rel in exclude:
                continue
            full = os.path.join(upper, rel)
            n += 1
            mode = st.st_mode
            if is_whiteout(st):
                d, _, base = rel.rpartition("/")
                ti = _info((d + "/" if d else "") + WH_PREFIX + base, st)
                ti.mode, ti.type, ti.size = 0o644, tarfile.REGTYPE, 0
                tf.addfile(ti)
                continue
            ti = _info(rel, st)
            ti.pax_headers = _xattrs(full, strip_overlay_xattrs)
            if stat.S_ISDIR(mode):
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
                if is_opaque(full):
                    op = _info(rel + "/" + WH_OPAQUE, st)
                    op.mode, op.type, op.size = 0o644, tarfile.REGTYPE, 0
                    tf.addfile(op)
            elif stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, links[key], 0
                    tf.addfile(ti)
                    continue
                if st.st_nlink > 1:
                    links[key] = rel
                ti.type, ti.size = tarfile.REGTYPE, st.st_size
                with open(full, "rb") as f:
                    tf.addfile(ti, f)
            elif stat.S_ISLNK(mode):
                ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(full)
                tf.addfile(ti)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tf.addfile(ti)
            elif stat.S_ISFIFO(mode):
                ti.type = tarfile.FIFOTYPE
                tf.addfile(ti)
            elif stat.S_ISSOCK(mode) and strip_overlay_xattrs:
                os.unlink(full)  # not archived (docker skips them): the adopted tree must match the tar
            # sockets are not archived (docker skips them too)
        # end of archive: two zero blocks and no record padding, as Go's archive/tar writes
        # (so an empty layer has docker's well-known diff-id sha256:5f70bf18...)
        hw.write(b"\0" * 1024)
    finally:
        pass
    return TarResult("sha256:" + hw.h.hexdigest(), hw.size, n)


class _Tar:
    """Writes members: a plain ustar header built directly when the member fits one (most
    do: ~20x cheaper than tarfile's), else tarfile's PAX header (long names, xattrs, UTF-8)."""

    def __init__(self, out: _HashWriter) -> None:
        self.out = out

    def addfile(self, ti: tarfile.TarInfo, f: BinaryIO | None = None) -> None:
        hdr = _ustar(ti)
        self.out.write(hdr if hdr is not None else ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if f is None or ti.type != tarfile.REGTYPE or not ti.size:
            return
        left = ti.size
        while left:
            b = f.read(min(CHUNK, left))
            if not b:
                raise OSError(f"{ti.name}: file shrank while being archived")
            self.out.write(b)
            left -= len(b)
        pad = (-ti.size) % 512
        if pad:
            self.out.write(b"\0" * pad)


def _num(n: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, n)


def _ustar(ti: tarfile.TarInfo) -> bytes | None:
    if ti.pax_headers:
        return None
    try:
        name = ti.name.encode("ascii")
        link = ti.linkname.encode("ascii")
    except UnicodeEncodeError:
        return None
    if ti.type == tarfile.DIRTYPE and not name.endswith(b"/"):
        name += b"/"
    if (len(link) > 100 or ti.size >= 8 ** 11 or not 0 <= ti.uid < 8 ** 7 or not 0 <= ti.gid < 8 ** 7
            or not 0 <= ti.mtime < 8 ** 11):
        return None
    prefix = b""
    if len(name) > 100:
        cut = name.rfind(b"/", 0, 156)
        while cut > 0 and len(name) - cut - 1 > 100:
            cut = -1
        if cut <= 0:
            return None
        prefix, name = name[:cut], name[cut + 1:]
    h = b"".join((
        name.ljust(100, b"\0"), _num(ti.mode & 0o7777, 8), _num(ti.uid, 8), _num(ti.gid, 8),
        _num(ti.size, 12), _num(int(ti.mtime), 12), b" " * 8, ti.type, link.ljust(100, b"\0"),
        b"ustar\x0000", b"\0" * 64, _num(ti.devmajor, 8), _num(ti.devminor, 8),
        prefix.ljust(155, b"\0"), b"\0" * 12))
    chk = b"%06o\0 " % sum(h)
    return h[:148] + chk + h[156:]


@dataclass(frozen=True)
class Change:
    kind: str    # "A", "C" or "D"
    path: str    # absolute in the container, e.g. "/etc/passwd"

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def _lower_names(lowerdirs: list[str], rel: str) -> list[str]:
    """Names the lower layers show in directory ``rel`` (top first; whiteouts hide, an opaque
    lower dir hides the layers below it)."""
    seen: dict[str, bool] = {}
    for lower in lowerdirs:
        d = os.path.join(lower, rel)
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            if n not in seen:
                try:
                    seen[n] = not is_whiteout(os.lstat(os.path.join(d, n)))
                except OSError:
                    continue
        if is_opaque(d):
            break
    return sorted(n for n, present in seen.items() if present)


def changes(upper: str, lowerdirs: list[str], exclude: set[str] | frozenset[str] = frozenset()) -> list[Change]:
    """What ``docker diff`` reports for an overlay upper dir over ``lowerdirs`` (top first),
    sorted by path: a whiteout is ``D``; a path that exists in a lower layer is ``C``
    (directories only when size, mode or mtime differ, or something under them changed);
    anything else ``A``; the parent of an A or D is ``C``. A replaced directory (opaque) is
    ``C`` with a ``D`` for each lower entry it hides, as dockerd 20.10's overlay2 (naive diff)
    prints it; an opaque dir with nothing below it is ``A``."""
    out: list[Change] = []
    changed_dirs: set[str] = set()
    for rel, st in sorted_walk(upper):
        if rel in exclude:
            continue
        path = "/" + rel
        full = os.path.join(upper, rel)
        isdir = stat.S_ISDIR(st.st_mode)
        hidden: list[str] = []
        if is_whiteout(st):
            kind = "D"
        else:
            kind, same_dir = "A", False
            for lower in lowerdirs:
                try:
                    lst = os.stat(os.path.join(lower, rel))
                except OSError:
                    continue
                if stat.S_ISDIR(lst.st_mode) and isdir and st.st_size == lst.st_size \
                        and st.st_mode == lst.st_mode and int(st.st_mtime) == int(lst.st_mtime):
                    same_dir = True
                kind = "C"
                break
            if isdir and kind == "C" and is_opaque(full):
                same_dir = False
                mine = set(os.listdir(full))
                hidden = [n for n in _lower_names(lowerdirs, rel) if n not in mine]
            if same_dir:
                continue
        if isdir:
            changed_dirs.add(path)
        if kind in ("A", "D"):
            parent = os.path.dirname(path)
            if parent != "/" and parent not in changed_dirs:
                out.append(Change("C", parent))
                changed_dirs.add(parent)
        out.append(Change(kind, path))
        out.extend(Change("D", f"{path}/{n}") for n in hidden)
    out.sort(key=lambda c: c.path.split("/"))
    return out
