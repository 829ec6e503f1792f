"""``pallet-runtime`` with runc's command contract, and the same bundle run by runc."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runtime_util import DOCKER_CAPS, bundle_of, new_id, no_leaks  # noqa: F401

pytestmark = [pytest.mark.privileged, pytest.mark.usefixtures("no_leaks")]

RUNTIME = [sys.executable, "-m", "pallet.runtime.cli"]


def _bundle(tmp_path: Path, rootfs: Path, args: list[str], **kw: object) -> Path:
    from pallet.runtime import spec as rspec

    b = bundle_of(tmp_path, rootfs)
    # an absolute root.path: runc refuses a rootfs that is a symlink
    (b / "config.json").write_text(json.dumps(rspec.default_spec(args, str(rootfs), **kw)))  # type: ignore[arg-type]
    return b


def prt(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*RUNTIME, "--root", str(tmp_path / "state"), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def prt_detached(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """create / run -d: the container keeps the runtime's stdio (runc's pass-through), so
    give it files, not pipes we would wait on."""
    with open(tmp_path / "ctr.out", "w") as o, open(tmp_path / "ctr.err", "w+") as e:
        p = subprocess.run([*RUNTIME, "--root", str(tmp_path / "state"), *args], stdout=o, stderr=e,
                           stdin=subprocess.DEVNULL, timeout=60)
        e.seek(0)
        return subprocess.CompletedProcess(p.args, p.returncode, "", e.read())


def test_cli_create_start_state_kill_delete(tmp_path: Path, busybox_rootfs: Path) -> None:
    b = _bundle(tmp_path, busybox_rootfs, ["sleep", "30"])
    cid = new_id()
    try:
        _create_start_state_kill_delete(tmp_path, b, cid)
    finally:
        prt(tmp_path, "delete", "-f", cid)


def _create_start_state_kill_delete(tmp_path: Path, b: Path, cid: str) -> None:
    r = prt_detached(tmp_path, "create", "--bundle", str(b), "--pid-file", str(tmp_path / "pid"), cid)
    assert r.returncode == 0, r.stderr
    pid = int((tmp_path / "pid").read_text())
    st = json.loads(prt(tmp_path, "state", cid).stdout)
    assert (st["id"], st["status"], st["pid"], st["bundle"]) == (cid, "created", pid, str(b))
    assert prt(tmp_path, "start", cid).returncode == 0
    assert json.loads(prt(tmp_path, "state", cid).stdout)["status"] == "running"
    assert prt(tmp_path, "ps", cid).stdout.split() == [str(pid)]
    r = prt(tmp_path, "delete", cid)
    assert r.returncode == 1 and "running" in r.stderr and len(r.stderr.splitlines()) == 1
    assert prt(tmp_path, "kill", cid, "KILL").returncode == 0
    for _ in range(300):
        if json.loads(prt(tmp_path, "state", cid).stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    assert prt(tmp_path, "delete", cid).returncode == 0
    r = prt(tmp_path, "state", cid)
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_cli_run_exit_codes(tmp_path: Path, busybox_rootfs: Path) -> None:
    b = _bundle(tmp_path, busybox_rootfs, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    r = prt(tmp_path, "run", "--bundle", str(b), new_id())
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    _bundle(tmp_path, busybox_rootfs, ["no-such-cmd"])
    r = prt(tmp_path, "run", "-b", str(b), new_id())
    assert r.returncode == 127 and "no-such-cmd" in r.stderr
    _bundle(tmp_path, busybox_rootfs, ["/etc/passwd"])
    assert prt(tmp_path, "run", "-b", str(b), new_id()).returncode == 126
    r = prt(tmp_path, "run", "-b", str(tmp_path / "nope"), new_id())
    assert r.returncode == 1 and "config.json" in r.stderr


def test_cli_run_detached_exec_kill(tmp_path: Path, busybox_rootfs: Path) -> None:
    b = _bundle(tmp_path, busybox_rootfs, ["sleep", "30"], hostname="h1")
    cid = new_id()
    assert prt_detached(tmp_path, "run", "-d", "-b", str(b), cid).returncode == 0
    try:
        r = prt(tmp_path, "exec", "--env", "X=1", "--cwd", "/tmp", cid, "sh", "-c", "hostname; echo $X; pwd; exit 4")
        assert (r.returncode, r.stdout) == (4, "h1\n1\n/tmp\n")
        r = prt(tmp_path, "exec", cid, "nope")
        assert r.returncode == 127
        assert prt(tmp_path, "list", "-q").stdout.split() == [cid]
        assert json.loads(prt(tmp_path, "list", "--format", "json").stdout)[0]["status"] == "running"
        assert prt(tmp_path, "pause", cid).returncode == 0
        assert json.loads(prt(tmp_path, "state", cid).stdout)["status"] == "paused"
        assert prt(tmp_path, "resume", cid).returncode == 0
    finally:
        assert prt(tmp_path, "delete", "-f", cid).returncode == 0


def test_cli_console_socket(tmp_path: Path, busybox_rootfs: Path) -> None:
    b = _bundle(tmp_path, busybox_rootfs, ["sh", "-c", "tty"], terminal=True)
    sock_path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    cid = new_id()
    try:
        r = prt_detached(tmp_path, "create", "-b", str(b), "--console-socket", sock_path, cid)
        assert r.returncode == 0, r.stderr
        conn, _ = srv.accept()
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
        conn.close()
        master = fds[0]
        assert prt(tmp_path, "start", cid).returncode == 0
        out = b""
        deadline = time.monotonic() + 10
        while b"\n" not in out and time.monotonic() < deadline:
            out += os.read(master, 1024)
        os.close(master)
        assert out.strip() == b"/dev/pts/0"
    finally:
        srv.close()
        prt(tmp_path, "delete", "-f", cid)


def test_same_bundle_runs_under_runc(tmp_path: Path, busybox_rootfs: Path) -> None:
    """The spec we build is a valid OCI bundle for runc, and both runtimes isolate alike."""
    if not shutil.which("runc"):
        pytest.skip("runc is not installed")
    from pallet.runtime.external import External

    script = "id; hostname; echo $$; grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status; ls /dev | wc -l"
    b = _bundle(tmp_path, busybox_rootfs, ["sh", "-c", script], hostname="same")
    ours = prt(tmp_path, "run", "-b", str(b), new_id())
    out = tmp_path / "runc.out"
    with open(out, "w") as f:
        External("runc", str(tmp_path / "runc-state")).run(new_id(), str(b), stdio=(subprocess.DEVNULL, f.fileno(), f.fileno()))  # type: ignore[arg-type]
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == out.read_text()
    assert f"CapEff:\t{DOCKER_CAPS}" in ours.stdout and "Seccomp:\t2" in ours.stdout


def test_external_runc_create_start_state_delete(tmp_path: Path, busybox_rootfs: Path) -> None:
    if not shutil.which("runc"):
        pytest.skip("runc is not installed")
    from pallet.runtime.external import External

    b = _bundle(tmp_path, busybox_rootfs, ["sleep", "30"])
    rt = External("runc", str(tmp_path / "runc-state"))
    cid = new_id()
    pid = rt.create(cid, str(b), stdio=(subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL))  # type: ignore[arg-type]
    try:
        assert rt.state(cid)["status"] == "created" and rt.state(cid)["pid"] == pid
        rt.start(cid)
        assert rt.state(cid)["status"] == "running"
    finally:
        rt.delete(cid, force=True)
    from pallet.errors import NotFound

    with pytest.raises(NotFound):
        rt.state(cid)


def test_cli_parallel_runs_leave_nothing(tmp_path: Path, busybox_rootfs: Path) -> None:
    """12 containers, 4 at a time, through the CLI: all succeed, cgroups and state are gone."""
    b = _bundle(tmp_path, busybox_rootfs, ["sh", "-c", "echo ok"])
    ids = [new_id("par") for _ in range(12)]
    for i in range(0, len(ids), 4):
        procs = [subprocess.Popen([*RUNTIME, "--root", str(tmp_path / "state"), "run", "-b", str(b), cid],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
                 for cid in ids[i:i + 4]]
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert (p.returncode, out) == (0, b"ok\n"), err


def test_cli_run_terminal_in_foreground(tmp_path: Path, busybox_rootfs: Path) -> None:
    """terminal: true without a console socket: the runtime copies between its stdio and the pty."""
    import pty

    b = _bundle(tmp_path, busybox_rootfs, ["sh", "-c", "tty; exit 5"], terminal=True)
    pid, master = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [*RUNTIME, "--root", str(tmp_path / "state"), "run", "-b", str(b), new_id()])
    out = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(master)
    assert os.waitstatus_to_exitcode(status) == 5 and b"/dev/pts/0" in out


def test_cli_bad_input_one_line_errors(tmp_path: Path, busybox_rootfs: Path) -> None:
    """Bad bundles and ids: exit 1, one line naming what was wrong, nothing left behind."""
    from pallet.runtime import spec as rspec

    b = bundle_of(tmp_path, busybox_rootfs)
    cases: list[tuple[object, str]] = []
    s = rspec.default_spec(["true"], str(busybox_rootfs))
    s["linux"]["namespaces"].append({"type": "bogus"})
    cases.append((s, "unknown namespace type 'bogus'"))
    s = rspec.default_spec(["true"], str(busybox_rootfs))
    s["process"]["capabilities"]["bounding"].append("CAP_FLY")
    cases.append((s, "unknown capability"))
    s = rspec.default_spec(["true"], str(tmp_path / "no-rootfs"))
    cases.append((s, "does not exist"))
    s = rspec.default_spec(["true"], str(busybox_rootfs))
    s["process"]["rlimits"] = [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]
    cases.append((s, "unknown rlimit"))
    s = rspec.default_spec(["true"], str(busybox_rootfs))
    s["linux"]["resources"]["cpu"] = {"quota": 10, "period": 100000}  # the kernel's minimum is 1000
    cases.append((s, "cpu.cfs_quota_us: EINVAL"))
    cases.append(("{not json", "invalid JSON"))
    for spec, msg in cases:
        (b / "config.json").write_text(spec if isinstance(spec, str) else json.dumps(spec))
        r = prt(tmp_path, "run", "-b", str(b), new_id())
        assert r.returncode == 1 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, (msg, r.stderr)
    r = prt(tmp_path, "delete", "nope")
    assert r.returncode == 1 and "nope does not exist" in r.stderr
    r = prt(tmp_path, "kill", "bad/id")
    assert r.returncode == 1 and "invalid container id" in r.stderr
    _bundle(tmp_path, busybox_rootfs, ["sleep", "30"])
    cid = new_id()
    assert prt_detached(tmp_path, "create", "-b", str(b), cid).returncode == 0
    try:
        r = prt_detached(tmp_path, "create", "-b", str(b), cid)
        assert r.returncode == 1 and "already exists" in r.stderr
    finally:
        prt(tmp_path, "delete", "-f", cid)
    assert not list((tmp_path / "state").iterdir())


def test_cli_run_forwards_signals(tmp_path: Path, busybox_rootfs: Path) -> None:
    """SIGTERM to a foreground `pallet-runtime run` reaches the container's process."""
    import signal

    b = _bundle(tmp_path, busybox_rootfs, ["sh", "-c", "trap 'echo got-term; exit 3' TERM; echo ready; "
                                                         "while :; do sleep 0.1; done"])
    cid = new_id()
    p = subprocess.Popen([*RUNTIME, "--root", str(tmp_path / "state"), "run", "-b", str(b), cid],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        out, _err = p.communicate(timeout=30)
        assert p.returncode == 3 and out == b"got-term\n"
    finally:  # a failure must not leave the container looping
        p.kill()
        p.wait()
        prt(tmp_path, "delete", "-f", cid)


def test_external_crun_reports_its_error_in_one_line(tmp_path: Path, busybox_rootfs: Path) -> None:
    """crun 1.8 refuses this hybrid cgroup host: the caller gets crun's own one-line reason."""
    if not shutil.which("crun"):
        pytest.skip("crun is not installed")
    from pallet.errors import PalletError
    from pallet.runtime.external import External

    b = _bundle(tmp_path, busybox_rootfs, ["true"])
    try:
        External("crun", str(tmp_path / "crun-state")).run(new_id(), str(b))
    except PalletError as e:
        assert str(e).startswith("crun run: ") and "\n" not in str(e)
