"""Lifecycle of the built-in runtime: create/start/state/kill/delete, exec, pause, tty, bad
commands (127/126), cgroup v2 backend; nothing left behind after each test."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from runtime_util import DOCKER_CAPS, bundle_of, new_id, no_leaks  # noqa: F401

from pallet.errors import CommandNotExecutable, CommandNotFound, Conflict, NotFound

pytestmark = [pytest.mark.privileged, pytest.mark.usefixtures("no_leaks")]


def _create(tmp_path: Path, rootfs: Path, args: list[str], start: bool = False, **kw):  # type: ignore[no-untyped-def]
    from pallet.runtime import container as rt
    from pallet.runtime import spec as rspec

    create_kw = {k: kw.pop(k) for k in ("cgroup_manager", "stdio") if k in kw}
    spec = rspec.default_spec(args, "rootfs", **kw)
    return rt.create(new_id(), str(bundle_of(tmp_path, rootfs)), spec, root=str(tmp_path / "state"),
                     start=start, seccomp_cache=str(tmp_path.parent / "sc"), **create_kw)


def _wait_status(c, want: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(500):
        if c.status() == want:
            return
        time.sleep(0.01)
    raise AssertionError(f"status {c.status()} != {want}")


def test_create_start_state_kill_delete(tmp_path: Path, busybox_rootfs: Path) -> None:
    from pallet.runtime import container as rt

    c = _create(tmp_path, busybox_rootfs, ["sleep", "30"])
    try:
        st = c.state()
        assert st["status"] == "created" and st["pid"] == c.pid and st["ociVersion"]
        assert open(f"/proc/{c.pid}/comm").read().strip() != "sleep"  # still our init, blocked
        with pytest.raises(Conflict):
            c.pause()
        c.start()
        assert rt.load(c.id, str(tmp_path / "state")).state()["status"] == "running"
        with pytest.raises(Conflict):
            c.start()
        with pytest.raises(Conflict):
            c.delete()
        c.kill(9)
        assert c.wait() == (137, False)
        assert c.state()["status"] == "stopped"
        with pytest.raises(Conflict):
            c.kill(15)
    finally:
        c.delete(force=True)
    with pytest.raises(NotFound):
        rt.load(c.id, str(tmp_path / "state"))


def test_delete_force_of_running_and_created(tmp_path: Path, busybox_rootfs: Path) -> None:
    for start in (True, False):
        c = _create(tmp_path, busybox_rootfs, ["sleep", "30"], start=start)
        pid = c.pid
        c.delete(force=True)
        assert not os.path.exists(f"/proc/{pid}/stat") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_command_not_found_and_not_executable(tmp_path: Path, busybox_rootfs: Path) -> None:
    with pytest.raises(CommandNotFound) as e:
        _create(tmp_path, busybox_rootfs, ["no-such-command"], start=True)
    assert e.value.exit_code == 127 and "no-such-command" in str(e.value)
    with pytest.raises(CommandNotExecutable) as e2:
        _create(tmp_path, busybox_rootfs, ["/etc/passwd"], start=True)
    assert e2.value.exit_code == 126
    with pytest.raises(CommandNotFound):  # also at create time, like runc
        _create(tmp_path, busybox_rootfs, ["/nope"])


def test_bad_bind_source_leaves_nothing(tmp_path: Path, busybox_rootfs: Path) -> None:
    from pallet.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="does not exist"):
        _create(tmp_path, busybox_rootfs, ["true"], start=True, binds=[("/no/such/dir", "/x", False)])


def test_exec_joins_namespaces_cgroup_caps_seccomp(tmp_path: Path, busybox_rootfs: Path) -> None:
    c = _create(tmp_path, busybox_rootfs, ["sleep", "30"], start=True, hostname="exechost")
    try:
        r, w = os.pipe()
        p = c.exec({"args": ["sh", "-c", "hostname; echo $$; cat /proc/self/status; sleep 2"]},
                   stdio=(os.open(os.devnull, os.O_RDONLY), w, w))
        os.close(w)
        time.sleep(0.3)
        for ns in ("mnt", "pid", "net", "uts", "ipc", "cgroup"):
            assert os.readlink(f"/proc/{p.pid}/ns/{ns}") == os.readlink(f"/proc/{c.pid}/ns/{ns}"), ns
        assert open(f"/proc/{p.pid}/cgroup").read() == open(f"/proc/{c.pid}/cgroup").read()
        c.kill(9)  # the pid namespace dies with its init: the exec'd process too
        assert p.wait() == 137
        out = os.read(r, 65536).decode()
        os.close(r)
        lines = out.splitlines()
        assert lines[0] == "exechost" and lines[1] != "1"
        assert f"CapEff:\t{DOCKER_CAPS}" in out and "Seccomp:\t2" in out
        with pytest.raises(Conflict):
            c.exec({"args": ["true"]})
    finally:
        c.delete(force=True)


def test_exec_errors_and_exit_code(tmp_path: Path, busybox_rootfs: Path) -> None:
    c = _create(tmp_path, busybox_rootfs, ["sleep", "30"], start=True)
    try:
        assert c.exec({"args": ["sh", "-c", "exit 7"]}).wait() == 7
        with pytest.raises(CommandNotFound):
            c.exec({"args": ["nope"]})
        with pytest.raises(CommandNotExecutable):
            c.exec({"args": ["/etc/group"]})
        assert c.exec({"args": ["sh", "-c", 'test "$(id -u)" = 65534 && test "$PWD" = /tmp'],
                       "user": {"uid": 65534, "gid": 65534}, "cwd": "/tmp"}).wait() == 0
    finally:
        c.delete(force=True)


def test_tty_console(tmp_path: Path, busybox_rootfs: Path) -> None:
    from pallet.runtime import container as rt
    from pallet.runtime import spec as rspec

    spec = rspec.default_spec(["sh", "-c", "tty; test -t 0 && echo isatty; ls -l /dev/console; stty size"],
                              "rootfs", terminal=True)
    spec["process"]["consoleSize"] = {"height": 33, "width": 111}
    c = rt.create(new_id(), str(bundle_of(tmp_path, busybox_rootfs)), spec, root=str(tmp_path / "state"),
                  start=True, seccomp_cache=str(tmp_path.parent / "sc"))
    try:
        assert c.console_fd is not None
        out = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = os.read(c.console_fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        assert c.wait()[0] == 0
        text = out.decode()
        assert "/dev/pts/0" in text and "isatty" in text and "136,   0" in text and "33 111" in text
    finally:
        c.delete(force=True)


def test_pause_resume_and_stats(tmp_path: Path, busybox_rootfs: Path) -> None:
    c = _create(tmp_path, busybox_rootfs, ["sleep", "30"], start=True, memory=64 << 20, pids_limit=20)
    try:
        c.pause()
        assert c.state()["status"] == "paused"
        assert open(f"/proc/{c.pid}/stat").read().split()[2] in ("D", "S")
        c.resume()
        assert c.state()["status"] == "running"
        s = c.stats()
        assert s["memory"]["limit"] == 64 << 20 and s["pids"]["current"] == 1 and s["cpu"]["usage_ns"] > 0
        c.pause()
        c.delete(force=True)  # a paused container is thawed and killed
    finally:
        c.delete(force=True) if os.path.exists(c.dir) else None


def test_cgroup_v2_backend_freeze(tmp_path: Path, busybox_rootfs: Path) -> None:
    from pallet.runtime.linux import cgroups

    root = cgroups.unified_root()
    if not os.path.exists(root + "/cgroup.procs"):
        pytest.skip("no cgroup2 hierarchy")
    c = _create(tmp_path, busybox_rootfs, ["sleep", "30"], start=True, cgroup_manager="v2")
    try:
        assert c.cgroup.name == "v2" and os.path.isdir(c.cgroup.path)
        assert str(c.pid) in open(c.cgroup.path + "/cgroup.procs").read().split()
        c.pause()
        assert c.status() == "paused"
        c.resume()
        assert c.status() == "running"
    finally:
        c.delete(force=True)
    assert not os.path.exists(c.cgroup.path)


def test_cgroup_v2_missing_controller_is_clear(tmp_path: Path, busybox_rootfs: Path) -> None:
    from pallet.errors import NotImplementedFeature
    from pallet.runtime.linux import cgroups

    root = cgroups.unified_root()
    if "memory" in open(root + "/cgroup.controllers").read().split():
        pytest.skip("the v2 hierarchy has the memory controller here")
    with pytest.raises(NotImplementedFeature, match="memory"):
        _create(tmp_path, busybox_rootfs, ["true"], start=True, cgroup_manager="v2", memory=32 << 20)


def test_oci_hooks_run_in_order_with_state(tmp_path: Path, busybox_rootfs: Path) -> None:
    import json

    from pallet.runtime import container as rt
    from pallet.runtime import spec as rspec

    out = tmp_path / "hk"
    out.mkdir()
    bb = "/bin/busybox"  # in the host and in the container rootfs

    def hook(kind: str, where: str) -> dict:
        return {"path": bb, "args": ["busybox", "sh", "-c", f"{bb} cat > {where}/{kind}.json"]}

    spec = rspec.default_spec(["sh", "-c", "echo run > /hk/process"], "rootfs", binds=[(str(out), "/hk", False)])
    spec["hooks"] = {"createRuntime": [hook("createRuntime", str(out))],
                     "createContainer": [hook("createContainer", str(out))],
                     "startContainer": [hook("startContainer", "/hk")],
                     "poststart": [hook("poststart", str(out))], "poststop": [hook("poststop", str(out))]}
    cid = new_id()
    c = rt.create(cid, str(bundle_of(tmp_path, busybox_rootfs)), spec, root=str(tmp_path / "state"),
                  seccomp_cache=str(tmp_path.parent / "sc"))
    for kind in ("createRuntime", "createContainer"):
        st = json.loads((out / f"{kind}.json").read_text())
        assert (st["id"], st["pid"], st["status"]) == (cid, c.pid, "created")
    assert not (out / "startContainer.json").exists()
    c.start()
    assert c.wait()[0] == 0
    assert (out / "startContainer.json").exists() and (out / "process").read_text() == "run\n"
    assert json.loads((out / "poststart.json").read_text())["id"] == cid
    c.delete()
    assert json.loads((out / "poststop.json").read_text())["status"] == "stopped"


def test_failing_create_hook_fails_create(tmp_path: Path, busybox_rootfs: Path) -> None:
    from pallet.errors import PalletError
    from pallet.runtime import container as rt
    from pallet.runtime import spec as rspec

    spec = rspec.default_spec(["true"], "rootfs")
    spec["hooks"] = {"createRuntime": [{"path": "/bin/busybox", "args": ["busybox", "false"]}]}
    with pytest.raises(PalletError, match="createRuntime hook /bin/busybox failed"):
        rt.create(new_id(), str(bundle_of(tmp_path, busybox_rootfs)), spec, root=str(tmp_path / "state"),
                  start=True, seccomp_cache=str(tmp_path.parent / "sc"))


def test_join_pid_and_net_namespaces_by_path(tmp_path: Path, busybox_rootfs: Path) -> None:
    """A second container in the first one's pid and network namespaces (``--pid/--network container:``)."""
    from runtime_util import run

    a = _create(tmp_path, busybox_rootfs, ["sleep", "30"], start=True)
    try:
        from pallet.runtime import spec as rspec

        spec = rspec.default_spec(["sh", "-c", "cat /proc/1/cmdline; echo; readlink /proc/self/ns/net"], "rootfs")
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] in ("pid", "network"):
                ns["path"] = f"/proc/{a.pid}/ns/{'net' if ns['type'] == 'network' else 'pid'}"
        (tmp_path / "b").mkdir()
        r = run(tmp_path / "b", busybox_rootfs, [], spec=spec)
        assert r.code == 0, r.err
        cmd, net = r.out.split("\n")[:2]
        assert cmd.replace("\0", " ").strip() == "sleep 30"
        assert net == os.readlink(f"/proc/{a.pid}/ns/net")
        assert os.readlink("/proc/self/ns/pid") != os.readlink(f"/proc/{a.pid}/ns/pid")  # we went back
    finally:
        a.delete(force=True)


def test_sysctl_and_oom_score_adj(tmp_path: Path, busybox_rootfs: Path) -> None:
    from runtime_util import run

    from pallet.runtime import spec as rspec

    spec = rspec.default_spec(["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/self/oom_score_adj"], "rootfs")
    spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    spec["process"]["oomScoreAdj"] = 500
    r = run(tmp_path, busybox_rootfs, [], spec=spec)
    assert r.out.split() == ["1", "500"], r.err


def test_create_from_a_multithreaded_caller(tmp_path: Path, busybox_rootfs: Path) -> None:
    """Another thread is running (an API server's pool, say): the container is still our child."""
    import threading

    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        assert len(os.listdir("/proc/self/task")) > 1
        c = _create(tmp_path, busybox_rootfs, ["sh", "-c", "exit 9"], start=True)
        try:
            assert os.getppid() != c.pid and open(f"/proc/{c.pid}/stat").read().split()[3] == str(os.getpid())
            assert c.wait() == (9, False)
        finally:
            c.delete(force=True)
    finally:
        stop.set()
        t.join()


def test_join_pid_namespace_by_path_from_a_threaded_caller(tmp_path: Path, busybox_rootfs: Path) -> None:
    """The same join with another thread alive in the caller (the engine's monitor may have one):
    the clone goes through a helper process, which must enter the pid namespace itself (entered
    by the caller, the helper would be created inside it and report the wrong pid)."""
    import threading

    done = threading.Event()
    t = threading.Thread(target=done.wait, daemon=True)
    t.start()
    try:
        test_join_pid_and_net_namespaces_by_path(tmp_path, busybox_rootfs)
    finally:
        done.set()
        t.join(5)
