"""The container's filesystem view, built inside its new mount namespace (runs in the child).

Order (runtime-spec config.md "root", "mounts", config-linux.md "rootfsPropagation",
"maskedPaths", "readonlyPaths", "devices"; runc/crun do the same):

1. ``/`` made private recursively, so nothing we mount propagates back to the host;
2. the rootfs becomes a mount point: an overlay (``RootfsOverlay``, mounted here so it vanishes
   with the namespace and can never leak on the host) or a recursive bind of ``root.path``;
3. the spec's mounts, in order, at destinations resolved *inside* the rootfs (symlinks cannot
   escape it: :func:`secure_join`);
4. /dev: the default devices, the /dev/fd, stdin, stdout, stderr, ptmx links, the console;
5. pivot_root, old root detached;
6. sysctls, masked paths, read-only paths, read-only root.
"""
from __future__ import annotations

import os
import stat

from pallet.errors import InvalidArgument, OSFailure
from pallet.runtime.linux import syscalls as sc

FLAGS: dict[str, tuple[bool, int]] = {  # option -> (clear?, flag)
    "ro": (False, sc.MS_RDONLY), "rw": (True, sc.MS_RDONLY),
    "nosuid": (False, sc.MS_NOSUID), "suid": (True, sc.MS_NOSUID),
    "nodev": (False, sc.MS_NODEV), "dev": (True, sc.MS_NODEV),
    "noexec": (False, sc.MS_NOEXEC), "exec": (True, sc.MS_NOEXEC),
    "sync": (False, sc.MS_SYNCHRONOUS), "async": (True, sc.MS_SYNCHRONOUS),
    "dirsync": (False, sc.MS_DIRSYNC), "remount": (False, sc.MS_REMOUNT),
    "mand": (False, sc.MS_MANDLOCK), "nomand": (True, sc.MS_MANDLOCK),
    "atime": (True, sc.MS_NOATIME), "noatime": (False, sc.MS_NOATIME),
    "diratime": (True, sc.MS_NODIRATIME), "nodiratime": (False, sc.MS_NODIRATIME),
    "relatime": (False, sc.MS_RELATIME), "norelatime": (True, sc.MS_RELATIME),
    "strictatime": (False, sc.MS_STRICTATIME), "nostrictatime": (True, sc.MS_STRICTATIME),
    "bind": (False, sc.MS_BIND), "rbind": (False, sc.MS_BIND | sc.MS_REC),
}
PROPAGATION: dict[str, int] = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# name, major, minor (runtime-spec config-linux.md "Default Devices"), mode 0666
DEFAULT_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                   ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore"))
_ST_FLAGS = ((os.ST_NOSUID, sc.MS_NOSUID), (os.ST_NODEV, sc.MS_NODEV), (os.ST_NOEXEC, sc.MS_NOEXEC),
             (os.ST_NOATIME, sc.MS_NOATIME), (os.ST_NODIRATIME, sc.MS_NODIRATIME),
             (os.ST_RELATIME, sc.MS_RELATIME))


class RootfsOverlay:
    """An overlayfs for the container root, mounted inside the container's mount namespace.

    ``lowerdirs`` top-most first (overlayfs order). The mount lives only in that namespace:
    when the container's last process exits it is gone, nothing to unmount on the host.
    """

    __slots__ = ("lowerdirs", "upperdir", "workdir")

    def __init__(self, lowerdirs: list[str], upperdir: str | None = None, workdir: str | None = None) -> None:
        self.lowerdirs = list(lowerdirs)
        self.upperdir = upperdir
        self.workdir = workdir

    def data(self) -> str:
        d = "lowerdir=" + ":".join(self.lowerdirs)
        if self.upperdir:
            d += f",upperdir={self.upperdir},workdir={self.workdir}"
        return d


def parse_options(options: list[str] | None) -> tuple[int, int, str]:
    """(mount flags, propagation flags, data string) of an OCI ``mounts[].options`` list."""
    flags = prop = 0
    data: list[str] = []
    for o in options or ():
        if o in FLAGS:
            clear, f = FLAGS[o]
            flags = flags & ~f if clear else flags | f
        elif o in PROPAGATION:
            prop |= PROPAGATION[o]
        else:
            data.append(o)
    return flags, prop, ",".join(data)


def secure_join(root: str, path: str) -> str:
    """``root/path`` with every symlink resolved as if ``root`` were ``/`` (no escape)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if done:
                done.pop()
            continue
        cur = root + "/" + "/".join([*done, p])
        try:
            st = os.lstat(cur)
        except OSError:
            done.append(p)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 64:
                raise InvalidArgument(f"too many symlinks resolving {path!r} in the rootfs")
            target = os.readlink(cur)
            if target.startswith("/"):
                done = []
            parts = [t for t in target.split("/") if t not in ("", ".")] + parts
        else:
            done.append(p)
    return root.rstrip("/") + "/" + "/".join(done)


def _ensure(path: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(path, exist_ok=True)
    elif not os.path.lexists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _kept_flags(path: str) -> int:
    f = os.statvfs(path).f_flag
    return sum(m for s, m in _ST_FLAGS if f & s)


def remount_ro(path: str, recursive: bool = False) -> None:
    """Read-only bind remount keeping nosuid/nodev/noexec (a user namespace locks them)."""
    sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _kept_flags(path)
             | (sc.MS_REC if recursive else 0))


def _mount_cgroup(dest: str, flags: int, cgroup_dirs: dict[str, str]) -> None:
    """``type: cgroup``: the container's own cgroup directories, bound from the host.

    A cgroup2 host gets its one directory on ``dest``; a v1 host a tmpfs with one bind per
    controller. Binding (rather than mounting each hierarchy anew under a cgroup namespace)
    does not need the cgroup namespace yet, so the parent can join the cgroups while we mount.
    """
    ro = flags & sc.MS_RDONLY
    if set(cgroup_dirs) == {"unified"}:
        sc.mount(cgroup_dirs["unified"], dest, None, sc.MS_BIND)
        if ro:
            remount_ro(dest)
        return
    sc.mount("tmpfs", dest, "tmpfs", flags & ~sc.MS_RDONLY, "mode=755")
    for name, src in cgroup_dirs.items():
        target = dest + "/" + name
        os.mkdir(target)
        sc.mount(src, target, None, sc.MS_BIND)
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | (flags & ~sc.MS_REC))
    if ro:
        sc.mount(None, dest, None, sc.MS_REMOUNT | flags, "mode=755")


def mount_one(rootfs: str, bundle: str, m: dict, cgroup_dirs: dict[str, str]) -> None:
    mtype = m.get("type") or ""
    source = m.get("source") or mtype
    flags, prop, data = parse_options(m.get("options"))
    dest = secure_join(rootfs, m["destination"])
    is_bind = bool(flags & sc.MS_BIND) or mtype == "bind"
    if is_bind:
        if not source.startswith("/"):
            source = os.path.join(bundle, source)
        if not os.path.exists(source):
            raise InvalidArgument(f"bind mount source {source} does not exist")
        _ensure(dest, os.path.isdir(source))
        sc.mount(source, dest, None, sc.MS_BIND | (flags & sc.MS_REC))
        if flags & ~(sc.MS_BIND | sc.MS_REC):
            sc.mount(None, dest, None, sc.MS_BIND | sc.MS_REMOUNT | (flags & ~sc.MS_REC) | _kept_flags(dest))
    else:
        _ensure(dest, True)
        if mtype == "cgroup":
            _mount_cgroup(dest, flags, cgroup_dirs)
        else:
            try:
                sc.mount(source, dest, mtype, flags, data or None)
            except OSFailure as e:
                if mtype not in ("sysfs", "mqueue") or e.errno != 1:
                    raise
                # EPERM in a user namespace without its own netns / ipc: bind the host's instead
                sc.mount("/" + m["destination"].strip("/"), dest, None, sc.MS_BIND | sc.MS_REC)
                if flags & sc.MS_RDONLY:
                    remount_ro(dest, True)
    if prop:
        sc.mount(None, dest, None, prop)


def make_devices(rootfs: str, devices: list[dict], in_userns: bool) -> None:
    dev = rootfs + "/dev"
    todo: list[dict] = [{"path": "/dev/" + n, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666}
            for n, ma, mi in DEFAULT_DEVICES]
    todo += devices
    for d in todo:
        path = secure_join(rootfs, d["path"])
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[d.get("type", "c")]
        mode = d.get("fileMode", 0o666) & 0o7777
        if os.path.lexists(path):
            os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            if in_userns:
                raise PermissionError
            os.mknod(path, mode | kind, os.makedev(d.get("major", 0), d.get("minor", 0)))
            os.chmod(path, mode)
            if "uid" in d or "gid" in d:
                os.chown(path, d.get("uid", 0), d.get("gid", 0))
        except PermissionError:  # a user namespace cannot mknod: bind the host's node
            _ensure(path, False)
            sc.mount(d["path"], path, None, sc.MS_BIND)
    for name, target in DEV_LINKS:
        p = dev + "/" + name
        if name == "core" and not os.path.exists("/proc/kcore"):
            continue  # as runc: only where the kernel has one
        if not os.path.lexists(p):
            os.symlink(target, p)
    if os.path.exists(dev + "/pts/ptmx"):
        p = dev + "/ptmx"
        if os.path.lexists(p):
            os.unlink(p)
        os.symlink("pts/ptmx", p)


def open_console(rootfs: str) -> tuple[int, int]:
    """A pty from the container's own devpts; its slave is bound on /dev/console.
    Returns (master, slave), both close-on-exec."""
    ptmx = rootfs + "/dev/pts/ptmx" if os.path.exists(rootfs + "/dev/pts/ptmx") else "/dev/ptmx"
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    sc.ioctl_ptr(master, sc.TIOCSPTLCK, 0)
    n = sc.ioctl_ptr(master, sc.TIOCGPTN)
    pts = os.path.dirname(ptmx) + f"/{n}" if ptmx != "/dev/ptmx" else f"/dev/pts/{n}"
    slave = os.open(pts, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    console = rootfs + "/dev/console"
    _ensure(console, False)
    sc.mount(pts, console, None, sc.MS_BIND)
    return master, slave


def pivot(rootfs: str) -> None:
    os.chdir(rootfs)
    sc.pivot_root(".", ".")
    sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)  # our umount must not reach the host
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def finish(linux: dict, readonly_root: bool) -> None:
    """After pivot_root: sysctls, masked and read-only paths, read-only root."""
    for key, value in (linux.get("sysctl") or {}).items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(str(value))
    for p in linux.get("readonlyPaths") or ():  # read-only first, then masked: runc's order
        if not os.path.exists(p):
            continue
        sc.mount(p, p, None, sc.MS_BIND | sc.MS_REC)
        remount_ro(p, True)
    for p in linux.get("maskedPaths") or ():
        try:
            st = os.stat(p)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            sc.mount("tmpfs", p, "tmpfs", sc.MS_RDONLY)
        else:
            sc.mount("/dev/null", p, None, sc.MS_BIND)
    if readonly_root:
        remount_ro("/")


def prepare(spec: dict, rootfs: str, bundle: str, overlay: RootfsOverlay | None, in_userns: bool,
            cgroup_dirs: dict[str, str]) -> None:
    """Steps 1-4 (before the console and pivot_root)."""
    linux = spec.get("linux") or {}
    prop = PROPAGATION.get(linux.get("rootfsPropagation") or "rprivate", sc.MS_PRIVATE | sc.MS_REC)
    sc.mount(None, "/", None, prop | sc.MS_REC)
    if overlay is not None:
        sc.mount("overlay", rootfs, "overlay", 0, overlay.data())
    else:
        sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
    for m in spec.get("mounts") or ():
        mount_one(rootfs, bundle, m, cgroup_dirs)
    make_devices(rootfs, linux.get("devices") or [], in_userns)
