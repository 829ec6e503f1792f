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

from collections.abc import Callable, Iterator

from pallet.errors import DataCorruption, InvalidArgument

BLOCK = 512
CHUNK = 1 << 20

REG, HARDLINK, SYMLINK, CHR, BLK, DIR, FIFO = "0", "1", "2", "3", "4", "5", "6"
_AS_REG = {"\0": REG, "0": REG, "7": REG}
_PLAIN = {"1", "2", "3", "4", "5", "6"}
_ZERO = bytes(BLOCK)


class TarEntry:
    __slots__ = ("name", "linkname", "type", "mode", "uid", "gid", "size", "mtime_ns",
                 "devmajor", "devminor", "xattrs")

    def __init__(self) -> None:
        self.xattrs: dict[str, bytes] | None = None

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

    # -- buffer -----------------------------------------------------------------------------
    def _more(self) -> bool:
        if self._eof:
            return False
        b = self._read(self._chunk)
        if not b:
            self._eof = True
            return False
        rest = len(self._buf) - self._pos
        self._buf = self._buf[self._pos:] + b if rest else b
        self._pos = 0
        return True

    def _take(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            if not self._more():
                raise DataCorruption("tar stream is truncated")
        p = self._pos
        self._pos = p + n
        return self._buf[p:p + n]

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
        while True:
            if self._left or self._pad:
                self._skip(self._left + self._pad)
                self._left = self._pad = 0
            if len(self._buf) - self._pos < BLOCK and not self._more_header():
                return  # EOF at a header boundary: tolerated as the end (tar -x does)
            p = self._pos
            hdr = self._buf[p:p + BLOCK]
            self._pos = p + BLOCK
            if hdr == _ZERO:
                return
            chk = _num(hdr[148:156])
            if chk != sum(hdr) - sum(hdr[148:156]) + 256:
                raise DataCorruption("tar header checksum mismatch (not a tar, or corrupt)")
            t = chr(hdr[156])
            size = _num(hdr[124:136])
            if pax is not None and "size" in pax:
                size = int(pax["size"])
            if size < 0:
                raise DataCorruption("tar header has a negative size")
            self._left = size
            self._pad = -size % BLOCK
            if t in _AS_REG:
                t = REG
            elif t not in _PLAIN:
                if t == "x":
                    pax = {**(pax or {}), **_parse_pax(self.read_all())}
                    continue
                if t == "g":
                    self._global.update(_parse_pax(self.read_all()))
                    continue
                if t == "L":
                    longname = _str(self.read_all(1 << 16))
                    continue
                if t == "K":
                    longlink = _str(self.read_all(1 << 16))
                    continue
                raise InvalidArgument(f"unsupported tar entry type {t!r} for {_str(hdr[0:100])!r}")
            e = TarEntry()
            e.type = t
            e.mode = _num(hdr[100:108]) & 0o7777
            e.uid = _num(hdr[108:116])
            e.gid = _num(hdr[116:124])
            e.size = size if t == REG else 0
            e.mtime_ns = _num(hdr[136:148]) * 1_000_000_000
            e.devmajor = _num(hdr[329:337]) if t in "34" else 0
            e.devminor = _num(hdr[337:345]) if t in "34" else 0
            name = longname if longname is not None else _str(hdr[0:100])
            if longname is None and hdr[257:263] == b"ustar\0" and hdr[345] != 0:
                name = _str(hdr[345:500]) + "/" + name
            e.name = name
            e.linkname = longlink if longlink is not None else _str(hdr[157:257])
            if pax or self._global:
                self._apply_pax(e, {**self._global, **(pax or {})})
            longname = longlink = pax = None
            yield e

    def _more_header(self) -> bool:
        while len(self._buf) - self._pos < BLOCK:
            if not self._more():
                if len(self._buf) - self._pos:
                    raise DataCorruption("tar stream is truncated inside a header")
                return False
        return True

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
            elif k.startswith("GNU.sparse."):
                raise InvalidArgument(f"unsupported GNU sparse tar entry {e.name!r}")


def _pax_time_ns(v: bytes) -> int:
    s = v.decode("ascii", "replace")
    neg = s.startswith("-")
    whole, _, frac = s.lstrip("-").partition(".")
    try:
        ns = int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9])
    except ValueError:
        raise DataCorruption(f"tar pax mtime {s!r} is not a number") from None
    return -ns if neg else ns
