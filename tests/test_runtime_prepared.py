"""A container prepared ahead (pallet.runtime.prepared): ``create`` of its id hands it the process
when the spec matches in every part applied ahead, and starts the usual way otherwise, with
nothing of the prepared one left (process, mount points in the upper dir); nothing leaks."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from runtime_util import new_id, no_leaks  # noqa: F401

from pallet.errors import CommandNotExecutable, CommandNotFound

pytestmark = [pytest.mark.privileged, pytest.mark.usefixtures("no_leaks")]


def _setup(tmp_path: Path, rootfs: Path):  # type: ignore[no-untyped-def]
    from pallet.runtime.linux.mounts import RootfsOverlay

    b = tmp_path / "bundle"
    (b / "rootfs").mkdir(parents=True)
    (tmp_path / "upper").mkdir()
    (tmp_path / "work").mkdir()
    return str(b), RootfsOverlay([str(rootfs)], str(tmp_path / "upper"), str(tmp_path / "work"))


def _run(tmp_path: Path, cid: str, bundle: str, spec: dict, ov):  # type: ignore[no-untyped-def]
    from pallet.runtime import container as rt

    with open(tmp_path / "out", "wb") as o, open(os.devnull, "rb") as i:
        c = rt.create(cid, bundle, spec, root=str(tmp_path / "state"), start=True, rootfs_overlay=ov,
                      stdio=(i.fileno(), o.fileno(), o.fileno()), seccomp_cache=str(tmp_path.parent / "sc"))
    try:
        code, _ = c.wait()
    finally:
        c.delete(force=True)
    return c, code, (tmp_path / "out").read_text()


def _prepare(tmp_path: Path, cid: str, bundle: str, spec: dict, ov, **kw):  # type: ignore[no-untyped-def]
    from pallet.runtime import prepared

    assert prepared.eligible(spec)
    p = prepared.prepare(cid, bundle, spec, root=str(tmp_path / "state"), rootfs_overlay=ov,
                         seccomp_cache=str(tmp_path.parent / "sc"), **kw)
    prepared.offer(p)
    assert p.ready()
    return p


def test_used_when_only_the_process_differs(tmp_path: Path, busybox_rootfs: Path) -> None:
    from pallet.runtime import spec as rspec

    bundle, ov = _setup(tmp_path, busybox_rootfs)
    cid = new_id()
    p = _prepare(tmp_path, cid, bundle, rspec.default_spec(["true"], "rootfs", hostname="h1"), ov)
    spec = rspec.default_spec(["sh", "-c", "echo $X $(hostname) $$; grep -E '^(CapEff|Seccomp):' /proc/self/status"],
                              "rootfs", hostname="h1", env=["X=1"])
    c, code, out = _run(tmp_path, cid, bundle, spec, ov)
    assert (c.pid, p.used, code) == (p.pid, True, 0)
    assert out.splitlines() == ["1 h1 1", "CapEff:\t00000000a80425fb", "Seccomp:\t2"]
    # the filter loaded while it waited (seccomp_early), then no-new-privileges and another user
    cid = new_id()
    p = _prepare(tmp_path, cid, bundle, rspec.default_spec(["true"], "rootfs"), ov, seccomp_early=True)
    spec = rspec.default_spec(["grep", "-E", "^(Uid|CapEff|NoNewPrivs|Seccomp|Seccomp_filters):", "/proc/self/status"],
                              "rootfs", uid=65534, gid=65534, no_new_privileges=True)
    c, code, out = _run(tmp_path, cid, bundle, spec, ov)
    assert (c.pid, code) == (p.pid, 0)
    assert [ln.split()[1] for ln in out.splitlines()] == ["65534", "0000000000000000", "1", "2", "1"], out


@pytest.mark.parametrize("helper", ["python", "pallet-init"])
def test_the_last_steps_in_python_or_in_pallet_init(tmp_path: Path, busybox_rootfs: Path, helper: str) -> None:
    """Both finish the same way: user, groups, caps, no_new_privs, rlimits, cwd (made), umask,
    HOME, signals, stdio, the fds; and report a command not found / not executable the same."""
    import sys

    from pallet.runtime import spec as rspec

    init = os.path.join(os.path.dirname(sys.executable), "pallet-init")
    if helper == "pallet-init" and not os.access(init, os.X_OK):
        pytest.skip("native/pallet-init is not built (scripts/setup.sh)")
    kw = {"seccomp_early": True, "init_helper": init if helper == "pallet-init" else None}
    bundle, ov = _setup(tmp_path, busybox_rootfs)
    script = ("id; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters|SigIgn|SigBlk):' "
              "/proc/self/status; ulimit -n; pwd; umask; echo $HOME; ls /proc/self/fd | wc -l; echo $X")
    spec = rspec.default_spec(["sh", "-c", script], "rootfs", uid=65534, gid=65534, additional_gids=[65534, 10],
                              cwd="/made/here", env=["X=y z", "PATH=/bin"], no_new_privileges=True,
                              rlimits=[{"type": "RLIMIT_NOFILE", "soft": 500, "hard": 600}])
    spec["process"]["user"]["umask"] = 0o027
    for kind in ("ambient", "inheritable", "permitted", "effective"):  # (a non-root user has none by default)
        spec["process"]["capabilities"][kind] = ["CAP_KILL"]
    cid = new_id()
    p = _prepare(tmp_path, cid, bundle, rspec.default_spec(["true"], "rootfs"), ov, **kw)
    assert p.helper == (helper == "pallet-init")
    c, code, out = _run(tmp_path, cid, bundle, spec, ov)
    assert (c.pid, code) == (p.pid, 0), out
    lines = out.splitlines()
    assert lines[0] == "uid=65534(nobody) gid=65534(nogroup) groups=10,65534(nogroup)", lines[0]
    st = dict(ln.split(":\t") for ln in lines[1:11])
    assert st["CapEff"] == st["CapPrm"] == st["CapInh"] == st["CapAmb"] == "0000000000000020", st
    assert st["CapBnd"] == "00000000a80425fb" and st["NoNewPrivs"] == "1" and st["Seccomp"] == "2"
    assert st["Seccomp_filters"] == "1" and st["SigIgn"] == st["SigBlk"] == "0000000000000000"
    assert lines[11:] == ["500", "/made/here", "0027", "/", "4", "y z"], lines[11:]
    cid = new_id()
    _prepare(tmp_path, cid, bundle, rspec.default_spec(["true"], "rootfs"), ov, **kw)
    assert _run(tmp_path, cid, bundle, rspec.default_spec(["sh", "-c", "echo $HOME"], "rootfs"), ov)[2] == "/root\n"
    for cmd, exc in ((["nosuchcmd"], CommandNotFound), (["/etc/passwd"], CommandNotExecutable)):
        cid = new_id()
        _prepare(tmp_path, cid, bundle, rspec.default_spec(["true"], "rootfs"), ov, **kw)
        with pytest.raises(exc) as e:
            _run(tmp_path, cid, bundle, rspec.default_spec(cmd, "rootfs"), ov)
        assert cmd[0] in str(e.value)


def test_started_the_usual_way_when_the_spec_differs(tmp_path: Path, busybox_rootfs: Path) -> None:
    from pallet.runtime import spec as rspec

    bundle, ov = _setup(tmp_path, busybox_rootfs)
    cid = new_id()
    p = _prepare(tmp_path, cid, bundle, rspec.default_spec(["true"], "rootfs", hostname="h1",
                                                          tmpfs={"/scratch": ""}, memory=64 << 20), ov)
    pid = p.pid
    assert os.path.isdir(tmp_path / "upper" / "scratch")  # its mount point
    c, code, out = _run(tmp_path, cid, bundle, rspec.default_spec(
        ["sh", "-c", "ls -d /scratch 2>&1; cat /sys/fs/cgroup/memory/memory.limit_in_bytes"], "rootfs", hostname="h1"), ov)
    assert c.pid != pid and not p.used and not os.path.exists(f"/proc/{pid}")
    assert code == 0 and "No such file" in out.splitlines()[0] and int(out.splitlines()[1]) > 1 << 40
    assert not os.path.exists(tmp_path / "upper" / "scratch")


def test_a_failed_exec_and_a_discard_leave_nothing(tmp_path: Path, busybox_rootfs: Path) -> None:
    from pallet.runtime import container as rt
    from pallet.runtime import prepared
    from pallet.runtime import spec as rspec
    from pallet.runtime.linux import cgroups

    bundle, ov = _setup(tmp_path, busybox_rootfs)
    cid = new_id()
    _prepare(tmp_path, cid, bundle, rspec.default_spec(["true"], "rootfs"), ov)
    with pytest.raises(CommandNotFound):
        _run(tmp_path, cid, bundle, rspec.default_spec(["nosuchcmd"], "rootfs"), ov)
    assert not (tmp_path / "state" / cid).exists() and not rt.state.list_ids(str(tmp_path / "state"))
    cid = new_id()
    p = _prepare(tmp_path, cid, bundle, rspec.default_spec(["true"], "rootfs"), ov)
    assert prepared.take(cid) is p and prepared.take(cid) is None
    pid = p.pid
    p.discard()
    p.discard()
    assert not os.path.exists(f"/proc/{pid}")
    cgroups.manager(None, cgroups.default_path(cid)).destroy()  # (the caller's)
    assert not prepared.eligible(rspec.default_spec(["sh"], "rootfs", terminal=True))
