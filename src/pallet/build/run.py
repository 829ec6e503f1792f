"""RUN steps: a real container through the runtime's library API (``pallet.runtime.container``).

The container gets Docker's default spec (namespaces, capabilities, seccomp, the default
mounts), the overlay of the parent's layers with a fresh upper dir (mounted inside its own
mount namespace, so it cannot leak), no network unless ``host``, stdin /dev/null, and stdout +
stderr on one pipe streamed to the build output as it comes. The container is always deleted.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import uuid
from typing import TextIO

from pallet.errors import InvalidArgument, NotFound

SHEBANG = "#!"


def read_layer_file(lowerdirs: list[str], path: str) -> str | None:
    """A file as the overlay would show it (top layer first; whiteouts hide), no symlinks."""
    rel = path.lstrip("/")
    for d in lowerdirs:
        p = os.path.join(d, rel)
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):  # a whiteout, a symlink, anything else: hidden or refused
            return None
        with open(p, encoding="utf-8", errors="replace") as f:
            return f.read()
    return None


def resolve_user(lowerdirs: list[str], user: str) -> tuple[int, int, list[int]]:
    """``user[:group]`` (names or numbers) -> uid, gid, supplementary gids, as docker does."""
    if not user:
        return 0, 0, []
    name, _, group = user.partition(":")
    passwd = read_layer_file(lowerdirs, "/etc/passwd") or ""
    groups = read_layer_file(lowerdirs, "/etc/group") or ""
    uid = gid = None
    uname = None
    if name.isdigit():
        uid = int(name)
    for line in passwd.splitlines():
        f = line.split(":")
        if len(f) < 4:
            continue
        if (uid is None and f[0] == name) or (uid is not None and f[2] == str(uid)):
            uid, gid, uname = int(f[2]), int(f[3]), f[0]
            break
    if uid is None:
        raise NotFound(f"unable to find user {name}: no matching entries in passwd file")
    if gid is None:
        gid = 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for line in groups.splitlines():
                f = line.split(":")
                if len(f) >= 3 and f[0] == group:
                    gid = int(f[2])
                    break
            else:
                raise NotFound(f"unable to find group {group}: no matching entries in group file")
    extra: list[int] = []
    if uname:
        for line in groups.splitlines():
            f = line.split(":")
            if len(f) >= 4 and uname in f[3].split(",") and f[2].isdigit() and int(f[2]) != gid:
                extra.append(int(f[2]))
    return uid, gid, extra


def run_container(*, lowerdirs: list[str], upperdir: str, workdir: str, args: list[str],
                  env: list[str], cwd: str, user: str, network: str, runroot: str, scratch: str,
                  out: TextIO | None, script: str | None = None) -> tuple[int, str]:
    """Run ``args``; returns (exit code, short container id). ``scratch`` is an empty temp dir
    of the caller (bundle, empty lowerdir). ``script``: a here-doc run as a file."""
    from pallet.runtime import container as rt
    from pallet.runtime.linux.mounts import RootfsOverlay
    from pallet.runtime.spec import default_spec

    if network not in ("none", "host", "default"):
        raise InvalidArgument(f"network mode {network!r} is not supported by build (use none or host)")
    uid, gid, extra = resolve_user(lowerdirs, user)
    cid = "build-" + uuid.uuid4().hex[:12]
    bundle = os.path.join(scratch, "bundle")
    os.makedirs(os.path.join(bundle, "rootfs"), exist_ok=True)
    lowers = list(lowerdirs)
    if not lowers:
        empty = os.path.join(scratch, "empty")
        os.makedirs(empty, exist_ok=True)
        lowers = [empty]
    binds = []
    if network == "host":  # DNS and hosts of the host, as docker build --network host has them
        binds += [(f, f, True) for f in ("/etc/resolv.conf", "/etc/hosts") if os.path.isfile(f)]
    if script is not None:
        sdir = os.path.join(scratch, "pipes")
        os.makedirs(sdir, exist_ok=True)
        sp = os.path.join(sdir, "script")
        with open(sp, "w") as f:
            f.write(script)
        os.chmod(sp, 0o755)
        binds.append((sdir, "/dev/pipes", True))
        args = ["/dev/pipes/script"]
    spec = default_spec(args, "rootfs", env=env, cwd=cwd or "/", uid=uid, gid=gid,
                        additional_gids=extra or None, network="host" if network == "host" else "none",
                        binds=binds or None, hostname=cid[6:])
    rt_root = os.path.join(runroot, "build-runtime")
    os.makedirs(rt_root, exist_ok=True)
    r, w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    c = None
    try:
        try:
            c = rt.create(cid, bundle, spec=spec, root=rt_root, stdio=(devnull, w, w),
                          rootfs_overlay=RootfsOverlay(lowers, upperdir, workdir), start=True)
        finally:
            os.close(w)
            os.close(devnull)
        with os.fdopen(r, "rb", buffering=0) as pipe:
            r = -1
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                if out is not None:
                    out.write(chunk.decode("utf-8", "replace"))
                    out.flush()
        code, _oom = c.wait()
        return code, cid[6:]
    finally:
        if r >= 0:
            os.close(r)
        if c is not None:
            try:
                c.delete(force=True)
            except Exception:  # noqa: BLE001 - best effort; the state dir goes below
                pass
        shutil.rmtree(os.path.join(rt_root, cid), ignore_errors=True)
        shutil.rmtree(bundle, ignore_errors=True)


def heredoc_command(shell: list[str], line: str, heredocs: list[tuple[str, str, bool]]
                    ) -> tuple[list[str], str | None]:
    """buildkit's RUN here-document rules: ``RUN <<EOF`` alone runs the body (as a script file
    when it starts with ``#!``, else with the shell); otherwise the body is appended to the
    command line for the shell to read."""
    from pallet.build.parser import _HEREDOC

    words = line.split()
    if len(heredocs) == 1 and len(words) == 1 and _HEREDOC.match(words[0]):
        body = heredocs[0][1]
        if body.startswith(SHEBANG):
            return [], body
        return shell + [body], None
    text = line
    for name, body, _chomp in heredocs:
        text += "\n" + body + name
    return shell + [text], None


def new_scratch(tmp_root: str) -> str:
    return tempfile.mkdtemp(prefix="build-", dir=tmp_root)
