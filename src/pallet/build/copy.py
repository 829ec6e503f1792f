"""COPY/ADD into a mounted root (runs inside the sandbox child, over the overlay).

Destination rules (Dockerfile reference): a relative dest is relative to WORKDIR; a dest
ending in ``/``, or an existing directory, receives sources under their base names; a
directory source copies its contents (not itself); several sources need a dest ending in
``/``; missing parents are created (0755, owned by the --chown user). Ownership is 0:0 (or
--chown) for context sources, kept for --from sources unless --chown; modes and mtimes are
kept unless --chmod. ADD extracts local tar archives (plain, gzip, bzip2, xz) into the dest.
Every path inside the root is resolved with symlinks confined to the root.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from dataclasses import dataclass, field

from pallet.build.context import go_match_regex, has_glob, looks_like_tar, secure_join
from pallet.errors import InvalidArgument, NotFound


@dataclass
class CopyItem:
    path: str                 # absolute: a context path, or a path inside the source root (--from)
    name: str                 # base name used under a directory dest
    entries: list[tuple[str, str]] | None = None   # for a context dir: (sub, abs) not excluded
    content: bytes | None = None                   # a here-document
    remote: bool = False                           # fetched from a URL: never extracted


@dataclass
class CopyPlan:
    items: list[CopyItem]
    dest: str
    workdir: str
    chown: str | None = None
    chmod: int | None = None
    is_add: bool = False
    keep_owner: bool = False          # --from without --chown
    from_patterns: list[str] = field(default_factory=list)   # --from sources, resolved in the child
    what: str = "COPY"


def parse_chmod(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise InvalidArgument(f"invalid chmod parameter: {text!r} (use an octal mode such as 0755)") from None
    if mode < 0 or mode > 0o7777:
        raise InvalidArgument(f"invalid chmod parameter: {text!r}")
    return mode


def _lookup(root: str, fname: str, name: str) -> list[str] | None:
    p = secure_join(root, f"/etc/{fname}")
    try:
        with open(p, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 3 and parts[0] == name:
                    return parts
    except OSError:
        return None
    return None


def resolve_chown(root: str, spec: str) -> tuple[int, int]:
    """``user[:group]`` by number or by name in the image's /etc/passwd and /etc/group."""
    user, _, group = spec.partition(":")
    if ":" in group:
        raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: invalid chown string "
                              f"format: {spec}")
    if not user:
        raise InvalidArgument(f"invalid chown parameter: {spec!r}")
    if user.isdigit():
        uid = int(user)
    else:
        ent = _lookup(root, "passwd", user)
        if ent is None:
            raise NotFound(f"unable to convert uid/gid chown string to host mapping: can't find uid for user "
                           f"{user}: no such user: {user}")
        uid = int(ent[2])
    if not group:
        group = user  # docker: a user alone also names the group (a number, or a group name to look up)
    if group.isdigit():
        return uid, int(group)
    gent = _lookup(root, "group", group)
    if gent is None:
        raise NotFound(f"unable to convert uid/gid chown string to host mapping: can't find gid for group "
                       f"{group}: no such group: {group}")
    return uid, int(gent[2])


class _Copier:
    def __init__(self, root: str, plan: CopyPlan, owner: tuple[int, int] | None) -> None:
        self.root = root
        self.plan = plan
        self.owner = owner

    def mkdirs(self, cpath: str) -> str:
        """Create ``cpath`` (container path) and missing parents; returns the host path."""
        parts = [p for p in cpath.split("/") if p]
        cur = "/"
        for p in parts:
            cur = posixpath.join(cur, p)
            host = secure_join(self.root, cur)
            if not os.path.lexists(host):
                os.mkdir(host, 0o755)
                os.chmod(host, 0o755)
                o = self.owner or (0, 0)
                os.lchown(host, *o)
            elif not os.path.isdir(host):
                raise InvalidArgument(f"{self.plan.what} failed: cannot create directory {cur}: "
                                      "a file is in the way")
        return secure_join(self.root, cpath)

    def _meta(self, dst: str, st: os.stat_result, is_link: bool = False) -> None:
        owner = self.owner or ((st.st_uid, st.st_gid) if self.plan.keep_owner else (0, 0))
        os.lchown(dst, *owner)
        if not is_link:
            if self.plan.chmod is not None:
                mode = self.plan.chmod
            else:
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISREG(st.st_mode) and (self.owner is not None or not self.plan.keep_owner):
                    # docker chowns what it copied from the context (or with --chown) after the
                    # modes are set, and chown(2) clears set-user-ID, and set-group-ID when the
                    # group may execute
                    mode &= ~stat.S_ISUID
                    if mode & stat.S_IXGRP:
                        mode &= ~stat.S_ISGID
            os.chmod(dst, mode)
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def _clear(self, dst: str, want_dir: bool) -> None:
        if os.path.lexists(dst):
            if os.path.isdir(dst) and not os.path.islink(dst):
                if not want_dir:
                    shutil.rmtree(dst)
            else:
                os.unlink(dst)

    def copy_entry(self, src: str, dst: str, st: os.stat_result) -> None:
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            self._clear(dst, True)
            if not os.path.isdir(dst):
                os.mkdir(dst, 0o755)
            self._meta(dst, st)
        elif stat.S_ISLNK(mode):
            self._clear(dst, False)
            os.symlink(os.readlink(src), dst)
            self._meta(dst, st, is_link=True)
        elif stat.S_ISREG(mode):
            self._clear(dst, False)
            with open(src, "rb") as fi, open(dst, "wb") as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
            self._meta(dst, st)
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            self._clear(dst, False)
            os.mknod(dst, mode, st.st_rdev)
            self._meta(dst, st)

    def copy_tree(self, item: CopyItem, dst_dir: str) -> None:
        entries = item.entries
        if entries is None:
            entries = []
            for dirpath, dirnames, filenames in os.walk(item.path):
                dirnames.sort()
                for n in sorted(dirnames) + sorted(filenames):
                    full = os.path.join(dirpath, n)
                    entries.append((os.path.relpath(full, item.path), full))
        dirs: list[tuple[str, os.stat_result]] = []
        links: dict[tuple[int, int], str] = {}  # hard links inside one source stay links (docker's tar)
        for sub, full in entries:
            st = os.lstat(full)
            dst = os.path.join(dst_dir, sub)
            parent = os.path.dirname(dst)
            if not os.path.isdir(parent):  # an ignored directory with re-included contents
                self.mkdirs(posixpath.join("/", os.path.relpath(parent, self.root)))
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                first = links.setdefault((st.st_dev, st.st_ino), dst)
                if first != dst:
                    self._clear(dst, False)
                    os.link(first, dst)
                    continue
            self.copy_entry(full, dst, st)
            if stat.S_ISDIR(st.st_mode):
                dirs.append((dst, st))
        for dst, st in reversed(dirs):  # children changed the mtimes
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))

    def run(self) -> None:
        plan = self.plan
        dest = plan.dest
        if not dest.startswith("/"):
            dest = posixpath.join(plan.workdir or "/", dest)
        dir_hint = plan.dest.endswith("/") or plan.dest.endswith("/.") or plan.dest in (".", "")
        if len(plan.items) > 1 and not dir_hint:
            raise InvalidArgument(f"When using {plan.what} with more than one source file, the "
                                  "destination must be a directory and end with a /")
        host_dest = secure_join(self.root, dest)
        dest_is_dir = dir_hint or os.path.isdir(host_dest)
        for item in plan.items:
            if item.content is not None:
                if dest_is_dir:
                    hp = os.path.join(self.mkdirs(dest), item.name)
                else:
                    self.mkdirs(posixpath.dirname(dest))
                    hp = secure_join(self.root, dest)
                self._clear(hp, False)
                with open(hp, "wb") as f:
                    f.write(item.content)
                os.lchown(hp, *(self.owner or (0, 0)))
                os.chmod(hp, plan.chmod if plan.chmod is not None else 0o644)
                continue
            st = os.stat(item.path)
            if stat.S_ISDIR(st.st_mode):
                hd = self.mkdirs(dest)
                self.copy_tree(item, hd)
                continue
            if plan.is_add and not item.remote and _is_archive(item.path):
                hd = self.mkdirs(dest)
                _extract(item.path, hd)
                continue
            if dest_is_dir:
                # docker resolves the directory, not the name in it: a symlink or a directory
                # already there is replaced by the file
                hp = os.path.join(self.mkdirs(dest), item.name)
            else:
                self.mkdirs(posixpath.dirname(dest) or "/")
                hp = secure_join(self.root, dest)
                if os.path.isdir(hp) and not os.path.islink(hp):
                    hp = os.path.join(hp, item.name)
            self.copy_entry(item.path, hp, st)


def _is_archive(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(512)
    if not looks_like_tar(head):
        return False
    try:
        with tarfile.open(path, "r:*") as tf:
            tf.next()
        return True
    except (tarfile.TarError, OSError, EOFError):
        return False


def _extract(path: str, dest: str) -> None:
    with tarfile.open(path, "r:*") as tf:
        # the archive's own root entry ("./") would re-own the destination: docker skips it
        members = [m for m in tf.getmembers() if posixpath.normpath("/" + m.name) != "/"]
        tf.extractall(dest, members=members, filter="tar", numeric_owner=True)


def run_copy(root: str, source_root: str | None, plan: CopyPlan) -> None:
    """Entry point in the sandbox child. ``source_root`` is the --from image's mount."""
    owner = resolve_chown(root, plan.chown) if plan.chown else None
    if source_root is not None:
        items = []
        for pat in plan.from_patterns:
            items.extend(_resolve_in(source_root, pat, plan.what))
        plan.items = items + plan.items
    _Copier(root, plan, owner).run()


def _resolve_in(root: str, src: str, what: str) -> list[CopyItem]:
    rel = posixpath.normpath("/" + src).lstrip("/")
    if has_glob(rel):
        rx = go_match_regex(rel)
        found: list[CopyItem] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            r = os.path.relpath(dirpath, root)
            for n in sorted(dirnames) + sorted(filenames):
                rr = n if r == "." else f"{r}/{n}"
                if rx.match(rr):
                    found.append(CopyItem(os.path.join(root, rr), n))
        if not found:
            raise NotFound(f"{what} failed: no source files were specified")
        return found
    full = secure_join(root, rel)
    if not os.path.lexists(full):
        raise NotFound(f"{what} failed: stat {src}: file does not exist")
    return [CopyItem(full, posixpath.basename(rel) or "/")]
