"""The monitor's idle mode (pallet.engine.idle): after PALLET_MONITOR_IDLE seconds with nothing
to do, the monitor of detached containers becomes the small native ``pallet-idle`` (same pid,
same children) and comes back to Python on a request, a container's output or exit, or SIGTERM.
Checked as a user would: the monitor's memory, logs, exec, stop, restart policies, ``--rm``,
published ports kept, nothing left behind."""
from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest
from engine_helpers import bb_fixture, monitor_pid, wait_until  # noqa: F401  (registers the 'bb' fixture)

pytestmark = pytest.mark.privileged

IDLE_BIN = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", ".venv", "bin", "pallet-idle")


def _exe(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


def _idle(pid: int) -> bool:
    return _exe(pid) == "pallet-idle"


def _pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("Pss:"))


@pytest.fixture
def idle_bb(bb):  # type: ignore[no-untyped-def]
    if not os.access(IDLE_BIN, os.X_OK):
        pytest.fail(f"{IDLE_BIN} is not built (scripts/setup.sh builds it)")
    bb.env["PALLET_MONITOR_IDLE"] = "0.3"
    bb.env["PALLET_CGROUP_KEEPWARM"] = "0"  # else each request keeps the monitor busy for 2 s
    return bb


def test_idle_monitor_is_small_keeps_logs_and_wakes_for_exec(idle_bb) -> None:  # type: ignore[no-untyped-def]
    bb = idle_bb
    t0 = time.monotonic()
    bb("run", "-d", "--name", "c1", "--network", "none", "busybox", "sh", "-c",
       "echo one; sleep 3; printf part; sleep 3; echo two; exec sleep 60")
    pid = monitor_pid(bb.runroot)
    assert pid and wait_until(lambda: _idle(pid), 10), _exe(pid)
    assert _pss_kb(pid) < 2048, f"idle monitor PSS {_pss_kb(pid)} kB"
    assert (bb.runroot / "monitor.idle").exists()
    # "part" (no newline) arrives at ~3 s: the monitor wakes, logs nothing yet, idles again with
    # the unfinished line in its saved state; "two" at ~6 s ends it
    time.sleep(max(0.0, t0 + 3.6 - time.monotonic()))
    assert wait_until(lambda: _idle(pid), 2.0), "not idle between the two halves of the line"
    assert wait_until(lambda: "parttwo" in bb("logs", "c1").out, 10)
    log = json.loads(bb("inspect", "c1").out)[0]["LogPath"]
    assert [json.loads(ln)["log"] for ln in open(log)] == ["one\n", "parttwo\n"]  # one entry, as docker
    assert wait_until(lambda: _idle(pid), 5)
    # a request while idle: done in-process, and it wakes the monitor for the next one
    assert bb("exec", "c1", "echo", "hi").out == "hi\n"
    assert wait_until(lambda: _exe(pid).startswith("python"), 5), _exe(pid)
    assert wait_until(lambda: not (bb.runroot / "monitor.idle").exists(), 5)  # read back on waking
    r = bb("exec", "c1", "sh", "-c", "echo served; exit 5", check=False)
    assert (r.rc, r.out) == (5, "served\n")
    assert monitor_pid(bb.runroot) == pid
    # stop while idle: the exit wakes it, which records it
    assert wait_until(lambda: _idle(pid), 5)
    bb("stop", "-t", "1", "c1")
    assert bb("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "c1").out.split() == ["exited", "137"]
    bb("rm", "c1")
    assert wait_until(lambda: monitor_pid(bb.runroot) == 0, 10)  # nothing to watch: it lingers, then exits


def test_exits_while_idle_restart_and_rm(idle_bb) -> None:  # type: ignore[no-untyped-def]
    bb = idle_bb
    bb("run", "-d", "--name", "keep", "--network", "none", "busybox", "sleep", "60")
    pid = monitor_pid(bb.runroot)
    assert wait_until(lambda: _idle(pid), 10)
    bb("run", "-d", "--name", "r1", "--restart", "on-failure:2", "--network", "none", "busybox",
       "sh", "-c", "sleep 1; exit 4")
    bb("run", "-d", "--rm", "--name", "r2", "--network", "none", "busybox", "sh", "-c", "sleep 1.5")
    seen_idle = wait_until(lambda: _idle(pid), 5)  # before the first exit
    assert seen_idle
    assert wait_until(lambda: bb("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "r1", check=False).out.split()
                      == ["exited", "2"], 30)
    assert bb("inspect", "-f", "{{.State.ExitCode}}", "r1").out.strip() == "4"
    assert wait_until(lambda: "r2" not in bb("ps", "-a", "--format", "{{.Names}}").out.split(), 10)
    assert monitor_pid(bb.runroot) == pid
    bb("rm", "-f", "keep", "r1")


def test_sigterm_reaches_an_idle_monitor(idle_bb) -> None:  # type: ignore[no-untyped-def]
    bb = idle_bb
    bb("run", "-d", "--name", "t1", "--network", "none", "busybox", "sleep", "60")
    pid = monitor_pid(bb.runroot)
    assert wait_until(lambda: _idle(pid), 10)
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}") or _exe(pid) == "", 10), _exe(pid)
    assert not (bb.runroot / "monitor.pid").exists()
    # the next command finds the container's waiter gone and still manages it
    bb("rm", "-f", "t1")


@pytest.mark.timeout(120)
def test_published_port_kept_while_idle(idle_bb) -> None:  # type: ignore[no-untyped-def]
    bb = idle_bb
    bb("run", "-d", "--name", "web", "-p", "127.0.0.1::8080", "busybox", "sleep", "60")
    port = int(bb("port", "web", "8080").out.split()[0].rsplit(":", 1)[1])
    pid = monitor_pid(bb.runroot)

    def taken() -> bool:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return False
        except OSError:
            return True
        finally:
            s.close()

    assert wait_until(lambda: _idle(pid), 10)
    assert taken()  # the reservation crossed into the idle program
    bb("exec", "web", "true")
    assert wait_until(lambda: _exe(pid).startswith("python"), 5)
    assert wait_until(lambda: _idle(pid), 10)  # and back, after a wake-up
    assert taken()
    bb("rm", "-f", "web")
    assert wait_until(lambda: not taken(), 10)  # freed with the container


def test_without_the_idle_program_the_monitor_stays_python(idle_bb) -> None:  # type: ignore[no-untyped-def]
    bb = idle_bb
    bb.env["PALLET_IDLE_BIN"] = "/nonexistent/pallet-idle"
    bb("run", "-d", "--name", "p1", "--network", "none", "busybox", "sleep", "60")
    pid = monitor_pid(bb.runroot)
    time.sleep(1.0)
    assert _exe(pid).startswith("python")
    assert bb("exec", "p1", "echo", "ok").out == "ok\n"
    bb("rm", "-f", "p1")
