"""Foreground ``run`` and ``exec`` behave the same whether the runroot's monitor serves them
(pallet.engine.served: a monitor listens because a detached container runs) or the CLI does
the work in-process (no monitor, or ``PALLET_SERVED=0``). Each test runs in both modes and
checks what a user sees: streams, exit codes, stdin, environment, signals, logs, and that a
``--rm`` container is gone when the command returns."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from engine_helpers import bb_fixture, monitor_pid, wait_until  # noqa: F401  (registers the 'bb' fixture)

pytestmark = pytest.mark.privileged


@pytest.fixture(params=["served", "in-process"])
def mode(request, bb):  # type: ignore[no-untyped-def]
    if request.param == "served":
        bb.env["PALLET_MONITOR_IDLE"] = "0"  # served throughout, however slow the machine (test_engine_idle)
        bb("run", "-d", "--name", "keeper", "--network", "none", "busybox", "sleep", "120")
        assert monitor_pid(bb.runroot) > 0
    else:
        bb.env["PALLET_SERVED"] = "0"
    yield request.param
    bb("rm", "-f", "keeper", check=False)


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_run_streams_codes_stdin_env(bb, mode) -> None:  # type: ignore[no-untyped-def]
    r = bb("run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (r.rc, r.out, r.err) == (3, "out\n", "err\n")
    r = bb.fail("run", "--rm", "--network", "none", "busybox", "nosuchcmd")
    assert r.rc == 127 and "nosuchcmd" in r.err and len(r.err.strip().splitlines()) == 1
    assert bb.fail("run", "--rm", "--network", "none", "busybox", "/etc/passwd").rc == 126
    r = bb.fail("run", "--name", "nf", "--network", "none", "busybox", "nosuchcmd")  # kept, as docker
    assert r.rc == 127
    assert bb("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "nf").out.split() == ["created", "127"]
    bb("rm", "nf")
    assert bb("run", "--rm", "-i", "--network", "none", "busybox", "sh", "-c", "read x; echo got $x",
              input="hello\n").out == "got hello\n"
    big = os.urandom(300_000).hex()  # more than a pipe holds, both ways
    assert bb("run", "--rm", "-i", "--network", "none", "busybox", "cat", input=big).out == big
    bb.env["FROM_CLI"] = "cli value"
    envf = bb.root.parent / "env.list"
    envf.write_text("B=2\n")
    r = bb("run", "--rm", "--network", "none", "-e", "A=1", "-e", "FROM_CLI", "-e", "UNSET_HERE",
           "--env-file", str(envf), "-w", "/tmp", "-u", "nobody", "busybox",
           "sh", "-c", 'echo "$A|$B|$FROM_CLI|${UNSET_HERE-unset}|$(pwd)|$(id -u)"')
    assert r.out == "1|2|cli value|unset|/tmp|65534\n"
    r = bb.fail("run", "--rm", "--network", "none", "-e", "BAD NAME=1", "busybox", "true")
    assert r.rc == 125 and "BAD NAME" in r.err
    assert bb("ps", "-aq").out.split() == bb("ps", "-q").out.split()  # only the keeper, if any


def test_run_rm_leaves_nothing_and_logs_stay(bb, mode) -> None:  # type: ignore[no-untyped-def]
    before = {p.name for p in (bb.root / "containers").iterdir()}
    bb("run", "--rm", "--network", "none", "busybox", "true")
    after = {p.name for p in (bb.root / "containers").iterdir()}
    try:  # the next served run's container, which the monitor may be preparing by now (engine.prestart)
        after.discard((bb.runroot / "monitor.prestart").read_text().split()[2])
    except (OSError, IndexError):
        pass
    assert after == before  # gone when run returns
    r = bb("run", "--name", "kept", "--network", "none", "busybox", "sh", "-c", "echo one; echo two >&2")
    assert (r.out, r.err) == ("one\n", "two\n")
    logs = bb("logs", "kept")
    assert (logs.out, logs.err) == ("one\n", "two\n")
    log = json.loads(bb("inspect", "kept").out)[0]["LogPath"]
    streams = [json.loads(line)["stream"] for line in open(log)]
    assert sorted(streams) == ["stderr", "stdout"]
    assert bb("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "kept").out.split() == ["exited", "0"]
    bb("rm", "kept")
    # a relative bind-mount source is the CLI's working directory's
    (bb.root.parent / "here").mkdir()
    (bb.root.parent / "here" / "f").write_text("bound\n")
    p = subprocess.run(bb.argv("run", "--rm", "--network", "none", "-v", "./here:/x", "busybox", "cat", "/x/f"),
                       env=bb.env, cwd=bb.root.parent, capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout) == (0, "bound\n"), p.stderr


def test_run_signals_and_who_waits(bb, mode) -> None:  # type: ignore[no-untyped-def]
    for sig, code in ((signal.SIGTERM, 43), (signal.SIGINT, 44)):
        name = signal.Signals(sig).name[3:]
        p = subprocess.Popen(bb.argv("run", "--rm", "--network", "none", "--name", f"s{code}", "busybox", "sh", "-c",
                                     f"trap 'exit {code}' {name}; echo ready; while true; do sleep 0.05; done"),
                             env=bb.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        pid = int(bb("inspect", "-f", "{{.State.Pid}}", f"s{code}").out)
        # served: the monitor is the container's parent; in-process: the CLI is
        assert _parent(pid) == (monitor_pid(bb.runroot) if mode == "served" else p.pid)
        p.send_signal(sig)
        assert p.wait(timeout=20) == code
    assert bb("ps", "-aq").out.split() == bb("ps", "-q").out.split()  # only the keeper, if any


def test_exec_streams_codes_stdin_env(bb, mode) -> None:  # type: ignore[no-untyped-def]
    bb("run", "-d", "--name", "ex", "--network", "none", "busybox", "sleep", "120")
    r = bb("exec", "ex", "sh", "-c", "echo out; echo err >&2; exit 4", check=False)
    assert (r.rc, r.out, r.err) == (4, "out\n", "err\n")
    r = bb.fail("exec", "ex", "nosuchcmd")
    assert r.rc == 127 and "nosuchcmd" in r.err and len(r.err.strip().splitlines()) == 1
    assert bb("exec", "-i", "ex", "cat", input="piped\n").out == "piped\n"
    assert bb("exec", "ex", "cat", input="not read\n").out == ""  # stdin only with -i
    bb.env["FROM_CLI"] = "v"
    r = bb("exec", "-e", "A=1", "-e", "FROM_CLI", "-w", "/tmp", "-u", "nobody", "ex",
           "sh", "-c", 'echo "$A|$FROM_CLI|$(pwd)|$(id -u)"')
    assert r.out == "1|v|/tmp|65534\n"
    assert bb.fail("exec", "-w", "rel", "ex", "true").rc == 125
    assert bb("exec", "-d", "ex", "sh", "-c", "echo detached > /tmp/d").out == ""
    assert wait_until(lambda: bb("exec", "ex", "cat", "/tmp/d", check=False).out == "detached\n", 10)
    r = bb("exec", "ex", "sh", "-c", "kill -9 $$", check=False)
    assert r.rc == 137
    p = subprocess.Popen(bb.argv("exec", "ex", "sh", "-c", "trap 'exit 42' TERM; echo ready; while true; do sleep 0.05; done"),
                         env=bb.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 42
    bb("stop", "-t", "1", "ex")
    r = bb.fail("exec", "ex", "true")
    assert r.rc != 0 and "not running" in r.err and len(r.err.strip().splitlines()) == 1
    assert bb.fail("exec", "nosuch", "true").rc != 0
    bb("rm", "ex")


def test_exec_failures_leave_the_caller_alive(bb, mode) -> None:  # type: ignore[no-untyped-def]
    """A command that is not found fails in the exec'd process before the caller has placed it in the
    cgroups; the caller (monitor or CLI) runs the runtime with SIGPIPE at its default, so its "go on"
    to a process already gone must not kill it (it did: the monitor died, the container's exit was
    recorded as 255)."""
    bb("run", "-d", "--name", "ex", "--network", "none", "busybox", "sleep", "120")
    mon = monitor_pid(bb.runroot) if mode == "served" else 0
    for _ in range(6):
        r = bb.fail("exec", "ex", "nosuchcmd")
        assert r.rc == 127 and len(r.err.strip().splitlines()) == 1, r
        assert bb.fail("exec", "ex", "/etc").rc == 126
    if mode == "served":
        assert monitor_pid(bb.runroot) == mon
    assert bb("inspect", "-f", "{{.State.Status}}", "ex").out.strip() == "running"
    bb("rm", "-f", "ex")


def test_served_run_survives_its_client(bb, mode) -> None:  # type: ignore[no-untyped-def]
    """A foreground CLI killed: the container runs on (as with docker) and is cleaned up when it ends."""
    if mode != "served":
        pytest.skip("in-process, the CLI is the container's waiter")
    p = subprocess.Popen(bb.argv("run", "--rm", "--name", "orphan", "--network", "none", "busybox", "sh", "-c",
                                 "echo ready; sleep 1"), env=bb.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    p.kill()
    p.wait(timeout=10)
    assert wait_until(lambda: "orphan" not in bb("ps", "-a", "--format", "{{.Names}}").out, 15)


def test_spare_cgroup_kept_taken_and_swept(bb) -> None:  # type: ignore[no-untyped-def]
    """cgroup v1: the monitor keeps a spare container cgroup set, named with the id the next
    served run gets (recorded in <runroot>/monitor.spare); a served run takes it as it is, a
    detached start by rename; the monitor removes it when it exits, the next removal when the
    monitor was killed."""
    import glob

    from engine_helpers import CGROUP_PARENT

    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        pytest.skip("cgroup v2 host: no spare (one mkdir)")
    rec = bb.runroot / "monitor.spare"

    def spare() -> tuple[int, str]:
        try:
            pid, parent, cid = rec.read_text().split()
        except (OSError, ValueError):
            return 0, ""
        assert parent == CGROUP_PARENT
        return int(pid), cid

    def cgdirs(cid: str) -> list[str]:
        return glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}/{cid}")

    bb("run", "-d", "--name", "keeper", "--network", "none", "busybox", "sleep", "120")
    mon = monitor_pid(bb.runroot)
    assert wait_until(lambda: spare()[0] == mon and len(cgdirs(spare()[1])) >= 5, 10), spare()
    first = spare()[1]
    cid = bb("run", "-d", "--network", "none", "busybox", "sleep", "120").out.strip()  # takes it by rename
    assert cgdirs(cid) and not cgdirs(first)
    assert wait_until(lambda: spare()[1] not in ("", first) and cgdirs(spare()[1]), 10)  # made again
    nxt = spare()[1]
    p = subprocess.Popen(bb.argv("run", "--rm", "--network", "none", "--name", "srv", "busybox", "sh", "-c",
                                 "echo ready; sleep 0.5"), env=bb.env, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    assert bb("inspect", "-f", "{{.Id}}", "srv").out.strip() == nxt  # the served run got the spare's id
    assert p.wait(timeout=20) == 0
    assert not cgdirs(nxt)  # removed with the --rm container
    assert wait_until(lambda: spare()[1] not in ("", nxt) and cgdirs(spare()[1]), 10)
    left = spare()[1]
    os.kill(mon, signal.SIGKILL)
    assert wait_until(lambda: not os.path.exists(f"/proc/{mon}/stat") or
                      open(f"/proc/{mon}/stat").read().split(") ")[1].startswith("Z"))
    bb("rm", "-f", "keeper", cid)  # in-process: sweeps the dead monitor's spare
    assert not cgdirs(left) and not rec.exists()


def test_in_process_run_leaves_a_monitor_for_the_next(bb) -> None:  # type: ignore[no-untyped-def]
    """No monitor listened: the run is done in-process and starts one in the background, which
    serves the next run and exits PALLET_MONITOR_LINGER seconds after (0.3 s in these tests)."""
    assert monitor_pid(bb.runroot) == 0
    assert bb("run", "--rm", "--network", "none", "busybox", "echo", "first").out == "first\n"
    assert wait_until(lambda: (bb.runroot / "monitor.sock").exists() and monitor_pid(bb.runroot) > 0, 10)
    mon = monitor_pid(bb.runroot)
    p = subprocess.Popen(bb.argv("run", "--rm", "--network", "none", "--name", "second", "busybox", "sh", "-c",
                                 "echo ready; sleep 0.5"), env=bb.env, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    pid = int(bb("inspect", "-f", "{{.State.Pid}}", "second").out)
    assert _parent(pid) == mon  # served
    assert p.wait(timeout=20) == 0
    # no signal starts ignored in a container of that monitor (glibc's posix_spawn would leave 32/33)
    sig = bb("run", "--rm", "--network", "none", "busybox", "grep", "SigIgn", "/proc/self/status").out
    assert sig.split() == ["SigIgn:", "0" * 16]
    assert wait_until(lambda: monitor_pid(bb.runroot) == 0, 10)  # gone after its linger
    bb.env["PALLET_SERVED"] = "0"
    bb("run", "--rm", "--network", "none", "busybox", "true")
    assert not wait_until(lambda: monitor_pid(bb.runroot) > 0, 1)  # PALLET_SERVED=0: none started


def test_failed_start_leaves_no_cgroup(bb, mode) -> None:  # type: ignore[no-untyped-def]
    """A start that fails before the runtime ran (a published port already taken) leaves no
    cgroup, no container with --rm, and a created one without (the fixture checks the host)."""
    import glob
    import socket

    from engine_helpers import CGROUP_PARENT

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        before = {p for p in glob.glob(f"/sys/fs/cgroup/memory/{CGROUP_PARENT}/*") if os.path.isdir(p)}
        r = bb.fail("run", "--rm", "-p", f"127.0.0.1:{port}:80", "busybox", "true")
        assert r.rc == 125 and str(port) in r.err and len(r.err.strip().splitlines()) == 1
        r = bb.fail("run", "--name", "kept", "-p", f"127.0.0.1:{port}:80", "busybox", "true")
        assert r.rc == 125
        assert bb("inspect", "-f", "{{.State.Status}}", "kept").out.strip() == "created"
        bb("rm", "kept")
        now = {p for p in glob.glob(f"/sys/fs/cgroup/memory/{CGROUP_PARENT}/*") if os.path.isdir(p)}
        # only the keeper's and the spare may be there (the spare is made again after each start)
        spare_file = bb.runroot / "monitor.spare"
        spare = spare_file.read_text().split()[2] if spare_file.exists() else ""
        assert {p.rsplit("/", 1)[1] for p in now - before} <= {spare}, now - before
    finally:
        s.close()
