"""A container command run through /proc/self/exe (runc's CVE-2019-5736) must never reach a host
binary: whatever execs the command inside the container is a sealed in-memory copy
(pallet.runtime.sealed: native/pallet-exec for the Python init's last step, pallet-init for a
prepared container, pallet-entered/pallet-init for a kept exec process).

The command is a script ``#!/proc/self/exe``. With the host's loader and the Python's libraries
bind-mounted, a host python reached that way would start and say so; the control run without the
sealed stub (``PALLET_EXEC_BIN=0``) shows that it would."""
from __future__ import annotations

import os
import sys

import pytest
from engine_helpers import bb_fixture, monitor_pid, wait_until  # noqa: F401  (registers the 'bb' fixture)

pytestmark = pytest.mark.privileged

SCRIPT = "#!/proc/self/exe\nimport sys\nprint('HOST PYTHON RAN', sys.version)\n"


def _binds(tmp: str) -> list[str]:
    x = os.path.join(tmp, "x")
    with open(x, "w") as f:
        f.write(SCRIPT)
    os.chmod(x, 0o755)
    out = ["-v", f"{x}:/x:ro"]
    for d in ("/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", os.path.join(sys.base_prefix, "lib")):
        if os.path.isdir(d):
            out += ["-v", f"{os.path.realpath(d)}:{d}:ro"]
    return out


def _ran_host_binary(r) -> bool:  # type: ignore[no-untyped-def]
    return "HOST PYTHON RAN" in r.out or "python" in (r.out + r.err).lower()


def test_run_and_exec_never_exec_through_a_host_binary(bb, tmp_path) -> None:  # type: ignore[no-untyped-def]
    v = _binds(str(tmp_path))
    # the control: the Python init's own execve (no stub) lets the host python run in the container
    bb.env["PALLET_SERVED"] = "0"
    bb.env["PALLET_EXEC_BIN"] = "0"
    r = bb("run", "--rm", "--network", "none", *v, "busybox", "/x", check=False)
    assert "HOST PYTHON RAN" in r.out, (r.rc, r.out, r.err)
    del bb.env["PALLET_EXEC_BIN"]
    # in-process run and exec
    r = bb("run", "--rm", "--network", "none", *v, "busybox", "/x", check=False)
    assert not _ran_host_binary(r) and r.rc != 0, (r.rc, r.out, r.err)
    bb("run", "-d", "--name", "tgt", "--network", "none", *v, "busybox", "sleep", "60")
    r = bb("exec", "tgt", "/x", check=False)
    assert not _ran_host_binary(r) and r.rc != 0, (r.rc, r.out, r.err)
    # served by the monitor: runs (with binds: not prepared), exec (direct, then a kept process)
    del bb.env["PALLET_SERVED"]
    bb.env["PALLET_MONITOR_IDLE"] = "0"
    bb("run", "-d", "--name", "keeper", "--network", "none", "busybox", "sleep", "60")
    for _ in range(2):
        r = bb("run", "--rm", "--network", "none", *v, "busybox", "/x", check=False)
        assert not _ran_host_binary(r) and r.rc != 0, (r.rc, r.out, r.err)
    for _ in range(3):
        r = bb("exec", "tgt", "/x", check=False)
        assert not _ran_host_binary(r) and r.rc != 0, (r.rc, r.out, r.err)
    bb("rm", "-f", "tgt", "keeper")
    # a monitor whose kept exec process is a Python fork, its children doing the last steps in Python
    assert wait_until(lambda: monitor_pid(bb.runroot) == 0, 10)
    bb.env.update(PALLET_ENTERED_BIN="0", PALLET_INIT_BIN="0")
    bb("run", "-d", "--name", "tgt", "--network", "none", *v, "busybox", "sleep", "60")
    for _ in range(3):
        r = bb("exec", "tgt", "/x", check=False)
        assert not _ran_host_binary(r) and r.rc != 0, (r.rc, r.out, r.err)
    bb("rm", "-f", "tgt")


def test_prepared_container_waits_in_a_sealed_copy(bb) -> None:  # type: ignore[no-untyped-def]
    bb.env["PALLET_MONITOR_IDLE"] = "0"
    bb("run", "-d", "--name", "keeper", "--network", "none", "busybox", "sleep", "60")
    keeper = int(bb("inspect", "-f", "{{.State.Pid}}", "keeper").out)
    for _ in range(2):
        bb("run", "--rm", "--network", "none", "busybox", "true")
    mon = monitor_pid(bb.runroot)

    def prepared() -> list[str]:
        out = []
        for tid in os.listdir(f"/proc/{mon}/task"):
            with open(f"/proc/{mon}/task/{tid}/children") as f:
                for pid in f.read().split():
                    if int(pid) != keeper:
                        try:
                            out.append(os.readlink(f"/proc/{pid}/exe"))
                        except OSError:
                            pass
        return out

    assert wait_until(lambda: any(e.startswith("/memfd:") for e in prepared()), 10), prepared()
    assert all(e.startswith("/memfd:") for e in prepared()), prepared()  # none is a host file
    bb("rm", "-f", "keeper")
