"""A lean streaming tar reader: ustar, pax ('x'/'g') and GNU long names ('L'/'K').

Why not ``tarfile``: it costs ~3.5x GNU tar per file (TarInfo objects, seeks, many small reads);
this reader parses each 512-byte header once from a large buffer and hands file data out as
memoryview slices of that buffer, so a file's bytes are copied once (into the kernel by write).

Contract: ``TarReader(read)`` pulls bytes from ``read(n)`` (any callable returning ``b""`` at EOF).
Iterate it for ``TarEntry`` objects; for each entry either consume its data with ``data()`` or not
(unread data is skipped on the next step). After iteration, ``drain()`` reads the stream to EOF
(so a hash over the stream covers the trailing blocks). A truncated stream or a corrupt header
raises DataCorruption; an entry type pallet does not support (GNU sparse, multi-volume) raises
InvalidArgument. Names are returned as found (``str``, surrogateescape); resolving them safely
is the applier's job (``image/apply.py``).
"""
from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator

from pallet.errors import DataCorruption, InvalidArgument

BLOCK = 512
CHUNK = 1 << 20
KICK = 8 << 20

REG, HARDLINK, SYMLINK, CHR, BLK, DIR, FIFO = "0", "1", "2", "3", "4", "5", "6"
_PLAIN = {"0", "1", "2", "3", "4", "5", "6"}
_ZERO = bytes(BLOCK)
# name mode uid gid size mtime chksum type linkname magic version uname gname devmajor devminor prefix
_HDR = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12x")
_TYPES = {b"0": REG, b"\0": REG, b"7": REG, b"1": HARDLINK, b"2": SYMLINK, b"3": CHR, b"4": BLK,
          b"5": DIR, b"6": FIFO}


class TarEntry:
    __slots__ = ("name", "linkname", "type", "mode", "uid", "gid", "size", "mtime_ns",
                 "devmajor", "devminor", "xattrs")
    name: str
    linkname: str
    type: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes] | None

    def __init__(self) -> None:
        self.xattrs = None

    def __repr__(self) -> str:
        return f"TarEntry({self.name!r}, type={self.type!r}, size={self.size})"


def _num(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 when the high bit is set."""
    if field and field[0] & 0x80:
        v = field[0] & 0x7F
        for c in field[1:]:
            v = (v << 8) | c
        if field[0] & 0x40:  # negative (base-256 two's complement)
            v -= 1 << (8 * len(field) - 1)
        return v
    s = field.split(b"\0", 1)[0].strip()
    if not s:
        return 0
    try:
        return int(s, 8)
    except ValueError:
        raise DataCorruption(f"tar header has a bad number {field!r}") from None


def _oct(field: bytes) -> int:
    try:
        return int(field.rstrip(b"\0 ") or b"0", 8)
    except ValueError:
        return _num(field)


def _str(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _parse_pax(data: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    pos, n = 0, len(data)
    while pos < n:
        if data[pos] == 0:
            break
        sp = data.find(b" ", pos)
        if sp < 0:
            raise DataCorruption("tar pax header is malformed")
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise DataCorruption("tar pax header has a bad record length") from None
        end = pos + length
        if length <= 0 or end > n or data[end - 1] != 0x0A:
            raise DataCorruption("tar pax header record is malformed")
        eq = data.find(b"=", sp + 1, end)
        if eq < 0:
            raise DataCorruption("tar pax header record lacks '='")
        out[data[sp + 1:eq].decode("utf-8", "surrogateescape")] = data[eq + 1:end - 1]
        pos = end
    return out


class TarReader:
    def __init__(self, read: Callable[[int], bytes], chunk: int = CHUNK) -> None:
        self._read = read
        self._chunk = chunk
        self._buf = b""
        self._pos = 0
        self._left = 0  # data bytes of the current entry not yet consumed
        self._pad = 0   # padding after them
        self._eof = False
        self._global: dict[str, bytes] = {}
        self._checked = False

    # -- buffer -----------------------------------------------------------------------------
    def _more(self) -> bool:
        """Replace the (fully consumed) buffer with the next chunk."""
        if self._eof:
            return False
        b = self._read(self._chunk)
        if not b:
            self._eof = True
            return False
        self._buf, self._pos = b, 0
        return True

    def _take(self, n: int) -> bytes:
        """``n`` bytes; across chunks only those bytes are copied (never a whole chunk)."""
        buf, p = self._buf, self._pos
        have = len(buf) - p
        if have >= n:
            self._pos = p + n
            return buf[p:p + n]
        parts = [buf[p:]]
        need = n - have
        while need:
            self._buf, self._pos = b"", 0
            if not self._more():
                raise DataCorruption("tar stream is truncated")
            b = self._buf
            k = min(need, len(b))
            parts.append(b[:k])
            self._pos = k
            need -= k
        return b"".join(parts)

    def _header_slow(self) -> tuple[bytes, int] | None:
        """The next header when fewer than 512 bytes are buffered; None at a clean EOF."""
        if len(self._buf) == self._pos:
            self._buf, self._pos = b"", 0
            if not self._more():
                return None
            if len(self._buf) >= BLOCK:
                self._pos = BLOCK
                return self._buf, 0
        try:
            return self._take(BLOCK), 0
        except DataCorruption:
            raise DataCorruption("tar stream is truncated inside a header") from None

    def _skip(self, n: int) -> None:
        while n:
            have = len(self._buf) - self._pos
            if have >= n:
                self._pos += n
                return
            n -= have
            self._buf, self._pos = b"", 0
            if not self._more():
                raise DataCorruption("tar stream is truncated")

    def data(self) -> Iterator[memoryview]:
        """The current entry's data as memoryview slices (valid until the next step)."""
        left = self._left
        while left:
            have = len(self._buf) - self._pos
            if not have:
                self._buf, self._pos = b"", 0
                if not self._more():
                    raise DataCorruption("tar stream is truncated inside a file")
                have = len(self._buf)
            n = have if have < left else left
            p = self._pos
            self._pos = p + n
            left -= n
            self._left = left
            yield memoryview(self._buf)[p:p + n]

    def copy_to(self, fd: int, writeback: Callable[[int, int, int], None] | None = None) -> None:
        """Write the current entry's data to ``fd`` (the fast path of ``data()``). With
        ``writeback``, call it as ``writeback(fd, offset, length)`` every KICK bytes written
        (the store starts the disk write-out of large files while they are written)."""
        write = os.write
        left = self._left
        done = kicked = 0
        while left:
            buf, p = self._buf, self._pos
            have = len(buf) - p
            if not have:
                self._buf, self._pos = b"", 0
                if not self._more():
                    raise DataCorruption("tar stream is truncated inside a file")
                continue
            n = have if have < left else left
            mv = memoryview(buf)[p:p + n]
            w = write(fd, mv)
            while w < n:  # short writes: rare on regular files, but legal
                w += write(fd, mv[w:])
            self._pos = p + n
            left -= n
            self._left = left
            if writeback is not None:
                done += n
                if done - kicked >= KICK or not left:
                    writeback(fd, kicked, done - kicked)
                    kicked = done

    def take(self, n: int) -> memoryview | bytes:
        """The current entry's data (``n`` = all of it), without copying when it lies in one
        buffer. The view stays valid: buffers are replaced, never mutated."""
        p = self._pos
        if len(self._buf) - p >= n:
            self._pos = p + n
            self._left -= n
            return memoryview(self._buf)[p:p + n]
        b = self._take(n)
        self._left -= n
        return b

    def read_all(self, cap: int = 1 << 20) -> bytes:
        if self._left > cap:
            raise InvalidArgument(f"tar metadata entry of {self._left} bytes is over the {cap}-byte limit")
        b = self._take(self._left)
        self._left = 0
        return b

    def drain(self) -> None:
        """Read the rest of the stream (end-of-archive blocks, record padding)."""
        self._buf, self._pos = b"", 0
        while self._more():
            self._buf, self._pos = b"", 0

    # -- headers ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[TarEntry]:
        longname: str | None = None
        longlink: str | None = None
        pax: dict[str, bytes] | None = None
        unpack = _HDR.unpack_from
        while True:
            if self._left or self._pad:
                self._skip(self._left + self._pad)
                self._left = self._pad = 0
            buf, p = self._buf, self._pos
            if len(buf) - p >= BLOCK:
                self._pos = p + BLOCK
            else:
                got = self._header_slow()
                if got is None:
                    return  # EOF at a header boundary: tolerated as the end (tar -x does)
                buf, p = got
            (name, mode, uid, gid, size, mtime, chk, tb, linkname, magic, _ver, _un, _gn, dmaj, dmin,
             prefix) = unpack(buf, p)
            if not name[0] and buf[p:p + BLOCK] == _ZERO:
                return
            # sum() of 512 bytes costs ~6 us: check the first header (is this a tar at all?) and
            # any without the ustar magic; the diff-id, hashed over the whole stream, covers the rest
            if not self._checked or magic[:5] != b"ustar":
                if _oct(chk) != sum(buf[p:p + BLOCK]) - sum(chk) + 256:
                    raise DataCorruption("tar header checksum mismatch (not a tar, or corrupt)")
                self._checked = True
            size = _oct(size)
            if pax is not None and "size" in pax:
                size = int(pax["size"])
            if size < 0:
                raise DataCorruption("tar header has a negative size")
            self._left = size
            self._pad = -size % BLOCK
            t = _TYPES.get(tb)
            if t is None:
                if tb == b"x":
                    rec = _parse_pax(self.read_all())
                    pax = rec if pax is None else {**pax, **rec}
                    continue
                if tb == b"g":
                    self._global.update(_parse_pax(self.read_all()))
                    continue
                if tb == b"L":
                    longname = _str(self.read_all(1 << 16))
                    continue
                if tb == b"K":
                    longlink = _str(self.read_all(1 << 16))
                    continue
                raise InvalidArgument(f"unsupported tar entry type {tb.decode('latin-1')!r} for {_str(name)!r}")
            e = TarEntry()
            e.type = t
            e.mode = _oct(mode) & 0o7777
            e.uid = _oct(uid)
            e.gid = _oct(gid)
            e.size = size if t == REG else 0
            e.mtime_ns = _oct(mtime) * 1_000_000_000
            if t == CHR or t == BLK:
                e.devmajor, e.devminor = _oct(dmaj), _oct(dmin)
            else:
                e.devmajor = e.devminor = 0
            if longname is not None:
                e.name = longname
            elif prefix[0] and magic == b"ustar\0":
                e.name = _str(prefix) + "/" + _str(name)
            else:
                e.name = _str(name)
            e.linkname = longlink if longlink is not None else (_str(linkname) if linkname[0] else "")
            if pax is not None:
                self._apply_pax(e, {**self._global, **pax} if self._global else pax)
                pax = None
            elif self._global:
                self._apply_pax(e, self._global)
            longname = longlink = None
            yield e

    @staticmethod
    def _apply_pax(e: TarEntry, pax: dict[str, bytes]) -> None:
        for k, v in pax.items():
            if k == "path":
                e.name = v.decode("utf-8", "surrogateescape")
            elif k == "linkpath":
                e.linkname = v.decode("utf-8", "surrogateescape")
            elif k == "uid":
                e.uid = int(v)
            elif k == "gid":
                e.gid = int(v)
            elif k == "mtime":
                e.mtime_ns = _pax_time_ns(v)
            elif k.startswith("SCHILY.xattr."):
                if e.xattrs is None:
                    e.xattrs = {}
                e.xattrs[k[13:]] = v
            elif k.startswith("LIBARCHIVE.xattr."):  # bsdtar: URL-encoded name, base64 value
                import base64
                from urllib.parse import unquote

                if e.xattrs is None:
                    e.xattrs = {}
                try:
                    e.xattrs.setdefault(unquote(k[17:]), base64.b64decode(v + b"=" * (-len(v) % 4)))
                except ValueError:
                    raise DataCorruption(f"tar pax header has a bad {k!r}") from None
            elif k.startswith("GNU.sparse."):
                raise InvalidArgument(f"unsupported GNU sparse tar entry {e.name!r}")


def _pax_time_ns(v: bytes) -> int:
    neg = v[:1] == b"-"
    whole, _, frac = v.lstrip(b"-").partition(b".")
    try:
        ns = int(whole or b"0") * 1_000_000_000 + (int(frac[:9].ljust(9, b"0")) if frac else 0)
    except ValueError:
        raise DataCorruption(f"tar pax mtime {v!r} is not a number") from None
    return -ns if neg else ns
