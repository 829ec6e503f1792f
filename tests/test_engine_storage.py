"""Volumes, bind mounts, cp, export, and bad input leaving nothing behind."""
from __future__ import annotations

import io
import json
import os
import tarfile

import pytest
from engine_helpers import bb_fixture, wait_until  # noqa: F401  (bb_fixture registers the 'bb' fixture)

pytestmark = pytest.mark.privileged


def test_volumes_outlive_containers_and_are_shared(bb) -> None:  # type: ignore[no-untyped-def]
    bb("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo hi > /data/f")
    assert bb("volume", "ls", "-q").out.split() == ["data"]
    bb("run", "-d", "--name", "w1", "-v", "data:/data", "busybox", "sleep", "30")
    bb("run", "-d", "--name", "w2", "--volumes-from", "w1", "busybox", "sleep", "30")
    bb("exec", "w2", "sh", "-c", "echo from2 >> /data/f")
    assert bb("exec", "w1", "cat", "/data/f").out == "hi\nfrom2\n"
    r = bb.fail("volume", "rm", "data")
    assert "in use" in r.err
    r = bb("run", "--rm", "-v", "data:/data:ro", "busybox", "sh", "-c", "touch /data/x", check=False)
    assert r.rc != 0 and "Read-only" in r.err
    bb("rm", "-f", "w1", "w2")
    # a new volume is first filled from the image's content at its path
    assert bb("run", "--rm", "-v", "etcvol:/etc", "busybox", "cat", "/etc/passwd").out.startswith("root:")
    info = json.loads(bb("volume", "inspect", "etcvol").out)[0]
    assert info["Driver"] == "local" and os.path.exists(os.path.join(info["Mountpoint"], "passwd"))
    # anonymous volumes go with rm -v
    bb("create", "--name", "anon", "-v", "/scratch", "busybox", "true")
    assert len(bb("volume", "ls", "-q").out.split()) == 3
    bb("rm", "-v", "anon")
    assert sorted(bb("volume", "ls", "-q").out.split()) == ["data", "etcvol"]
    bb("volume", "rm", "data", "etcvol")
    bb("volume", "create", "--label", "a=b", "named")
    assert bb("volume", "ls", "--filter", "label=a=b", "-q").out.split() == ["named"]
    bb("run", "--rm", "--network", "none", "-v", "named:/n", "busybox", "sh", "-c", "head -c 1000 /dev/zero > /n/z")
    out = bb("volume", "prune", "-f").out
    assert "named" in out and "Total reclaimed space: 1kB" in out
    assert bb("volume", "ls", "-q").out == ""
    # --mount type=volume (named: created, kept) and type=tmpfs (size, mode)
    r = bb("run", "--rm", "--mount", "type=volume,src=mv,dst=/mv", "--mount", "type=tmpfs,dst=/mt,tmpfs-size=1m,"
           "tmpfs-mode=1770", "busybox", "sh", "-c", "echo kept > /mv/f; stat -c %a /mt; grep ' /mt ' /proc/mounts")
    assert r.out.startswith("1770\n") and "size=1024k" in r.out
    assert bb("run", "--rm", "-v", "mv:/d:ro", "busybox", "cat", "/d/f").out == "kept\n"
    bb("volume", "rm", "mv")


def test_binds_tmpfs_mount_readonly(bb, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("A")
    r = bb("run", "--rm", "-v", f"{src}:/b:ro", "--tmpfs", "/t", "--mount", f"type=bind,src={src},dst=/m",
           "busybox", "sh", "-c", "cat /b/a; echo x > /m/new; grep ' /t ' /proc/mounts | cut -d' ' -f3")
    assert r.out == "Atmpfs\n" and (src / "new").read_text() == "x\n"
    r = bb("run", "--rm", "--read-only", "busybox", "sh", "-c", "touch /x", check=False)
    assert r.rc != 0 and "Read-only" in r.err


def test_cp_both_ways_and_export(bb, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bb("run", "-d", "--name", "box", "busybox", "sh", "-c", "ln -s /etc /evil; echo c > /inside; sleep 30")
    assert wait_until(lambda: bb("exec", "box", "ls", "/inside", check=False).rc == 0)
    (tmp_path / "h.txt").write_text("host")
    bb("cp", str(tmp_path / "h.txt"), "box:/tmp/")
    assert bb("exec", "box", "cat", "/tmp/h.txt").out == "host"
    bb("cp", "box:/inside", str(tmp_path / "out"))
    assert (tmp_path / "out").read_text() == "c\n"
    # a symlink in the container resolves inside the container, never to the host's /etc
    bb("cp", str(tmp_path / "h.txt"), "box:/evil/")
    assert bb("exec", "box", "cat", "/etc/h.txt").out == "host" and not os.path.exists("/etc/h.txt")
    bb("cp", "box:/evil", str(tmp_path / "link"))
    assert os.readlink(tmp_path / "link") == "/etc"
    bb("stop", "-t", "0", "box")
    bb("cp", "box:/tmp/h.txt", str(tmp_path / "back"))  # stopped: through its overlay
    assert (tmp_path / "back").read_text() == "host"
    data = bb.argv("export", "box")
    import subprocess

    tar = subprocess.run(data, env=bb.env, capture_output=True, check=True).stdout
    names = tarfile.open(fileobj=io.BytesIO(tar)).getnames()
    assert "bin/busybox" in names and "inside" in names and "tmp/h.txt" in names
    bb("export", "-o", str(tmp_path / "e.tar"), "box")
    assert tarfile.open(tmp_path / "e.tar").getnames() == names
    assert bb.fail("cp", "box:/nope", str(tmp_path)).rc != 0
    bb("rm", "box")


BAD = [
    (("run", "--rm", "--pull", "never", "nosuchimage", "true"), "No such image"),
    (("run", "--rm", "--memory", "12x", "busybox", "true"), "12x"),
    (("run", "--rm", "--cpus", "-1", "busybox", "true"), "CPUs"),
    (("run", "--rm", "--cap-add", "NOT_A_CAP", "busybox", "true"), "NOT_A_CAP"),
    (("run", "--rm", "-v", "/does/not/exist:/x", "busybox", "true"), "does not exist"),
    (("run", "--rm", "--restart", "sometimes", "busybox", "true"), "restart"),
    (("run", "--rm", "--runtime", "nope", "busybox", "true"), "runtime"),
    (("run", "--rm", "--security-opt", "bogus", "busybox", "true"), "security-opt"),
    (("run", "--rm", "--stop-signal", "NOPE", "busybox", "true"), "signal"),
    (("run", "--rm", "--pids-limit", "x", "busybox", "true"), "pids-limit"),
    (("run", "--rm", "-w", "relative", "busybox", "true"), "absolute"),
    (("run", "--rm", "-u", "nosuchuser", "busybox", "true"), "nosuchuser"),
    (("run", "--rm", "--network", "nonet", "busybox", "true"), "nonet"),
    (("run", "--rm", "--mount", "type=bind,src=/tmp,dst=/x,foo=bar", "busybox", "true"), "unexpected key 'foo'"),
    (("run", "--rm", "--mount", "type=tmpfs,dst=/x,tmpfs-size=abc", "busybox", "true"), "invalid size"),
    (("run", "--rm", "--mount", "type=tmpfs,dst=/x,tmpfs-mode=9", "busybox", "true"), "tmpfs-mode"),
    (("run", "--rm", "--mount", "type=volume,dst=/x,ro", "busybox", "true"), "anonymous"),
    (("run", "--rm", "-v", "vol1:/x", "--volumes-from", "nosuchctr", "busybox", "true"), "No such container"),
    (("exec", "nosuchctr", "true"), "No such container"),
    (("logs", "nosuchctr"), "No such container"),
]


def test_bad_input_leaves_nothing(bb) -> None:  # type: ignore[no-untyped-def]
    for args, text in BAD:
        r = bb.fail(*args)
        assert r.rc == 125, (args, r)
        assert text in r.err and len(r.err.strip().splitlines()) == 1, (args, r.err)
        assert bb("ps", "-aq").out == "", args
        assert bb("volume", "ls", "-q").out == "", args
    bb("run", "-d", "--name", "taken", "busybox", "sleep", "30")
    r = bb.fail("run", "--name", "taken", "busybox", "true")
    assert "already in use" in r.err
    r = bb.fail("rm", "taken")
    assert "running" in r.err
    r = bb.fail("volume", "rm", "nosuchvol")
    assert "no such volume" in r.err
    bb("rm", "-f", "taken")
    bb("create", "--name", "stopped", "busybox", "true")
    r = bb.fail("exec", "stopped", "true")
    assert "not running" in r.err
    bb("rm", "stopped")
    assert not list((bb.root / "containers").iterdir())
