"""The build context: a directory (or a tar read from stdin, unpacked to a temp dir), the
Dockerfile, ``.dockerignore`` filtering, COPY/ADD source resolution and source checksums.

Source rules (Dockerfile reference, COPY/ADD): sources are relative to the context root (a
leading ``/`` too); a path that leaves the context is refused; symlinks are followed inside
the context only; wildcards use Go ``filepath.Match`` on the whole relative path (``*`` never
crosses ``/``), a matched directory is taken whole; files excluded by ``.dockerignore`` do not
exist for COPY/ADD (the Dockerfile and ``.dockerignore`` are read even when excluded).
"""
from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import stat
from typing import BinaryIO

from pallet.build.dockerignore import PatternMatcher, read_patterns
from pallet.build.records import record
from pallet.errors import InvalidArgument, NotFound

_GLOB_CHARS = re.compile(r"(?<!\\)[*?\[]")


def has_glob(path: str) -> bool:
    return bool(_GLOB_CHARS.search(path))


def go_match_regex(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match as a regex (no ``**``)."""
    out, i, n = "", 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i < n:
            out += re.escape(pattern[i])
            i += 1
        elif ch == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise InvalidArgument(f"syntax error in pattern {pattern!r}")
            body = pattern[i:j]
            if body.startswith("^"):
                body = "^" + body[1:].replace("\\", "\\\\")
            else:
                body = body.replace("\\", "\\\\")
            out += "[" + body + "]"
            i = j + 1
        else:
            out += re.escape(ch)
    return re.compile(out + r"\Z", re.S)


def secure_join(root: str, path: str) -> str:
    """``root/path`` with symlinks resolved as if ``root`` were ``/`` (FollowSymlinkInScope)."""
    from pallet.runtime.linux.mounts import secure_join as sj

    return sj(root, path)


@record
class Source:
    rel: str        # path relative to the context root ("" = the root)
    path: str       # absolute host path (symlinks resolved inside the context)


class BuildContext:
    def __init__(self, root: str, owned_tmp: str | None = None) -> None:
        self.root = os.path.abspath(root)
        self._owned = owned_tmp
        self.matcher: PatternMatcher | None = None
        self._load_ignore()

    @classmethod
    def from_tar(cls, stream: BinaryIO, tmp_root: str) -> BuildContext:
        import shutil
        import tarfile
        import tempfile

        tmp = tempfile.mkdtemp(prefix="buildctx-", dir=tmp_root)
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as tf:
                tf.extractall(os.path.join(tmp, "ctx"), filter="tar")
        except (tarfile.TarError, OSError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise InvalidArgument(f"build context from stdin is not a valid tar archive: {e}") from None
        return cls(os.path.join(tmp, "ctx"), tmp)

    @classmethod
    def empty(cls, tmp_root: str) -> BuildContext:
        import tempfile

        tmp = tempfile.mkdtemp(prefix="buildctx-", dir=tmp_root)
        os.mkdir(os.path.join(tmp, "ctx"))
        return cls(os.path.join(tmp, "ctx"), tmp)

    def close(self) -> None:
        if self._owned:
            import shutil

            shutil.rmtree(self._owned, ignore_errors=True)
            self._owned = None

    def _load_ignore(self) -> None:
        p = os.path.join(self.root, ".dockerignore")
        if not os.path.lexists(p):
            return
        try:
            with open(p, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError as e:
            raise InvalidArgument(f"error reading .dockerignore: {e.strerror}: {p}") from None
        try:
            self.matcher = PatternMatcher(read_patterns(text))
        except InvalidArgument as e:
            raise InvalidArgument(f"error reading .dockerignore: {e}") from None

    def excluded(self, rel: str) -> bool:
        return bool(self.matcher and rel and self.matcher.matches(rel))

    # -- sources ----------------------------------------------------------------------------
    def resolve(self, src: str, what: str = "COPY") -> list[Source]:
        """The context entries one COPY/ADD source names."""
        cleaned = posixpath.normpath("/" + src)  # a backslash is an ordinary character here
        norm = posixpath.normpath(src) if src else "."
        if norm == ".." or norm.startswith("../"):
            raise InvalidArgument(f"{what} failed: forbidden path outside the build context: {src}")
        rel = cleaned.lstrip("/")
        if has_glob(rel):
            rx = go_match_regex(rel)
            out = [Source(r, os.path.join(self.root, r)) for r in self._glob(rx)]
            if not out:
                raise NotFound(f"{what} failed: no source files were specified")
            return out
        full = secure_join(self.root, rel)
        real_rel = os.path.relpath(full, self.root)
        real_rel = "" if real_rel == "." else real_rel
        if not os.path.lexists(full) or (rel and (self.excluded(rel) or self.excluded(real_rel))):
            raise NotFound(f"{what} failed: file not found in build context or excluded by "
                           f".dockerignore: stat {src}: file does not exist")
        return [Source(rel, full)]

    def _glob(self, rx: re.Pattern[str]) -> list[str]:
        found: list[str] = []

        def rec(rel: str) -> None:
            full = os.path.join(self.root, rel) if rel else self.root
            for name in sorted(os.listdir(full)):
                r = f"{rel}/{name}" if rel else name
                if self.excluded(r):
                    continue
                if rx.match(r):
                    found.append(r)
                    continue
                if os.path.isdir(os.path.join(self.root, r)) and not os.path.islink(os.path.join(self.root, r)):
                    rec(r)
        rec("")
        return found

    def walk(self, src: Source) -> list[tuple[str, str, os.stat_result]]:
        """(path relative to the source, absolute path, lstat) of everything a source copies:
        the source itself ("" first), then, for a directory, its non-excluded contents."""
        st = os.stat(src.path)
        out = [("", src.path, st)]
        if not stat.S_ISDIR(st.st_mode):
            return out
        base_rel = os.path.relpath(src.path, self.root)
        base_rel = "" if base_rel == "." else base_rel

        def rec(sub: str) -> None:
            full = os.path.join(src.path, sub) if sub else src.path
            for name in sorted(os.listdir(full)):
                s = f"{sub}/{name}" if sub else name
                crel = f"{base_rel}/{s}" if base_rel else s
                p = os.path.join(src.path, s)
                if self.excluded(crel):
                    # docker walks into an ignored directory an exception may re-include from
                    if (self.matcher is not None and os.path.isdir(p) and not os.path.islink(p)
                            and self.matcher.dir_may_hold_exception(crel)):
                        rec(s)
                    continue
                lst = os.lstat(p)
                out.append((s, p, lst))
                if stat.S_ISDIR(lst.st_mode):
                    rec(s)
        rec("")
        return out

    def checksum(self, sources: list[Source]) -> str:
        """Content, type, mode and owner of everything the sources copy; not mtimes."""
        h = hashlib.sha256()
        for src in sources:
            h.update(f"src {src.rel}\n".encode())
            for sub, path, st in self.walk(src):
                h.update(f"{sub}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0"
                         f"{st.st_uid}:{st.st_gid}\0".encode())
                if stat.S_ISREG(st.st_mode):
                    h.update(file_digest(path).encode())
                elif stat.S_ISLNK(st.st_mode):
                    h.update(os.readlink(path).encode())
                h.update(b"\n")
        return h.hexdigest()


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def looks_like_tar(head: bytes) -> bool:
    if len(head) >= 262 and head[257:262] == b"ustar":
        return True
    return head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or \
        head[:4] == b"\x28\xb5\x2f\xfd"


def read_stdin_context(stdin: BinaryIO, tmp_root: str) -> tuple[BuildContext, str | None]:
    """``pallet build -``: stdin is a tar context, or a lone Dockerfile (then the context is
    empty). Returns the context and, for a lone Dockerfile, its text."""
    data = stdin.read(512 * 1024)
    if looks_like_tar(data):
        rest = io.BufferedReader(_Chain(data, stdin))  # type: ignore[arg-type,type-var]
        return BuildContext.from_tar(rest, tmp_root), None
    more = stdin.read()
    return BuildContext.empty(tmp_root), (data + more).decode("utf-8", "surrogateescape")


class _Chain(io.RawIOBase):
    def __init__(self, head: bytes, tail: BinaryIO) -> None:
        self.head = head
        self.tail = tail

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.tail.read(len(b))
        b[: len(data)] = data
        return len(data)
