"""Every ctypes call of the runtime, in one place (x86_64 Linux).

Python 3.11 has no ``os.unshare``/``os.setns``/``mount``; this module wraps libc and raw
syscalls and turns failures into :class:`pallet.errors.OSFailure` (errno, syscall, object).

``clone()`` is a fork-like raw ``clone(2)`` (no new stack): the child continues from the call
with namespace flags already applied, which makes it pid 1 of a new pid namespace and a direct
child of the caller. It is called through ``ctypes.PyDLL`` so the GIL stays held across the
call (the child resumes owning it). Call it only from a single-threaded point; the child must
not rely on fork handlers (``os.register_at_fork``) and should end in ``execve``/``_exit``.
"""
from __future__ import annotations

import ctypes
import os

from pallet.errors import OSFailure

_libc = ctypes.CDLL(None, use_errno=True)
_pylibc = ctypes.PyDLL(None, use_errno=True)

_c_long = ctypes.c_long
_syscall = _libc.syscall
_syscall.restype = _c_long
_pysyscall = _pylibc.syscall
_pysyscall.restype = _c_long

# x86_64 syscall numbers
SYS_CLONE = 56
SYS_CAPGET = 125
SYS_CAPSET = 126
SYS_PIVOT_ROOT = 155
SYS_UNSHARE = 272
SYS_SETNS = 308
SYS_SECCOMP = 317
SYS_CLOSE_RANGE = 436
CLOSE_RANGE_CLOEXEC = 1 << 2

CLONE_PARENT = 0x00008000
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
SIGCHLD = 17

# OCI namespace type -> (clone flag, /proc/PID/ns name)
NAMESPACES: dict[str, tuple[int, str]] = {
    "user": (CLONE_NEWUSER, "user"),
    "pid": (CLONE_NEWPID, "pid"),
    "mount": (CLONE_NEWNS, "mnt"),
    "uts": (CLONE_NEWUTS, "uts"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "network": (CLONE_NEWNET, "net"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_SET_MODE_FILTER = 1

TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _fail(syscall: str, obj: str = "") -> OSFailure:
    return OSFailure(ctypes.get_errno(), syscall, obj)


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    if _mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        what = fstype or ("bind" if flags & MS_BIND else "remount" if flags & MS_REMOUNT else "propagation")
        src = f" {source}" if source and flags & MS_BIND else ""
        raise _fail("mount", f"{what}{src} on {target}")


def umount2(target: str, flags: int = 0) -> None:
    if _libc.umount2(_b(target), ctypes.c_int(flags)) != 0:
        raise _fail("umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    if _syscall(_c_long(SYS_PIVOT_ROOT), _b(new_root), _b(put_old)) != 0:
        raise _fail("pivot_root", new_root)


def unshare(flags: int) -> None:
    if _syscall(_c_long(SYS_UNSHARE), _c_long(flags)) != 0:
        raise _fail("unshare", hex(flags))


def setns(fd: int, nstype: int = 0, what: str = "") -> None:
    if _syscall(_c_long(SYS_SETNS), _c_long(fd), _c_long(nstype)) != 0:
        raise _fail("setns", what)


def clone(flags: int) -> int:
    """Fork-like clone(2) with ``flags`` (namespaces, CLONE_PARENT); returns 0 in the child."""
    pid = _pysyscall(_c_long(SYS_CLONE), _c_long(flags | SIGCHLD), _c_long(0), _c_long(0),
                     _c_long(0), _c_long(0))
    if pid < 0:
        raise _fail("clone", hex(flags))
    return int(pid)


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0, what: str = "") -> int:
    r = _libc.prctl(ctypes.c_int(option), _c_long(a2), _c_long(a3), _c_long(a4), _c_long(a5))
    if r < 0:
        raise _fail("prctl", what or str(option))
    return int(r)


def sethostname(name: str) -> None:
    b = name.encode()
    if _libc.sethostname(b, ctypes.c_size_t(len(b))) != 0:
        raise _fail("sethostname", name)


def setdomainname(name: str) -> None:
    b = name.encode()
    if _libc.setdomainname(b, ctypes.c_size_t(len(b))) != 0:
        raise _fail("setdomainname", name)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the three 64-bit capability masks of the calling thread (capset(2), version 3)."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        sh = 32 * i
        data[i].effective = (effective >> sh) & 0xFFFFFFFF
        data[i].permitted = (permitted >> sh) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> sh) & 0xFFFFFFFF
    if _syscall(_c_long(SYS_CAPSET), ctypes.byref(hdr), ctypes.byref(data)) != 0:
        raise _fail("capset")


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of the calling thread."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _syscall(_c_long(SYS_CAPGET), ctypes.byref(hdr), ctypes.byref(data)) != 0:
        raise _fail("capget")
    e = data[0].effective | (data[1].effective << 32)
    p = data[0].permitted | (data[1].permitted << 32)
    i = data[0].inheritable | (data[1].inheritable << 32)
    return e, p, i


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_load(bpf: bytes) -> None:
    """Install a classic-BPF seccomp filter (8-byte ``struct sock_filter`` records)."""
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if _syscall(_c_long(SYS_SECCOMP), _c_long(SECCOMP_SET_MODE_FILTER), _c_long(0), ctypes.byref(prog)) != 0:
        raise _fail("seccomp", "SECCOMP_SET_MODE_FILTER")


def ioctl_int(fd: int, request: int, value: int = 0) -> int:
    """ioctl with an int passed by value (TIOCSCTTY)."""
    r = _libc.ioctl(ctypes.c_int(fd), ctypes.c_ulong(request), _c_long(value))
    if r < 0:
        raise _fail("ioctl", hex(request))
    return int(r)


def ioctl_ptr(fd: int, request: int, value: int = 0) -> int:
    """ioctl with an int passed by pointer (TIOCGPTN, TIOCSPTLCK); returns the int after the call."""
    v = ctypes.c_int(value)
    if _libc.ioctl(ctypes.c_int(fd), ctypes.c_ulong(request), ctypes.byref(v)) < 0:
        raise _fail("ioctl", hex(request))
    return v.value


class _Winsize(ctypes.Structure):
    _fields_ = [("rows", ctypes.c_ushort), ("cols", ctypes.c_ushort), ("xpixel", ctypes.c_ushort),
                ("ypixel", ctypes.c_ushort)]


def set_winsize(fd: int, rows: int, cols: int) -> None:
    ws = _Winsize(rows, cols, 0, 0)
    if _libc.ioctl(ctypes.c_int(fd), ctypes.c_ulong(TIOCSWINSZ), ctypes.byref(ws)) < 0:
        raise _fail("ioctl", "TIOCSWINSZ")


def threads() -> int:
    """How many threads the calling process has (a raw clone is only safe with one)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def clone_via_helper(flags: int, pid_ns: int = -1) -> int:
    """clone() for a multi-threaded caller: a fork()ed (glibc-safe, single-threaded) helper
    clones with CLONE_PARENT, so the new process is still the caller's child; returns its pid
    in the caller and 0 in the new process. ``pid_ns``: an fd of a pid namespace to create it
    in; the helper (not the caller) enters it, so the helper itself stays in the caller's pid
    namespace and the pid it reports is the caller's view of the new process."""
    r, w = os.pipe()
    helper = os.fork()
    if helper == 0:
        code = 1
        try:
            os.close(r)
            if pid_ns >= 0:
                setns(pid_ns, CLONE_NEWPID, "pid (for the new process)")
            pid = clone(flags | CLONE_PARENT)
            if pid == 0:
                os.close(w)
                return 0
            os.write(w, str(pid).encode())
            code = 0
        except BaseException as e:  # noqa: B036 - report, never return into the caller
            try:
                os.write(w, f"E{getattr(e, 'errno', 0) or 0}".encode())
            except OSError:
                pass
        os._exit(code)
    os.close(w)
    try:
        data = b""
        while True:
            chunk = os.read(r, 64)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        os.waitpid(helper, 0)
    if not data or data.startswith(b"E"):
        raise OSFailure(int(data[1:] or 0) if data else 0, "clone", hex(flags))
    return int(data)


def cloexec_from(first: int) -> None:
    """Mark every fd >= ``first`` close-on-exec (close_range(2)): nothing of ours leaks into
    the container's program."""
    if _syscall(_c_long(SYS_CLOSE_RANGE), ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF),
                ctypes.c_uint(CLOSE_RANGE_CLOEXEC)) != 0:
        raise _fail("close_range", f"{first}..")
