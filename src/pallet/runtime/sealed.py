"""Programs a container's processes are exec'd through, as sealed in-memory copies.

A process that execs inside a container must not be a host file: a command whose interpreter is
/proc/self/exe (a script's "#!" line, an ELF's PT_INTERP) makes the kernel run the exec'ing
process's own binary inside the container, where a process of the container can open it through
/proc and, once nothing runs it, overwrite it: runc's CVE-2019-5736, which runc fixed by running
from a sealed memfd. The built-in runtime's init is a fork of a host Python process, so its last
step execs ``native/pallet-exec`` (which execs the command) from such a copy (``exec_stub``);
prepared and kept processes run ``pallet-init``/``pallet-entered`` from one (``sealed``).
"""
from __future__ import annotations

import os

_SEALED: dict[str, tuple[tuple[int, int, int], int]] = {}


def sealed(path: str) -> int:
    """A sealed in-memory copy of the program at ``path`` (kept by this process while the file is
    unchanged): nothing can write it, and its /proc/PID/exe names no host file. Close-on-exec
    (execveat with AT_EMPTY_PATH runs an ELF from such a descriptor). The caller must not close it."""
    import fcntl

    st = os.stat(path)
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _SEALED.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    fd = os.memfd_create(os.path.basename(path), os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        with open(path, "rb") as f:
            data = f.read()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_WRITE)
    except BaseException:
        os.close(fd)
        raise
    if hit is not None:
        os.close(hit[1])
    _SEALED[path] = (key, fd)
    return fd


def native(name: str, env: str) -> str | None:
    """The path of ``native/NAME`` (scripts/setup.sh builds it next to the venv's python; the
    variable ``env`` names another, ``0`` none), or None when it is not there."""
    import sys

    path = os.environ.get(env) or os.path.join(os.path.dirname(sys.executable), name)
    return path if path != "0" and os.access(path, os.X_OK) else None


def exec_stub() -> int:
    """The sealed copy of ``native/pallet-exec`` (``PALLET_EXEC_BIN``), or -1 when there is none:
    the init then execs the command itself, and a command run through /proc/self/exe would reach
    the host's python."""
    path = native("pallet-exec", "PALLET_EXEC_BIN")
    if path is None:
        return -1
    try:
        return sealed(path)
    except OSError:
        return -1
