"""``--group-add`` (run/create; HostConfig.GroupAdd): supplementary groups by name (the container's
/etc/group) or number, for the container's process and every exec, with the built-in runtime and
runc; a bad name fails create with moby's line, exit 125, nothing left."""
from __future__ import annotations

import json
import shutil

import pytest
from engine_helpers import bb_fixture  # noqa: F401  (bb_fixture registers the 'bb' fixture)

pytestmark = pytest.mark.privileged


def _groups(out: str) -> set[str]:
    return set(out.split())


def test_group_add_by_name_and_number(bb) -> None:  # type: ignore[no-untyped-def]
    r = bb("run", "--rm", "--network", "none", "--group-add", "nogroup", "--group-add", "1234", "busybox",
           "sh", "-c", "id -G; id")
    gids, ids = r.out.splitlines()
    assert _groups(gids) == {"0", "1234", "65534"}, r.out
    assert "65534(nogroup)" in ids and "1234" in ids and ids.startswith("uid=0(root) gid=0(root)"), r.out
    # with -u: the user's primary group stays, the added ones come on top; a gid of /etc/group by number
    r = bb("run", "--rm", "--network", "none", "-u", "nobody", "--group-add", "0", "busybox", "id", "-G")
    assert _groups(r.out) == {"65534", "0"}, r.out
    # a repeated group is listed once
    r = bb("run", "--rm", "--network", "none", "--group-add", "nogroup", "--group-add", "65534", "busybox",
           "sh", "-c", "grep Groups /proc/self/status")
    assert r.out.split()[1:] == ["0", "65534"], r.out


def test_group_add_reaches_exec_and_inspect(bb) -> None:  # type: ignore[no-untyped-def]
    cid = bb("create", "--name", "ga", "--network", "none", "--group-add", "nogroup", "--group-add", "777",
             "busybox", "sleep", "60").out.strip()
    assert json.loads(bb("inspect", "-f", "{{json .HostConfig.GroupAdd}}", "ga").out) == ["nogroup", "777"]
    bb("start", "ga")
    assert _groups(bb("exec", "ga", "id", "-G").out) == {"0", "777", "65534"}
    assert _groups(bb("exec", "-u", "nobody", "ga", "id", "-G").out) == {"65534", "777"}
    # a foreground run while the monitor listens (served by it: pallet.engine.served) gets them too
    r = bb("run", "--rm", "--network", "none", "--group-add", "nogroup", "busybox", "id", "-G")
    assert _groups(r.out) == {"0", "65534"}, r.out
    assert bb.fail("run", "--rm", "--group-add", "nosuch", "busybox", "true").rc == 125
    bb("rm", "-f", cid)
    # without the flag: GroupAdd null, as docker
    bb("create", "--name", "gb", "--network", "none", "busybox", "true")
    assert bb("inspect", "-f", "{{json .HostConfig.GroupAdd}}", "gb").out.strip() == "null"
    bb("rm", "gb")


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_group_add_with_runc(bb) -> None:  # type: ignore[no-untyped-def]
    r = bb("run", "--rm", "--runtime", "runc", "--network", "none", "--group-add", "nogroup",
           "--group-add", "4242", "busybox", "id", "-G")
    assert _groups(r.out) == {"0", "4242", "65534"}, r.out
    bb("run", "-d", "--name", "gr", "--runtime", "runc", "--network", "none", "--group-add", "4242",
       "busybox", "sleep", "60")
    assert _groups(bb("exec", "gr", "id", "-G").out) == {"0", "4242"}
    bb("rm", "-f", "gr")


def test_bad_group_fails_and_leaves_nothing(bb, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for verb in (["run", "--rm"], ["run", "-d"], ["create"]):
        r = bb.fail(*verb, "--name", "bad", "-v", "gvol:/data", "--group-add", "nosuch", "busybox", "true")
        assert r.rc == 125, r
        assert r.err.strip() == "Error: Unable to find group nosuch: no matching entries in group file", r.err
    r = bb.fail("create", "--group-add", "-5", "busybox", "true")
    assert r.rc == 125 and len(r.err.strip().splitlines()) == 1, r
    assert bb("ps", "-aq").out == ""
    assert bb("volume", "ls", "-q").out == ""  # the named volume was never created
    cdir = bb.root / "containers"
    assert not cdir.exists() or not list(cdir.iterdir())


def test_group_add_like_docker(bb, dockerd) -> None:  # type: ignore[no-untyped-def]
    """The same flags through the session's private dockerd (runc): the same `id` lines, and the
    same reason for an unknown group (docker reports it when the container starts)."""
    import subprocess

    def docker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "run", "--rm", "--pull", "never", "--network", "none", *args],
                              env=dockerd, capture_output=True, text=True, timeout=60)

    for flags in (["--group-add", "nogroup", "--group-add", "1234"], ["-u", "nobody", "--group-add", "0"],
                  ["-u", "nobody:nogroup", "--group-add", "root", "--group-add", "nogroup"]):
        want = docker(*flags, "busybox", "id")
        assert want.returncode == 0, want.stderr
        got = bb("run", "--rm", "--network", "none", *flags, "busybox", "id")
        assert got.out == want.stdout, (flags, got.out, want.stdout)
    want = docker("--group-add", "nosuch", "busybox", "true")
    assert want.returncode == 125 and "Unable to find group nosuch: no matching entries in group file" in want.stderr
    got = bb.fail("run", "--rm", "--group-add", "nosuch", "busybox", "true")
    assert got.rc == 125 and "Unable to find group nosuch: no matching entries in group file" in got.err
