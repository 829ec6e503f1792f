"""Declared VOLUMEs during RUN, as Docker's legacy builder has them.

Docker runs each RUN with an anonymous volume on every path in the image's ``Volumes``: the
mountpoint directory is created in the container's layer when the image lacks it (so the layer
records it, with any parent it needed), and whatever the command writes or deletes below it goes
to the throw-away volume, never into the layer. pallet runs the command on the plain overlay and
then makes the upper dir say what Docker's would: ``prepare`` creates the missing mountpoints in
the upper dir before the run, ``discard`` drops everything the run changed at or below each
volume afterwards (keeping the mountpoints ``prepare`` made, empty).
"""
from __future__ import annotations

import os
import posixpath
import shutil
import stat

from pallet.errors import InvalidArgument

_MAX_LINKS = 40


def _lower_lstat(lowers: list[str], rel: str) -> tuple[str, os.stat_result] | None:
    """The entry ``rel`` as the overlay of ``lowers`` (top first) shows it, or None."""
    for d in lowers:
        p = os.path.join(d, rel)
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # a whiteout
            return None
        return p, st
    return None


def _resolve(lowers: list[str], path: str) -> str:
    """``path`` with symlinks resolved inside the image (as FollowSymlinkInScope), relative."""
    parts = [p for p in path.split("/") if p]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        rel = "/".join(done + [part])
        hit = _lower_lstat(lowers, rel)
        if hit is not None and stat.S_ISLNK(hit[1].st_mode):
            hops += 1
            if hops > _MAX_LINKS:
                raise InvalidArgument(f"VOLUME {path}: too many levels of symbolic links")
            target = os.readlink(hit[0])
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        done.append(part)
    return "/".join(done)


def prepare(lowers: list[str], upper: str, volumes: dict[str, object] | None) -> list[tuple[str, bool]]:
    """Create the missing mountpoints in ``upper``; returns (relative path, created) per volume,
    parents first."""
    out: list[tuple[str, bool]] = []
    for vol in sorted(volumes or {}, key=lambda v: posixpath.normpath("/" + v).count("/")):
        rel = _resolve(lowers, posixpath.normpath("/" + vol))
        if not rel:
            continue
        hit = _lower_lstat(lowers, rel)
        if hit is not None:
            if not stat.S_ISDIR(hit[1].st_mode):
                raise InvalidArgument(f"cannot mount volume over existing file, file exists /{rel}")
            out.append((rel, False))
            continue
        cur = ""
        for part in rel.split("/"):
            cur = f"{cur}/{part}" if cur else part
            host = os.path.join(upper, cur)
            if os.path.lexists(host):
                continue
            below = _lower_lstat(lowers, cur)
            os.mkdir(host)
            if below is not None and stat.S_ISDIR(below[1].st_mode):  # a parent the overlay shows
                st = below[1]
                os.chmod(host, stat.S_IMODE(st.st_mode))
                os.lchown(host, st.st_uid, st.st_gid)
                os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))
            else:
                os.chmod(host, 0o755)
        out.append((rel, True))
    return out


def discard(upper: str, prepared: list[tuple[str, bool]]) -> None:
    """Drop what the run changed at or below each volume (a made mountpoint stays, empty)."""
    for rel, created in prepared:
        host = os.path.join(upper, rel)
        if not os.path.lexists(host):
            continue
        if created and os.path.isdir(host) and not os.path.islink(host):
            for e in os.scandir(host):
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path)
                else:
                    os.unlink(e.path)
            os.chmod(host, 0o755)
            os.lchown(host, 0, 0)
            continue
        if os.path.isdir(host) and not os.path.islink(host):
            shutil.rmtree(host)
        else:
            os.unlink(host)
