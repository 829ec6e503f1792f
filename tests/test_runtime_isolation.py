"""The built-in runtime's isolation, checked from inside a busybox container the way a user
would (/proc/self/status, /proc/self/mounts, /dev, id, ...). Real kernel, as root."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from runtime_util import DOCKER_CAPS, copy_rootfs, no_leaks, run  # noqa: F401

pytestmark = [pytest.mark.privileged, pytest.mark.usefixtures("no_leaks")]


def _status(out: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def test_capabilities_are_dockers_default(tmp_path: Path, busybox_rootfs: Path) -> None:
    r = run(tmp_path, busybox_rootfs, ["cat", "/proc/self/status"])
    st = _status(r.out)
    assert r.code == 0, r.err
    for k in ("CapEff", "CapPrm", "CapBnd"):
        assert st[k] == DOCKER_CAPS, (k, st[k])
    assert st["CapAmb"] == "0000000000000000"


def test_cap_add_drop_and_non_root_user(tmp_path: Path, busybox_rootfs: Path) -> None:
    r = run(tmp_path, busybox_rootfs, ["cat", "/proc/self/status"], cap_add=["NET_ADMIN"], cap_drop=["CHOWN"])
    st = _status(r.out)
    assert int(st["CapEff"], 16) == (int(DOCKER_CAPS, 16) | 1 << 12) & ~1
    r = run(tmp_path, busybox_rootfs, ["sh", "-c", "id; grep Cap /proc/self/status"], uid=65534, gid=65534,
            additional_gids=[0])
    assert "uid=65534(nobody) gid=65534(nogroup) groups=0(root)" in r.out, r.out
    st = _status(r.out.split("\n", 1)[1])
    assert st["CapEff"] == "0000000000000000" and st["CapBnd"] == DOCKER_CAPS


def test_seccomp_filter_is_loaded(tmp_path: Path, busybox_rootfs: Path) -> None:
    r = run(tmp_path, busybox_rootfs, ["grep", "Seccomp:", "/proc/self/status"])
    assert r.out.split() == ["Seccomp:", "2"]
    r = run(tmp_path, busybox_rootfs, ["grep", "Seccomp:", "/proc/self/status"], seccomp="unconfined")
    assert r.out.split() == ["Seccomp:", "0"]


def test_seccomp_docker_format_profile_denies(tmp_path: Path, busybox_rootfs: Path) -> None:
    from pallet.runtime import seccomp

    prof = seccomp.default_profile()
    for rule in prof["syscalls"]:
        rule["names"] = [n for n in rule.get("names", []) if n not in ("mkdir", "mkdirat")]
    r = run(tmp_path, busybox_rootfs, ["mkdir", "/tmp/x"], seccomp=prof)
    assert r.code != 0 and "Operation not permitted" in r.err


def test_mounts(tmp_path: Path, busybox_rootfs: Path) -> None:
    r = run(tmp_path, busybox_rootfs, ["cat", "/proc/self/mounts"])
    m = {line.split()[1]: line.split() for line in r.out.splitlines()}
    assert m["/proc"][2] == "proc"
    assert m["/dev"][2] == "tmpfs" and "nosuid" in m["/dev"][3]
    assert m["/dev/pts"][2] == "devpts" and "ptmxmode=666" in m["/dev/pts"][3]
    assert m["/dev/shm"][2] == "tmpfs" and "size=65536k" in m["/dev/shm"][3]
    assert m["/dev/mqueue"][2] == "mqueue"
    assert m["/sys"][2] == "sysfs" and m["/sys"][3].startswith("ro")
    assert m["/sys/fs/cgroup"][3].startswith("ro")
    assert m["/proc/sys"][3].startswith("ro")
    assert m["/sys/firmware"][2] == "tmpfs"


def test_dev_listing(tmp_path: Path, busybox_rootfs: Path) -> None:
    r = run(tmp_path, busybox_rootfs, ["ls", "-1", "/dev"])
    core = ["core"] if os.path.exists("/proc/kcore") else []
    assert r.out.split() == sorted([*core, "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm",
                                    "stderr", "stdin", "stdout", "tty", "urandom", "zero"])
    r = run(tmp_path, busybox_rootfs, ["sh", "-c", "ls -l /dev/null /dev/zero; readlink /dev/fd; readlink /dev/stdout"])
    assert "1,   3" in r.out and "1,   5" in r.out and "/proc/self/fd\n/proc/self/fd/1" in r.out


def test_id_pid1_hostname_env_cwd(tmp_path: Path, busybox_rootfs: Path) -> None:
    r = run(tmp_path, busybox_rootfs, ["sh", "-c", "id; echo $$; hostname; echo $FOO; pwd; echo $HOME"],
            hostname="box1", env=["FOO=bar"], cwd="/tmp")
    assert r.out.split("\n")[:6] == ["uid=0(root) gid=0(root) groups=0(root)", "1", "box1", "bar", "/tmp", "/root"]


def test_proc_sys_is_read_only_and_paths_masked(tmp_path: Path, busybox_rootfs: Path) -> None:
    r = run(tmp_path, busybox_rootfs, ["sh", "-c", "echo 1 > /proc/sys/kernel/domainname"])
    assert r.code != 0 and "Read-only file system" in r.err
    r = run(tmp_path, busybox_rootfs, ["sh", "-c", "wc -c < /proc/keys; wc -c < /proc/timer_list; ls /sys/firmware | wc -l; "
                                       "test -e /proc/kcore && wc -c < /proc/kcore || echo 0"])
    assert r.out.split() == ["0", "0", "0", "0"]


def test_read_only_rootfs(tmp_path: Path, busybox_rootfs: Path) -> None:
    r = run(tmp_path, busybox_rootfs, ["touch", "/x"], read_only=True)
    assert r.code != 0 and "Read-only file system" in r.err
    r = run(tmp_path, busybox_rootfs, ["touch", "/tmp/x"], read_only=True, tmpfs={"/tmp": "size=1m"})
    assert r.code == 0, r.err


def test_memory_limit_oom_kill_detected(tmp_path: Path, busybox_rootfs: Path) -> None:
    r = run(tmp_path, busybox_rootfs, ["tail", "/dev/zero"], memory=16 << 20, memory_swap=16 << 20)
    assert (r.code, r.oom) == (137, True)


def test_pids_limit_stops_fork_bomb(tmp_path: Path, busybox_rootfs: Path) -> None:
    # the bomb runs in an inner shell (sh exits when it cannot fork); then builtins only
    script = ("sh -c 'i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done'; "
              "read n < /sys/fs/cgroup/pids/pids.current; echo $n")
    r = run(tmp_path, busybox_rootfs, ["sh", "-c", script], pids_limit=10)
    assert "can't fork" in r.err
    assert int(r.out.split()[-1]) <= 10


def test_cpu_and_memory_limits_written(tmp_path: Path, busybox_rootfs: Path) -> None:
    r = run(tmp_path, busybox_rootfs, ["sh", "-c", "cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes "
                                       "cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us cpu/cpu.shares"],
            memory=64 << 20, cpus=0.5, cpu_shares=512)
    assert r.out.split() == [str(64 << 20), "50000", "100000", "512"]


def test_rlimits_clamped_to_hard_limit(tmp_path: Path, busybox_rootfs: Path) -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    r = run(tmp_path, busybox_rootfs, ["sh", "-c", "ulimit -n; ulimit -Hn"],
            rlimits=[{"type": "RLIMIT_NOFILE", "soft": 100, "hard": hard * 4}])
    assert r.out.split() == ["100", str(hard)]


def test_user_namespace_mapping(tmp_path: Path, busybox_rootfs: Path) -> None:
    # the mapped root must be able to reach the rootfs (as with runc): not under 0700 /tmp/pytest-of-root
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="pallet-userns-", dir="/tmp"))
    os.chmod(top, 0o755)
    try:
        _userns(tmp_path, copy_rootfs(busybox_rootfs, top / "rootfs"))
    finally:
        import shutil

        shutil.rmtree(top)


def _userns(tmp_path: Path, rootfs: Path) -> None:
    r = run(tmp_path, rootfs, ["sh", "-c", "id -u; cat /proc/self/uid_map; cat /proc/self/gid_map; echo $$"],
            userns=(0, 200000, 65536))
    assert r.code == 0, r.err
    lines = [line.split() for line in r.out.splitlines()]
    assert lines == [["0"], ["0", "200000", "65536"], ["0", "200000", "65536"], ["1"]]


def test_bind_mounts_ro_and_rw(tmp_path: Path, busybox_rootfs: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "f").write_text("hello")
    r = run(tmp_path, busybox_rootfs, ["sh", "-c", "cat /ro/f; echo w > /rw/g; echo x > /ro/h"],
            binds=[(str(ro), "/ro", True), (str(rw), "/rw", False)])
    assert r.out.startswith("hello") and "Read-only file system" in r.err
    assert (rw / "g").read_text() == "w\n" and not (ro / "h").exists()


def test_rootfs_overlay_stays_in_the_namespace(tmp_path: Path, busybox_rootfs: Path) -> None:
    from pallet.runtime.linux.mounts import RootfsOverlay

    up, work, empty = tmp_path / "upper", tmp_path / "work", tmp_path / "emptyroot"
    for d in (up, work, empty):
        d.mkdir()
    ov = RootfsOverlay([str(busybox_rootfs)], str(up), str(work))
    r = run(tmp_path, empty, ["sh", "-c", "echo data > /etc/new; grep ' / ' /proc/self/mounts"],
            create_kw={"rootfs_overlay": ov})
    assert r.code == 0, r.err
    assert r.out.split()[2] == "overlay"
    assert (up / "etc" / "new").read_text() == "data\n"
    assert not (busybox_rootfs / "etc" / "new").exists() and not os.listdir(empty)


def test_writable_copy_of_rootfs(tmp_path: Path, busybox_rootfs: Path) -> None:
    root = copy_rootfs(busybox_rootfs, tmp_path / "rootfs-copy")
    r = run(tmp_path, root, ["sh", "-c", "echo hi > /root/f"])
    assert r.code == 0 and (root / "root" / "f").read_text() == "hi\n"


PARITY = ("grep -E '^(Cap|Seccomp:|NoNewPrivs)' /proc/self/status; echo --; ls /dev; echo --; "
          "awk '{print $2}' /proc/self/mounts | sort; echo --; id; echo $$; cut -d' ' -f5,6 /proc/self/stat; umask")


@pytest.mark.interop
def test_same_view_as_docker(tmp_path: Path, busybox_rootfs: Path, dockerd: dict[str, str]) -> None:
    """Docker's defaults, compared on a real dockerd: caps, seccomp, /dev, mount points, id."""
    import subprocess

    d = subprocess.run(["docker", "run", "--pull", "never", "--rm", "--network", "none", "busybox:latest", "sh", "-c", PARITY],
                       capture_output=True, text=True, env=dockerd, timeout=120)
    assert d.returncode == 0, d.stderr
    ours = run(tmp_path, busybox_rootfs, ["sh", "-c", PARITY]).out.split("--\n")
    theirs = d.stdout.split("--\n")
    assert ours[0] == theirs[0]  # capability sets, NoNewPrivs, Seccomp mode and filter count
    assert ours[1] == theirs[1]  # /dev
    docker_only = {"/", "/etc/resolv.conf", "/etc/hostname", "/etc/hosts"}  # engine-level files
    assert set(ours[2].split()) - {"/"} == set(theirs[2].split()) - docker_only
    assert ours[3] == theirs[3]


def test_no_fd_of_the_caller_leaks(tmp_path: Path, busybox_rootfs: Path) -> None:
    leak = os.open("/etc/hostname", os.O_RDONLY)
    os.set_inheritable(leak, True)
    try:
        r = run(tmp_path, busybox_rootfs, ["sh", "-c", "ls -l /proc/$$/fd"])
    finally:
        os.close(leak)
    links = [line.split()[-1] for line in r.out.splitlines() if "->" in line]
    assert len(links) == 3 and "/etc/hostname" not in r.out, r.out  # stdin, stdout, stderr only


def test_no_new_privileges_and_ambient_caps(tmp_path: Path, busybox_rootfs: Path) -> None:
    from pallet.runtime import spec as rspec

    spec = rspec.default_spec(["grep", "-E", "^(Cap(Inh|Prm|Eff|Amb)|NoNewPrivs)", "/proc/self/status"], "rootfs",
                              uid=65534, gid=65534, no_new_privileges=True)
    nbs = ["CAP_NET_BIND_SERVICE"]
    spec["process"]["capabilities"].update(effective=nbs, permitted=nbs, inheritable=nbs, ambient=nbs)
    st = _status(run(tmp_path, busybox_rootfs, [], spec=spec).out)
    assert st["NoNewPrivs"] == "1"
    assert st["CapAmb"] == st["CapEff"] == st["CapPrm"] == st["CapInh"] == f"{1 << 10:016x}"


def test_default_signal_dispositions(tmp_path: Path, busybox_rootfs: Path) -> None:
    """Python ignores SIGPIPE: the container's program must not inherit that (`yes | head`)."""
    r = run(tmp_path, busybox_rootfs, ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"])
    assert _status(r.out) == {"SigBlk": "0000000000000000", "SigIgn": "0000000000000000"}


def test_devices_cgroup_denies_other_devices(tmp_path: Path, busybox_rootfs: Path) -> None:
    """mknod is allowed (Docker's "c *:* m"), opening a device outside the allowed list is not."""
    r = run(tmp_path, busybox_rootfs, ["sh", "-c", "mknod /tmp/mem c 1 1 && head -c1 /tmp/mem; "
                                       "head -c1 /dev/zero | wc -c"])
    assert "Operation not permitted" in r.err and r.out.split()[-1] == "1"


def test_spec_without_capabilities_keeps_them(tmp_path: Path, busybox_rootfs: Path) -> None:
    """No ``process.capabilities`` in the spec: left as they are (runc), not dropped to none."""
    from pallet.runtime import spec as rspec

    spec = rspec.default_spec(["grep", "^CapEff", "/proc/self/status"], "rootfs", seccomp="unconfined")
    del spec["process"]["capabilities"]
    ours = open("/proc/self/status").read().split("CapEff:")[1].split()[0]
    assert _status(run(tmp_path, busybox_rootfs, [], spec=spec).out)["CapEff"] == ours


def test_privileged_gets_what_the_host_has(tmp_path: Path, busybox_rootfs: Path) -> None:
    """--privileged: every capability the host can give (CAP_SYS_RESOURCE is missing here, so it
    is clamped away instead of failing), no seccomp, no masked paths, /sys writable."""
    r = run(tmp_path, busybox_rootfs, ["sh", "-c", "grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status; "
                                       "grep ' /sys ' /proc/self/mounts; wc -c < /proc/timer_list"], privileged=True)
    st = _status(r.out)
    host = open("/proc/self/status").read().split("CapBnd:")[1].split()[0]
    assert st["CapEff"] == st["CapBnd"] == host and st["Seccomp"] == "0"
    assert " rw," in r.out.splitlines()[3] and int(r.out.split()[-1]) > 0
