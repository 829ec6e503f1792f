"""The monitor's next served run, prepared ahead (pallet.engine.prestart, pallet.runtime.prepared):
after a served run the monitor sets up the next container (namespaces, cgroups, rootfs, pivot_root)
under the id the next served run gets; that run's process is handed to it when the spec matches,
and a run that differs is started the usual way with nothing of the guess left over."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from engine_helpers import bb_fixture, monitor_pid, wait_until  # noqa: F401  (registers the 'bb' fixture)

pytestmark = pytest.mark.privileged

UNLIMITED = 9223372036854771712


@pytest.fixture(name="srv")
def srv_fixture(bb):  # type: ignore[no-untyped-def]
    """``bb`` with a monitor kept in Python (a detached keeper) and spare cgroups (cgroup v1)."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        pytest.skip("cgroup v2 host: no spare cgroup set, nothing is prepared")
    bb.env["PALLET_MONITOR_IDLE"] = "0"
    bb("run", "-d", "--name", "keeper", "--network", "none", "busybox", "sleep", "120")
    assert monitor_pid(bb.runroot) > 0
    yield bb
    bb("rm", "-f", "keeper", check=False)


def _prepared(runroot) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """(pid, id) of the monitor's prepared container, (0, "") when there is none: the monitor's
    child in a pid namespace of its own that still runs the monitor's program, or pallet-init."""
    mon = monitor_pid(runroot)
    try:
        cid = (runroot / "monitor.prestart").read_text().split()[2]
        kids = []
        for tid in os.listdir(f"/proc/{mon}/task"):
            kids += open(f"/proc/{mon}/task/{tid}/children").read().split()
        for k in kids:
            if (os.readlink(f"/proc/{k}/ns/pid") != os.readlink(f"/proc/{mon}/ns/pid")
                    and _waiting(open(f"/proc/{k}/cmdline", "rb").read(), open(f"/proc/{mon}/cmdline", "rb").read())):
                return int(k), cid
    except (OSError, IndexError):
        pass
    return 0, ""


def _waiting(cmdline: bytes, monitor: bytes) -> bool:
    return cmdline == monitor or cmdline.startswith(b"pallet-init\0")


def test_the_next_run_is_prepared_and_used(srv) -> None:  # type: ignore[no-untyped-def]
    srv("run", "--rm", "--network", "none", "busybox", "true")
    assert wait_until(lambda: _prepared(srv.runroot)[0] > 0, 10)
    pid, cid = _prepared(srv.runroot)
    assert (srv.root / "containers" / cid / "upper").is_dir() and cid[:12] not in srv("ps", "-aq").out
    # another command and environment: only the process differs, so the prepared one runs it
    p = subprocess.Popen(srv.argv("run", "--rm", "--network", "none", "--name", "ahead", "-e", "A=1", "busybox", "sh",
                                  "-c", 'echo "$A $(hostname) $$"; sleep 0.5'),
                         env=srv.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    assert p.stdout.readline().decode().split() == ["1", cid[:12], "1"]
    assert int(srv("inspect", "-f", "{{.State.Pid}}", "ahead").out) == pid
    assert srv("inspect", "-f", "{{.Id}}", "ahead").out.strip() == cid
    assert p.wait(timeout=20) == 0
    assert not (srv.root / "containers" / cid).exists()  # --rm: gone when run returns
    # what a user checks inside is the same as without the preparation
    r = srv("run", "--rm", "--network", "none", "busybox", "sh", "-c",
            "grep -E '^(CapEff|Seccomp):' /proc/self/status; ls /dev | tr '\\n' ' '; echo; id -u; cat /etc/hostname")
    lines = r.out.splitlines()
    assert lines[0] == "CapEff:\t00000000a80425fb" and lines[1] == "Seccomp:\t2"
    assert "null" in lines[2] and "pts" in lines[2] and lines[3] == "0"
    assert wait_until(lambda: _prepared(srv.runroot)[0] > 0, 10)
    # the same config but the name: the spec built when it was prepared, with this name
    srv("run", "--rm", "--network", "none", "busybox", "sleep", "0.5")
    assert wait_until(lambda: _prepared(srv.runroot)[0] > 0, 10)
    pid, cid = _prepared(srv.runroot)
    p = subprocess.Popen(srv.argv("run", "--rm", "--network", "none", "--name", "nm", "busybox", "sleep", "0.5"),
                         env=srv.env)
    cfg = srv.runroot / "runtime" / cid / "config.json"
    assert wait_until(lambda: cfg.exists(), 10)
    spec = json.loads(cfg.read_text())
    assert spec["annotations"] == {"org.pallet.container.name": "nm"} and spec["process"]["args"] == ["sleep", "0.5"]
    assert spec["hostname"] == cid[:12] and int(srv("inspect", "-f", "{{.State.Pid}}", "nm").out) == pid
    assert p.wait(timeout=20) == 0
    # exec, stop: a container started from a prepared one is like any other
    srv("run", "--rm", "--network", "none", "busybox", "sleep", "0.5")
    assert wait_until(lambda: _prepared(srv.runroot)[0] > 0, 10)
    pid, cid = _prepared(srv.runroot)
    p = subprocess.Popen(srv.argv("run", "--name", "ex", "--network", "none", "busybox", "sleep", "30"), env=srv.env)
    assert wait_until(lambda: srv("inspect", "-f", "{{.State.Status}}", "ex", check=False).out.strip() == "running", 10)
    assert int(srv("inspect", "-f", "{{.State.Pid}}", "ex").out) == pid
    assert srv("exec", "ex", "sh", "-c", "hostname; cat /proc/1/cmdline").out == f"{cid[:12]}\nsleep\x0030\x00"
    srv("stop", "-t", "1", "ex")
    assert p.wait(timeout=20) == 137 or p.returncode == 143
    srv("rm", "ex")
    # the mount and ipc namespaces of a prepared container are held by the monitor until its run
    # answered (its exit does not wait for their teardown), then closed: only the next one's stay
    mon = monitor_pid(srv.runroot)
    assert wait_until(lambda: _prepared(srv.runroot)[0] > 0, 10)

    def held() -> list[str]:
        out = []
        for fd in os.listdir(f"/proc/{mon}/fd"):
            try:
                out.append(os.readlink(f"/proc/{mon}/fd/{fd}"))
            except OSError:
                pass
        return [t for t in out if t.startswith(("mnt:", "ipc:"))]

    assert sorted(t.split(":")[0] for t in held()) == ["ipc", "mnt"]
    assert {t for t in held() if t.startswith("mnt:")} == {os.readlink(f"/proc/{_prepared(srv.runroot)[0]}/ns/mnt")}


def test_exit_codes_and_failures_with_a_prepared_container(srv) -> None:  # type: ignore[no-untyped-def]
    for cmd, code in ((["nosuchcmd"], 127), (["/etc/passwd"], 126), (["sh", "-c", "exit 7"], 7)):
        srv("run", "--rm", "--network", "none", "busybox", "true")
        assert wait_until(lambda: _prepared(srv.runroot)[0] > 0, 10)
        _, cid = _prepared(srv.runroot)
        r = srv.fail("run", "--rm", "--network", "none", "busybox", *cmd)
        assert r.rc == code, r.err
        assert not (srv.root / "containers" / cid).exists()
    # a run whose create fails (a bad flag) drops the prepared one: nothing of it is left
    srv("run", "--rm", "--network", "none", "busybox", "true")
    assert wait_until(lambda: _prepared(srv.runroot)[0] > 0, 10)
    pid, cid = _prepared(srv.runroot)
    assert srv.fail("run", "--rm", "--network", "none", "--cpus", "-1", "busybox", "true").rc == 125
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 10)
    assert wait_until(lambda: not (srv.root / "containers" / cid).exists(), 10)
    assert srv("ps", "-aq").out.split() == srv("ps", "-q").out.split()


def test_a_run_that_differs_is_started_the_usual_way(srv) -> None:  # type: ignore[no-untyped-def]
    def limit(*flags: str) -> int:
        return int(srv("run", "--rm", "--network", "none", *flags, "busybox",
                       "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").out)

    assert limit("--memory", "64m") == 64 << 20
    assert wait_until(lambda: _prepared(srv.runroot)[0] > 0, 10)  # prepared with that limit
    kept = _prepared(srv.runroot)
    assert limit() == UNLIMITED  # not with the guess's limit: another shape, the usual start
    # (then the guess is that shape: the other prepared one is replaced)
    assert wait_until(lambda: _prepared(srv.runroot)[0] not in (0, kept[0]), 10)
    assert limit("--memory", "64m") == 64 << 20
    assert limit("--memory", "32m") == 32 << 20
    assert limit("--memory", "32m") == 32 << 20
    old = _prepared(srv.runroot)[0]
    srv("run", "--rm", "--network", "none", "busybox", "true")
    assert wait_until(lambda: _prepared(srv.runroot)[0] not in (0, old), 10)
    r = srv("run", "--rm", "--network", "none", "--read-only", "busybox", "sh", "-c", "touch /x; echo $?", check=False)
    assert r.out.strip() == "1"
    r = srv("run", "--rm", "--network", "none", "--tmpfs", "/scratch", "busybox", "sh", "-c", "grep -c /scratch /proc/mounts")
    assert r.out.strip() == "1"
    # its image's layer directory replaced meanwhile (removed and stored again): not used
    srv("run", "--rm", "--network", "none", "busybox", "true")
    assert wait_until(lambda: _prepared(srv.runroot)[0] > 0, 10)
    pid, _cid = _prepared(srv.runroot)
    import glob
    import shutil

    (diff,) = glob.glob(str(srv.root / "layers" / "*" / "diff"))
    os.rename(diff, diff + ".old")
    shutil.copytree(diff + ".old", diff, symlinks=True)
    shutil.rmtree(diff + ".old")
    assert srv("run", "--rm", "--network", "none", "busybox", "echo", "fresh").out == "fresh\n"
    assert not os.path.exists(f"/proc/{pid}")
    kept = srv("run", "--name", "kept", "--network", "none", "busybox", "sh", "-c", "echo x > /f")
    diff = srv("diff", "kept").out.split()  # not the guess's mount point /scratch (as in-process: C /etc, A /f)
    assert kept.rc == 0 and "/scratch" not in diff and diff[-2:] == ["A", "/f"], diff
    srv("rm", "kept")


def test_dropped_after_its_ttl_and_swept_after_a_killed_monitor(srv) -> None:  # type: ignore[no-untyped-def]
    # a served --rm run's directory is renamed out of containers/ (into tmp/), removed once it answered;
    # what a killed monitor left there is removed by the next one's first
    fake = srv.root / "tmp" / "gone-999999999-0123abcd"
    (fake / "upper" / "etc").mkdir(parents=True)
    srv("run", "--rm", "--network", "none", "busybox", "true")
    assert wait_until(lambda: not [p for p in (srv.root / "tmp").iterdir() if p.name.startswith("gone-")], 5)
    assert wait_until(lambda: _prepared(srv.runroot)[0] > 0, 10)
    pid, cid = _prepared(srv.runroot)
    # unused for PALLET_PRESTART_TTL (2 s): killed, its directories removed
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 15)
    assert wait_until(lambda: not (srv.root / "containers" / cid).exists(), 5)
    assert not (srv.runroot / "monitor.prestart").exists()
    # a killed monitor: its prepared container dies with it; the next sweep removes its directories
    srv("run", "--rm", "--network", "none", "busybox", "true")
    assert wait_until(lambda: _prepared(srv.runroot)[0] > 0, 10)
    pid, cid = _prepared(srv.runroot)
    mon = monitor_pid(srv.runroot)
    os.kill(mon, signal.SIGKILL)
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}") or
                      open(f"/proc/{pid}/stat").read().split(") ")[1].startswith("Z"), 10)
    assert (srv.root / "containers" / cid).exists()
    srv("rm", "-f", "keeper")  # in-process: sweeps the dead monitor's spare and prepared directories
    assert not (srv.root / "containers" / cid).exists() and not (srv.runroot / "monitor.prestart").exists()
