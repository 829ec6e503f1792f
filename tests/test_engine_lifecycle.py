"""Container lifecycle through the real CLI: run, exit codes, detached containers, logs, exec,
pause, stop, kill, restart policies, OOM, signals, inspect, ps filters, rename."""
from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from engine_helpers import bb_fixture, wait_until  # noqa: F401  (bb_fixture registers the 'bb' fixture)

pytestmark = pytest.mark.privileged


def test_run_exit_codes_and_streams(bb) -> None:  # type: ignore[no-untyped-def]
    r = bb("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (r.rc, r.out, r.err) == (3, "out\n", "err\n")
    r = bb.fail("run", "--rm", "busybox", "nosuchcmd")
    assert r.rc == 127 and "nosuchcmd" in r.err and len(r.err.strip().splitlines()) == 1
    r = bb.fail("run", "--rm", "busybox", "/etc/passwd")
    assert r.rc == 126
    # without --rm a failed start stays as a created container with the exit code, as docker
    r = bb.fail("run", "--name", "nf", "busybox", "nosuchcmd")
    assert r.rc == 127
    assert bb("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "nf").out.split() == ["created", "127"]
    bb("rm", "nf")
    assert bb("ps", "-aq").out == ""
    r = bb("run", "--rm", "-i", "busybox", "sh", "-c", "read x; echo got $x", input="hello\n")
    assert r.out == "got hello\n"
    r = bb("run", "--rm", "-e", "A=1", "--env-file", "/dev/null", "-w", "/tmp", "-u", "nobody",
           "--hostname", "box", "busybox", "sh", "-c", "echo $A $(pwd) $(id -u) $(hostname)")
    assert r.out.split() == ["1", "/tmp", "65534", "box"]
    r = bb("run", "--rm", "--entrypoint", "echo", "busybox", "a", "b")
    assert r.out == "a b\n"
    # no signal starts ignored in the container (Python ignores SIGPIPE/SIGXFSZ: not inherited)
    assert bb("run", "--rm", "busybox", "grep", "SigIgn", "/proc/self/status").out.split()[1] == "0" * 16
    r = bb("run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
    assert r.out.startswith("/sbin/docker-init -- sh")


def test_detached_logs_exec_pause_stop_rm(bb) -> None:  # type: ignore[no-untyped-def]
    cid = bb("run", "-d", "--name", "web", "-l", "tier=front", "busybox", "sh", "-c",
             "echo start; echo oops >&2; while true; do sleep 0.1; done").out.strip()
    assert len(cid) == 64
    assert wait_until(lambda: "start" in bb("logs", "web").out)
    r = bb("logs", "web")
    assert r.out == "start\n" and r.err == "oops\n"
    assert bb("logs", "-t", "--tail", "1", "web").err.split(" ", 1)[1] == "oops\n"
    with open(bb.root / "containers" / cid / f"{cid}-json.log") as f:
        lines = [json.loads(x) for x in f]
    assert lines[0]["log"] == "start\n" and lines[0]["stream"] == "stdout" and lines[0]["time"].endswith("Z")
    assert bb("exec", "web", "sh", "-c", "exit 7", check=False).rc == 7
    assert bb("exec", "-e", "X=y", "-w", "/tmp", "web", "sh", "-c", "echo $X $(pwd)").out == "y /tmp\n"
    assert bb.fail("exec", "web", "nosuch").rc in (126, 127)
    ps = bb("ps", "--format", "{{.Names}} {{.Status}}").out
    assert ps.startswith("web Up")
    bb("pause", "web")
    assert "(Paused)" in bb("ps").out
    assert bb.fail("exec", "web", "true").rc == 125
    bb("unpause", "web")
    assert "sh -c echo start" in bb("top", "web").out
    stats = bb("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "web").out.split()
    assert stats[0] == "web" and int(stats[1]) >= 1
    assert bb("container", "inspect", "-f", "{{.Name}}", "web").out.strip() == "/web"
    info = json.loads(bb("inspect", "web").out)[0]
    st = info["State"]
    assert st["Status"] == "running" and st["Running"] and st["Pid"] > 0 and not st["OOMKilled"]
    assert info["Config"]["Labels"] == {"tier": "front"} and info["HostConfig"]["NetworkMode"] in ("none", "bridge")
    assert info["GraphDriver"]["Data"]["UpperDir"].endswith(f"{cid}/upper")
    assert bb.fail("rm", "web").rc != 0
    t0 = time.monotonic()
    bb("stop", "-t", "1", "web")  # sh as pid 1 ignores SIGTERM: killed after 1 s
    assert time.monotonic() - t0 < 8
    st = json.loads(bb("inspect", "web").out)[0]["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 137 and st["FinishedAt"] > st["StartedAt"]
    assert bb.fail("exec", "web", "true").rc == 125
    bb("start", "web")
    assert bb("inspect", "-f", "{{.State.Running}}", "web").out.strip() == "true"
    bb("kill", "-s", "KILL", "web")
    assert bb("wait", "web").out.strip() == "137"
    bb("rename", "web", "web2")
    assert bb("ps", "-a", "--format", "{{.Names}}").out.strip() == "web2"
    bb("rm", "web2")
    assert bb("ps", "-aq").out == ""


def test_stop_signal_and_restart_policies(bb) -> None:  # type: ignore[no-untyped-def]
    bb("run", "-d", "--name", "trap", "--stop-signal", "USR1", "busybox", "sh", "-c",
       "trap 'exit 42' USR1; trap 'exit 41' HUP; while true; do sleep 0.1; done")
    time.sleep(0.3)
    bb("exec", "trap", "true")
    time.sleep(0.2)
    bb("kill", "-s", "HUP", "trap")  # trappable: the monitor leaves no signal ignored
    assert bb("wait", "trap").out.strip() == "41"
    bb("start", "trap")
    time.sleep(0.3)
    bb("stop", "trap")
    assert bb("inspect", "-f", "{{.State.ExitCode}}", "trap").out.strip() == "42"
    bb("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo x; exit 3")
    assert wait_until(lambda: bb("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "flaky").out.split()
                      == ["exited", "2"], 15)
    assert bb("logs", "flaky").out == "x\nx\nx\n"
    bb("run", "-d", "--name", "always", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2")
    assert wait_until(lambda: int(bb("inspect", "-f", "{{.RestartCount}}", "always").out) >= 1, 15)
    bb("stop", "always")
    n = bb("inspect", "-f", "{{.RestartCount}}", "always").out
    time.sleep(0.6)
    assert bb("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "always").out.split() == ["exited", n.strip()]
    bb("run", "-d", "--rm", "--name", "gone", "busybox", "true")
    assert wait_until(lambda: "gone" not in bb("ps", "-a").out)
    bb("rm", "trap", "flaky", "always")


def test_oom_is_137_and_reported(bb) -> None:  # type: ignore[no-untyped-def]
    r = bb("run", "--name", "oom", "-m", "8m", "--memory-swap", "8m", "busybox", "sh", "-c",
           "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done", check=False, timeout=60)
    assert r.rc == 137
    assert bb("inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", "oom").out.split() == ["true", "137"]
    bb("rm", "oom")


def test_signals_reach_foreground_container(bb) -> None:  # type: ignore[no-untyped-def]
    for sig, code in ((signal.SIGTERM, 43), (signal.SIGINT, 44), (signal.SIGHUP, 45)):
        name = signal.Signals(sig).name[3:]
        p = subprocess.Popen(bb.argv("run", "--rm", "busybox", "sh", "-c",
                                     f"trap 'exit {code}' {name}; echo ready; while true; do sleep 0.05; done"),
                             env=bb.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(sig)
        assert p.wait(timeout=20) == code


def test_ps_filters_and_formats(bb) -> None:  # type: ignore[no-untyped-def]
    bb("create", "--name", "ca", "-l", "k=1", "busybox", "true")
    bb("run", "--name", "cb", "busybox", "sh", "-c", "exit 2", check=False)
    bb("run", "-d", "--name", "cc", "busybox", "sleep", "30")
    assert bb("ps", "--format", "{{.Names}}").out.split() == ["cc"]
    assert set(bb("ps", "-a", "--format", "{{.Names}}").out.split()) == {"ca", "cb", "cc"}
    assert bb("ps", "-a", "--filter", "label=k=1", "--format", "{{.Names}}").out.split() == ["ca"]
    assert bb("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}").out.split() == ["cb"]
    assert bb("ps", "-a", "--filter", "exited=2", "--format", "{{.Names}}").out.split() == ["cb"]
    assert bb("ps", "-a", "--filter", "name=^cc$", "-q").out.strip() == bb("inspect", "-f", "{{.Id}}", "cc").out[:12]
    head = bb("ps", "-a").out.splitlines()[0].split()
    assert head[:3] == ["CONTAINER", "ID", "IMAGE"] and head[-1] == "NAMES"
    assert "SIZE" in bb("ps", "-as").out.splitlines()[0]
    assert bb.fail("ps", "--filter", "bogus=1").rc == 125
    assert bb("container", "ls", "-q").out.strip() == bb("ps", "-q").out.strip()
    bb("stop", "-t", "0", "cc")
    out = bb("container", "prune", "-f").out
    assert "Deleted Containers" in out and bb("ps", "-aq").out == ""


def test_monitor_killed_state_reconciled(bb) -> None:  # type: ignore[no-untyped-def]
    import os

    from engine_helpers import monitor_pid

    bb("run", "-d", "--name", "a1", "busybox", "sleep", "30")
    bb("run", "-d", "--name", "a2", "busybox", "sleep", "30")
    mon = monitor_pid(bb.runroot)
    assert mon > 0
    os.kill(mon, signal.SIGKILL)
    assert wait_until(lambda: not os.path.exists(f"/proc/{mon}/stat") or
                      open(f"/proc/{mon}/stat").read().split(") ")[1].startswith("Z"))
    # a container whose monitor died keeps running, and can still be stopped
    assert bb("inspect", "-f", "{{.State.Status}}", "a1").out.strip() == "running"
    bb("stop", "-t", "1", "a1")
    st = bb("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "a1").out.split()
    assert st == ["exited", "255"]  # nobody was left to collect its status: unknown, as docker
    pid = int(bb("inspect", "-f", "{{.State.Pid}}", "a2").out)
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: bb("ps", "-a", "--filter", "status=exited", "-q").out.count("\n") == 2)
    bb("rm", "a1", "a2")
