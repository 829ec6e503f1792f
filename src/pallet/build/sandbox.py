"""Run a Python function over an overlay mount that exists only in a private mount namespace.

``in_overlay(lowerdirs, upperdir, fn)`` forks; the child unshares its mount namespace, makes
``/`` private, mounts ``overlay(lowerdirs, upperdir)`` on a temp dir (and optionally a second,
read-only overlay of another image for COPY --from), calls ``fn(merged, source)`` and exits.
The mounts vanish with the child, so nothing can leak on the host even if the build is killed;
the parent only removes the overlay work dir and the mount point. Errors raised by ``fn`` come
back as the same PalletError class with the same one-line message.
"""
from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import traceback
from collections.abc import Callable
from typing import Any

from pallet.errors import OSFailure, PalletError

Fn = Callable[[str, str | None], Any]


def _overlay_data(lowerdirs: list[str], upper: str | None, work: str | None, empty: str) -> str:
    lowers = list(lowerdirs) or [empty]
    if upper is None and len(lowers) < 2:  # a read-only overlay needs two lower dirs
        lowers.append(empty + "2" if lowers[0] == empty else empty)
    d = "lowerdir=" + ":".join(lowers)
    if upper is not None:
        d += f",upperdir={upper},workdir={work}"
    return d


def in_overlay(tmp_root: str, lowerdirs: list[str], upperdir: str, fn: Fn,
               source_lowerdirs: list[str] | None = None) -> Any:
    """Call ``fn(merged, source_root)`` in a child process and return its (picklable) result.
    ``tmp_root`` is a directory on the same filesystem as ``upperdir`` (for the work dir)."""
    from pallet.runtime.linux import syscalls as sc

    scratch = tempfile.mkdtemp(prefix="sandbox-", dir=tmp_root)
    try:
        for d in ("work", "merged", "src", "empty", "empty2"):
            os.mkdir(os.path.join(scratch, d), 0o700)
        merged = os.path.join(scratch, "merged")
        srcmnt = os.path.join(scratch, "src")
        empty = os.path.join(scratch, "empty")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never returns
            os.close(r)
            code = 0
            try:
                sc.unshare(sc.CLONE_NEWNS)
                sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
                sc.mount("overlay", merged, "overlay", 0,
                         _overlay_data(lowerdirs, upperdir, os.path.join(scratch, "work"), empty))
                src = None
                if source_lowerdirs is not None:
                    sc.mount("overlay", srcmnt, "overlay", sc.MS_RDONLY,
                             _overlay_data(source_lowerdirs, None, None, empty))
                    src = srcmnt
                result: Any = ("ok", fn(merged, src))
            except PalletError as e:
                result = ("err", type(e).__name__, str(e))
                code = 1
            except OSError as e:
                result = ("err", "OSFailure", str(OSFailure.from_oserror(e, "copy")))
                code = 1
            except BaseException as e:  # noqa: BLE001 - report anything, one line
                result = ("err", "PalletError", f"{type(e).__name__}: {e}")
                traceback.print_exc()
                code = 1
            try:
                data = pickle.dumps(result)
                with os.fdopen(w, "wb") as f:
                    f.write(data)
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            raise PalletError(f"build sandbox died (status {status})")
        res = pickle.loads(data)
        if res[0] == "ok":
            return res[1]
        import pallet.errors as errors

        cls = getattr(errors, res[1], PalletError)
        if cls is OSFailure:
            raise PalletError(res[2])
        raise cls(res[2])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
