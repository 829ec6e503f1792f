"""runc / crun behind the same command contract as ``pallet-runtime`` (runc's CLI).

    rt = External("runc", root="/run/pallet/runc")
    pid = rt.create("id", "/bundle", stdio=(0, 1, 2))   # runc --root R create --bundle B --pid-file P id
    rt.start("id"); rt.state("id"); rt.kill("id", 15); rt.delete("id", force=True)
    rt.run("id", "/bundle", detach=True); rt.exec("id", {"args": [...]}, detach=False)

The container's stdio is the runtime process's stdio (runc's pass-through mode), so ``stdio``
fds given here end up as the container's 0, 1, 2. ``console_socket`` follows runc's
``--console-socket`` contract (the pty master arrives there with SCM_RIGHTS). Failures of the
runtime binary raise :class:`pallet.errors.PalletError` subclasses with its last stderr line.
crun 1.8 refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported"): use runc there.
"""
from __future__ import annotations

import os

from pallet.errors import Conflict, NotFound, PalletError, Unavailable
from pallet.runtime import jsonlite

KNOWN = ("runc", "crun")


def find_binary(name: str) -> str:
    if "/" in name:
        if os.access(name, os.X_OK):
            return name
        raise Unavailable(f"OCI runtime {name} is not executable")
    for d in os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(":"):
        p = os.path.join(d or ".", name)
        if os.access(p, os.X_OK) and os.path.isfile(p):
            return p
    raise Unavailable(f"OCI runtime {name!r} is not installed")


class External:
    def __init__(self, name: str = "runc", root: str | None = None) -> None:
        self.name = os.path.basename(name)
        self.binary = find_binary(name)
        self.root = root or f"/run/pallet-{self.name}"

    def _run(self, *args: str, stdio: tuple[int, int, int] | None = None, capture: bool = True,
             timeout: float = 60.0) -> str:
        import subprocess

        argv = [self.binary, "--root", self.root, *args]
        kw: dict = {}
        if stdio is not None:
            kw.update(stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])
            capture = False
        try:
            p = subprocess.run(argv, capture_output=capture, timeout=timeout, **kw)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"{self.name} {args[0]} did not finish within {timeout:.0f} s") from None
        if p.returncode != 0:
            err = (p.stderr or b"").decode(errors="replace").strip().splitlines() if capture else []
            msg = err[-1] if err else f"exit status {p.returncode}"
            cls = NotFound if "does not exist" in msg or "not exist" in msg else \
                Conflict if "running" in msg or "stopped" in msg or "exists" in msg else PalletError
            raise cls(f"{self.name} {args[0]}: {msg}")
        return (p.stdout or b"").decode() if capture else ""

    def create(self, cid: str, bundle: str, *, pid_file: str | None = None, console_socket: str | None = None,
               stdio: tuple[int, int, int] | None = None) -> int:
        """``create``; returns the container's pid (from the pid file)."""
        pf = pid_file or os.path.join(bundle, f".{cid}.pid")
        args = ["create", "--bundle", bundle, "--pid-file", pf]
        if console_socket:
            args += ["--console-socket", console_socket]
        self._run(*args, cid, stdio=stdio)
        with open(pf) as f:
            pid = int(f.read().strip())
        if pid_file is None:
            os.unlink(pf)
        return pid

    def start(self, cid: str) -> None:
        self._run("start", cid)

    def run(self, cid: str, bundle: str, *, detach: bool = False, stdio: tuple[int, int, int] | None = None,
            timeout: float = 600.0) -> None:
        self._run("run", "--bundle", bundle, *(["--detach"] if detach else []), cid, stdio=stdio,
                  timeout=timeout)

    def state(self, cid: str) -> dict:
        return jsonlite.loads(self._run("state", cid), f"{self.name} state")  # type: ignore[no-any-return]

    def kill(self, cid: str, sig: int = 15, all_processes: bool = False) -> None:
        self._run("kill", *(["--all"] if all_processes else []), cid, str(sig))

    def delete(self, cid: str, force: bool = False) -> None:
        self._run("delete", *(["--force"] if force else []), cid)

    def pause(self, cid: str) -> None:
        self._run("pause", cid)

    def resume(self, cid: str) -> None:
        self._run("resume", cid)

    def exec(self, cid: str, process: dict, *, detach: bool = False, pid_file: str | None = None,
             stdio: tuple[int, int, int] | None = None, timeout: float = 600.0) -> None:
        """``exec --process FILE``; in the foreground it returns when the process exits and raises
        on a non-zero status (use ``stdio`` and pid files for finer control)."""
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            f.write(jsonlite.dumps(process))
            f.flush()
            args = ["exec", "--process", f.name]
            if detach:
                args.append("--detach")
            if pid_file:
                args += ["--pid-file", pid_file]
            self._run(*args, cid, stdio=stdio, timeout=timeout)
