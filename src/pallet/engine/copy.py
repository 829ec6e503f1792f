"""``cp`` (both ways) and ``export``: the container's filesystem, seen from a forked child in
a private mount namespace.

A running container is reached through ``/proc/PID/root`` (its own mounts, volumes included);
a stopped one through its overlay, mounted in the child's private mount namespace, so the mount
disappears with the child whatever happens (nothing to unmount on the host). Container paths are
resolved with every symlink taken relative to the container root (``secure_join``): a path can
never lead out of it; copies never follow symlinks (they are copied as symlinks).
"""
from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Callable
from typing import Any

from pallet.engine.containers import Container
from pallet.errors import InvalidArgument, NotFound, PalletError


def _in_child(s: Any, c: Container, work: Callable[[str], None]) -> None:
    """Run ``work(root)`` in a forked child with a private mount namespace; re-raise its error."""
    from pallet.runtime.linux import syscalls as sc

    running = c.status in ("running", "paused") and c.pid > 0
    mnt = str(s.dirs(c).run / f"cp-{os.getpid()}")
    if not running:
        os.makedirs(mnt, exist_ok=True)  # (makes the container's run dir too; removed with it)
    r, w = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            if running:
                root = f"/proc/{c.pid}/root"
            else:
                sc.unshare(sc.CLONE_NEWNS)
                sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
                d = s.dirs(c)
                lower = ":".join(c.config.get("Lowerdirs", []))
                sc.mount("overlay", mnt, "overlay", 0, f"lowerdir={lower},upperdir={d.upper},workdir={d.work}")
                root = mnt
            work(root)
            sys.stdout.flush()
        except BrokenPipeError:
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            msg = f"{type(e).__name__}\0{e}"
            os.write(w, msg.encode()[:4000])
            code = 1
        os._exit(code)
    os.close(w)
    try:
        data = b""
        while chunk := os.read(r, 4096):
            data += chunk
        os.waitpid(pid, 0)
    finally:
        os.close(r)
        if not running:
            try:
                os.rmdir(mnt)
            except OSError:
                pass
    if data:
        kind, _, msg = data.decode(errors="replace").partition("\0")
        from pallet import errors

        cls = getattr(errors, kind, None)
        if isinstance(cls, type) and issubclass(cls, PalletError):
            raise cls(msg)
        raise PalletError(msg)


def _resolve(root: str, path: str, *, follow_last: bool = True) -> str:
    """``root/path`` with symlinks resolved inside ``root``; the last component kept as is
    (a symlink is copied as a symlink) unless ``follow_last``."""
    from pallet.runtime.linux.mounts import secure_join

    if follow_last:
        return secure_join(root, path)
    head, tail = os.path.split(path.rstrip("/"))
    if tail in ("", ".", ".."):
        return secure_join(root, path)
    return os.path.join(secure_join(root, head or "/"), tail)


def _copy_any(src: str, dst: str) -> None:
    """Copy without following a symlink on either side: a symlink already at a destination
    path is replaced, never written through (it could point out of the container)."""
    st = os.lstat(src)
    if os.path.islink(dst) or (os.path.lexists(dst) and not stat.S_ISDIR(st.st_mode) and os.path.isdir(dst)):
        os.unlink(dst) if os.path.islink(dst) else shutil.rmtree(dst)
    if stat.S_ISDIR(st.st_mode):
        if os.path.lexists(dst) and not os.path.isdir(dst):
            os.unlink(dst)
        os.makedirs(dst, exist_ok=True)
        shutil.copystat(src, dst, follow_symlinks=False)
        for e in os.scandir(src):
            _copy_any(e.path, os.path.join(dst, e.name))
    elif stat.S_ISLNK(st.st_mode):
        if os.path.lexists(dst):
            os.unlink(dst)
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        shutil.copy2(src, dst, follow_symlinks=False)


def _target(src_is_dir: bool, src_path: str, dst: str, dst_exists_dir: bool, dst_exists: bool) -> str:
    """docker cp's rules: into an existing dir (as its basename), else as the new name; SRC/. copies contents."""
    contents = src_path.endswith("/.") or src_path.endswith("/./")
    if dst_exists_dir and not contents:
        return os.path.join(dst, os.path.basename(src_path.rstrip("/")) or "root")
    if not src_is_dir and dst.endswith("/") and not dst_exists:
        raise InvalidArgument(f"destination directory {dst!r} does not exist")
    return dst


def copy_out(s: Any, c: Container, cpath: str, dst: str, follow: bool = False) -> None:
    if dst == "-":
        return export(s, c, None, sub=cpath)

    def work(root: str) -> None:
        src = _resolve(root, cpath, follow_last=follow)
        if not os.path.lexists(src):
            raise NotFound(f"Could not find the file {cpath} in container {c.name}")
        is_dir = os.path.isdir(src) and not os.path.islink(src)
        parent = os.path.dirname(os.path.abspath(dst)) or "/"
        if not os.path.isdir(parent):
            raise InvalidArgument(f"destination directory {parent!r} does not exist")
        _copy_any(src, _target(is_dir, cpath, dst, os.path.isdir(dst), os.path.exists(dst)))

    _in_child(s, c, work)


def copy_in(s: Any, c: Container, src: str, cpath: str) -> None:
    if src == "-":
        data = sys.stdin.buffer.read()

        def untar(root: str) -> None:
            import io
            import tarfile

            dest = _resolve(root, cpath)
            if not os.path.isdir(dest):
                raise InvalidArgument(f"destination {cpath!r} must be a directory")
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                tf.extractall(dest, filter="tar")

        return _in_child(s, c, untar)
    if not os.path.lexists(src):
        raise NotFound(f"could not find the file {src} on the host")
    is_dir = os.path.isdir(src) and not os.path.islink(src)

    def work(root: str) -> None:
        dest = _resolve(root, cpath)
        parent = os.path.dirname(dest)
        if not os.path.isdir(parent):
            raise InvalidArgument(f"destination directory {os.path.dirname(cpath)!r} does not exist in the container")
        target = _target(is_dir, src, dest, os.path.isdir(dest), os.path.lexists(dest))
        # the last component was resolved inside the root; the target's parent must be too
        real_parent = _resolve(root, os.path.relpath(os.path.dirname(target), root))
        _copy_any(src, os.path.join(real_parent, os.path.basename(target)))

    _in_child(s, c, work)


def export(s: Any, c: Container, output: str | None, sub: str = "/") -> None:
    """A tar of the container's root filesystem (one filesystem: no /proc, /sys, volumes)."""
    out_fd = -1
    if output is not None:
        out_fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    def work(root: str) -> None:
        import tarfile

        top = _resolve(root, sub)
        if not os.path.lexists(top):
            raise NotFound(f"Could not find the file {sub} in container {c.name}")
        fobj = os.fdopen(out_fd if out_fd >= 0 else os.dup(1), "wb")
        dev = os.lstat(root + "/").st_dev
        base = os.path.basename(sub.rstrip("/")) if sub.strip("/") else ""
        with fobj, tarfile.open(fileobj=fobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            if not os.path.isdir(top) or os.path.islink(top):
                tf.add(top, arcname=base, recursive=False)
                return
            for dp, dns, fns in os.walk(top):
                rel = os.path.relpath(dp, top)
                arc_dir = base if rel == "." else (f"{base}/{rel}" if base else rel)
                if arc_dir:
                    tf.add(dp, arcname=arc_dir, recursive=False)
                keep = []
                for d in dns:
                    p = os.path.join(dp, d)
                    st = os.lstat(p)
                    if stat.S_ISDIR(st.st_mode) and st.st_dev != dev:
                        tf.add(p, arcname=f"{arc_dir}/{d}" if arc_dir else d, recursive=False)  # mount point
                    elif stat.S_ISLNK(st.st_mode):
                        tf.add(p, arcname=f"{arc_dir}/{d}" if arc_dir else d, recursive=False)
                    else:
                        keep.append(d)
                dns[:] = keep
                for f in fns:
                    p = os.path.join(dp, f)
                    tf.add(p, arcname=f"{arc_dir}/{f}" if arc_dir else f, recursive=False)

    try:
        _in_child(s, c, work)
    finally:
        if out_fd >= 0:
            os.close(out_fd)
