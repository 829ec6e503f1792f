"""pallet commit / pallet diff round trips: additions, changes, deletions (whiteouts) and
replaced directories (opaque), -c changes, -m/-a in the history, the committed image runs."""
from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from build_helpers import config, image_tree
from conftest import Pallet

pytestmark = pytest.mark.privileged

SCRIPT = ("rm /etc/group; rm -rf /root; mkdir /root; touch /root/new; mkdir -p /a/b; echo x > /a/b/f; "
          "echo changed >> /etc/passwd; ln -s /a/b/f /link; sleep 60")


@pytest.fixture
def p(tmp_path: Path, busybox_tar: Path) -> Pallet:
    pal = Pallet(tmp_path / "root", tmp_path / "run")
    pal("import", str(busybox_tar), "busybox")
    return pal


def test_diff_commit_roundtrip(p: Pallet) -> None:
    p("run", "-d", "--name", "c1", "busybox", "sh", "-c", SCRIPT)
    try:
        import time

        for _ in range(100):  # bounded wait for the script to have made its changes
            if "A /link" in p("diff", "c1").out:
                break
            time.sleep(0.05)
        lines = p("diff", "c1").out.splitlines()
        # dockerd 20.10 printed these kinds for the same script (its order is readdir order; ours sorted);
        # the hostname/hosts/resolv.conf mount points are not changes
        assert lines == ["A /a", "A /a/b", "A /a/b/f", "C /etc", "D /etc/group", "C /etc/passwd",
                         "A /link", "C /root", "A /root/new"]
        out = p("commit", "-m", "my message", "-a", "Jane <j@x>", "-c", 'CMD ["cat", "/a/b/f"]',
                "-c", "ENV X=1", "c1", "committed:v1").out
        assert out.strip().startswith("sha256:")
    finally:
        p("rm", "-f", "c1")
    assert p("run", "--rm", "committed:v1").out == "x\n"
    assert "root" not in p("run", "--rm", "committed:v1", "cat", "/etc/group", check=False).out
    cfg = config(p, "committed:v1")
    assert cfg["config"]["Cmd"] == ["cat", "/a/b/f"] and "X=1" in cfg["config"]["Env"]
    h = cfg["history"][-1]
    assert h["comment"] == "my message" and h["author"] == "Jane <j@x>" and "sleep 60" in h["created_by"]
    assert cfg["author"] == "Jane <j@x>" and len(cfg["rootfs"]["diff_ids"]) == 2
    rows = p("history", "--no-trunc", "committed:v1").out.splitlines()  # every commit: size, command
    assert rows[0].split()[:3] == ["IMAGE", "CREATED", "CREATED"] and len(rows) == 3
    assert "sleep 60" in rows[1] and "my message" in rows[1] and ("kB" in rows[1] or "MB" in rows[1])
    t = image_tree(p, "committed:v1")
    assert "/etc/group" not in t and set(k for k in t if k.startswith("/root")) == {"/root", "/root/new"}
    assert t["/link"].kind == "l" and t["/link"].link == "/a/b/f"
    assert "/etc/hosts" not in t and "/etc/hostname" not in t

    from pallet.oci.digest import Digest
    from pallet.store import Store

    with Store.open(p.root, p.runroot) as st:
        rec = st.resolve_image("committed:v1")
        with st.open_blob(Digest.parse(str(rec.layer_blobs[-1].digest))) as f, tarfile.open(fileobj=f) as tf:
            names = tf.getnames()
    assert "etc/.wh.group" in names and "root/.wh..wh..opq" in names


def test_commit_without_changes_is_an_empty_layer(p: Pallet) -> None:
    p("create", "--name", "c2", "busybox", "true")
    try:
        assert p("diff", "c2").out == ""
        p("commit", "c2", "same")
    finally:
        p("rm", "-f", "c2")
    cfg = config(p, "same")
    assert len(cfg["rootfs"]["diff_ids"]) == 1 and cfg["history"][-1]["empty_layer"] is True


def test_commit_changes_are_expanded_like_docker(p: Pallet) -> None:
    p("create", "--name", "c4", "busybox", "true")
    try:
        p("commit", "-c", "ENV A=1 B=$A", "-c", "ENV C=${A}2", "-c", "WORKDIR /w/$C", "-c", "CMD echo $A",
          "-c", 'ENTRYPOINT ["e"]', "-c", "USER ${U:-nobody}", "c4", "expanded")
    finally:
        p("rm", "-f", "c4")
    c = config(p, "expanded")["config"]
    # docker commit: substitution with the Env the earlier changes left (not later on the same
    # line), none in CMD; ENTRYPOINT after a CMD of the same commit keeps it
    assert [e for e in c["Env"] if e[0] in "ABC"] == ["A=1", "B=", "C=12"]
    assert (c["WorkingDir"], c["User"]) == ("/w/12", "nobody")
    assert c["Cmd"] == ["/bin/sh", "-c", "echo $A"] and c["Entrypoint"] == ["e"]


def test_commit_bad_change_leaves_nothing(p: Pallet) -> None:
    p("create", "--name", "c3", "busybox", "true")
    try:
        before = p("images", "-q").out
        r = p.fail("commit", "-c", "FROM x", "c3", "bad")
        assert "not a valid change command" in r.err.strip().splitlines()[-1]
        assert p("images", "-q").out == before
        r = p.fail("commit", "nosuchcontainer", "bad")
        assert "nosuchcontainer" in r.err
    finally:
        p("rm", "-f", "c3")
    assert list((p.root / "tmp").iterdir()) == []
