"""OCI lifecycle hooks (runtime-spec config.md "POSIX-platform Hooks", runtime.md "Lifecycle").

Who runs what, and where:

* ``prestart`` (deprecated) and ``createRuntime``: the parent, in the runtime namespaces, once the
  container's namespaces and cgroups exist and before it calls ``pivot_root``;
* ``createContainer``: the container's init, in its namespaces, before ``pivot_root``;
* ``startContainer``: the container's init after ``start``, just before ``execve``;
* ``poststart``: whoever calls ``start`` (or ``create(start=True)``), after the exec;
* ``poststop``: ``delete``, after the container is gone.

Each hook gets the container's state JSON on stdin. A failing create/start hook fails the
operation; poststart/poststop failures are reported on stderr and ignored, as the spec says.
Only os-level calls: this runs in the container's init after ``pivot_root`` too.
"""
from __future__ import annotations

import os
import time

from pallet.errors import PalletError

FATAL = ("prestart", "createRuntime", "createContainer", "startContainer")


def run(hook: dict, state_json: bytes, kind: str) -> None:
    """Run one hook to completion (bounded by its ``timeout``, default 30 s)."""
    path = hook.get("path") or ""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            os.dup2(r, 0)
            env = {}
            for e in hook.get("env") or ():
                k, _, v = e.partition("=")
                env[k] = v
            os.execve(path, hook.get("args") or [path], env)
        except BaseException:  # noqa: B036 - never return into the caller's code
            os._exit(127)
    os.close(r)
    try:
        os.write(w, state_json)
    except OSError:
        pass
    os.close(w)
    deadline = time.monotonic() + float(hook.get("timeout") or 30)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise PalletError(f"{kind} hook {path} timed out")
        time.sleep(0.002)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise PalletError(f"{kind} hook {path} failed with status {code}")


def run_all(hooks: dict | None, kind: str, state_json: bytes) -> None:
    for h in (hooks or {}).get(kind) or ():
        if kind in FATAL:
            run(h, state_json, kind)
        else:
            try:
                run(h, state_json, kind)
            except PalletError as e:
                os.write(2, f"pallet-runtime: warning: {e}\n".encode())
