"""The image commands end to end through the real CLI on an isolated root: import (with
--change/-m, compressed and stdin input), images (filters, formats), tag, rmi, history,
inspect, image prune, system df/check, version, info."""
from __future__ import annotations

import gzip
import json
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged  # layer extraction keeps ownership and device nodes


def _import(pallet, tar: Path, ref: str = "bb:1", *extra: str) -> str:
    out = pallet("import", *extra, str(tar), ref).out.strip()
    assert out.startswith("sha256:") and len(out) == 71
    return out


def test_import_images_and_inspect(pallet, busybox_tar: Path) -> None:
    iid = _import(pallet, busybox_tar, "bb:1", "-c", 'CMD ["/bin/sh"]', "--change", "ENV A=1 B=\"x y\"",
                  "-c", "EXPOSE 80", "-c", "LABEL team=pallet", "-c", "WORKDIR /srv", "-m", "first")
    r = pallet("images")
    lines = r.out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    row = lines[1].split()
    assert row[:3] == ["bb", "1", iid[7:19]]
    assert row[-1].endswith("MB")
    info = json.loads(pallet("image", "inspect", "bb:1").out)
    assert len(info) == 1
    i = info[0]
    assert i["Id"] == iid and i["RepoTags"] == ["bb:1"] and i["Comment"] == "first"
    assert i["Config"]["Cmd"] == ["/bin/sh"] and i["Config"]["Env"] == ["A=1", "B=x y"]
    assert i["Config"]["ExposedPorts"] == {"80/tcp": {}} and i["Config"]["Labels"] == {"team": "pallet"}
    assert i["Config"]["WorkingDir"] == "/srv"
    assert i["RootFS"]["Type"] == "layers" and len(i["RootFS"]["Layers"]) == 1
    assert i["GraphDriver"]["Name"] == "overlay"
    assert Path(i["GraphDriver"]["Data"]["UpperDir"]).is_dir()
    assert Path(i["GraphDriver"]["Data"]["UpperDir"], "bin", "busybox").is_file()
    assert i["Os"] == "linux" and i["Architecture"] and i["Size"] > 1_000_000
    # pallet inspect == image inspect for images; a short ID resolves too
    assert json.loads(pallet("inspect", iid[7:19]).out)[0]["Id"] == iid
    assert pallet("inspect", "-f", "{{.Id}}", "bb:1").out.strip() == iid
    # name@sha256:<manifest digest>, and the normalised long form of the name
    assert pallet("inspect", "-f", "{{.Id}}", f"docker.io/library/bb@{i['Digest']}").out.strip() == iid
    assert pallet("inspect", "-f", "{{.Id}}", "docker.io/library/bb:1").out.strip() == iid


def test_import_compressed_and_stdin(pallet, busybox_tar: Path, tmp_path: Path) -> None:
    gz = tmp_path / "bb.tar.gz"
    gz.write_bytes(gzip.compress(busybox_tar.read_bytes(), 1))
    a = _import(pallet, gz, "bb:gz")
    b = pallet("import", "-", "bb:stdin", input=busybox_tar.read_bytes()).out.strip()
    ia = json.loads(pallet("image", "inspect", a).out)[0]
    ib = json.loads(pallet("image", "inspect", b).out)[0]
    assert ia["RootFS"]["Layers"] == ib["RootFS"]["Layers"]  # same diff-id whatever the input encoding
    assert ib["Comment"] == "Imported from -"
    # nothing left in the store's tmp dir
    assert not any((pallet.root / "tmp").iterdir())


def test_images_quiet_filters_format(pallet, busybox_tar: Path) -> None:
    iid = _import(pallet, busybox_tar, "bb:1", "-c", "LABEL tier=base")
    pallet("tag", "bb:1", "example.com/team/bb:2")
    q = pallet("images", "-q").out.split()
    assert q == [iid[7:19]]  # one ID even with two tags
    assert pallet("images", "-q", "--no-trunc").out.split() == [iid]
    refs = pallet("images", "--format", "{{.Repository}}:{{.Tag}}").out.split()
    assert sorted(refs) == ["bb:1", "example.com/team/bb:2"]
    j = [json.loads(x) for x in pallet("images", "--format", "json").out.splitlines()]
    assert {x["Repository"] for x in j} == {"bb", "example.com/team/bb"} and j[0]["ID"] == iid[7:19]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC", j[0]["CreatedAt"])  # Go's time.String()
    assert pallet("images", "--filter", "reference=bb").out.count("\n") == 2
    assert pallet("images", "--filter", "reference=example.com/*/*").out.count("\n") == 2
    assert pallet("images", "-f", "label=tier=base", "-q").out.split() == [iid[7:19]]
    assert pallet("images", "-f", "label=tier=other", "-q").out.strip() == ""
    assert pallet("images", "-f", "dangling=true", "-q").out.strip() == ""
    assert pallet("images", "bb").out.count("\n") == 2
    r = pallet.fail("images", "--filter", "color=red")
    assert "invalid filter" in r.err and r.err.count("\n") == 1


def test_tag_rmi_semantics(pallet, busybox_tar: Path) -> None:
    iid = _import(pallet, busybox_tar, "bb:1")
    pallet("tag", iid[7:19], "bb:2")
    pallet("tag", "bb:1", "busybox")  # docker.io/library/busybox:latest
    assert "busybox:latest" in json.loads(pallet("inspect", "busybox").out)[0]["RepoTags"]
    r = pallet.fail("rmi", iid[7:19])
    assert "must be forced" in r.err
    assert pallet("rmi", "bb:2").out.strip() == "Untagged: bb:2"
    assert pallet("rmi", "docker.io/library/busybox:latest").out.strip() == "Untagged: busybox:latest"
    layer = json.loads(pallet("inspect", "bb:1").out)[0]["RootFS"]["Layers"][0]
    out = pallet("rmi", "bb:1").out.splitlines()
    assert out == ["Untagged: bb:1", f"Deleted: {iid}", f"Deleted: {layer}"]  # one layer: chain ID = diff-id
    assert pallet("images", "-q").out.strip() == ""
    r = pallet.fail("rmi", "bb:1")
    assert r.err.strip() == "Error: No such image: bb:1"
    # force with several tags deletes all
    iid = _import(pallet, busybox_tar, "bb:1")
    pallet("tag", "bb:1", "bb:3")
    out = pallet("rmi", "-f", iid).out.splitlines()
    assert set(out[:2]) == {"Untagged: bb:1", "Untagged: bb:3"} and out[2:] == [f"Deleted: {iid}", f"Deleted: {layer}"]
    # the layer is gone from the store
    assert not any((pallet.root / "layers").iterdir())


def test_history(pallet, busybox_tar: Path) -> None:
    iid = _import(pallet, busybox_tar, "bb:1", "-m", "from a tarball")
    r = pallet("history", "bb:1")
    lines = r.out.splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert lines[1].startswith(iid[7:19]) and "from a tarball" in lines[1]
    assert pallet("history", "-q", "--no-trunc", "bb:1").out.split() == [iid]
    raw = pallet("history", "-H=false", "--format", "{{.Size}}", "bb:1").out.strip()
    assert int(raw) > 1_000_000
    at = json.loads(pallet("history", "--format", "json", "bb:1").out)["CreatedAt"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", at)  # RFC 3339, as docker history


def test_prune_df_check_version_info(pallet, busybox_tar: Path) -> None:
    iid = _import(pallet, busybox_tar, "bb:1")
    pallet("tag", "bb:1", "bb:2")
    pallet("rmi", "bb:1", "bb:2")  # gone entirely
    iid = _import(pallet, busybox_tar, "bb:1")
    pallet("tag", "bb:1", "keep:1")
    pallet("rmi", "bb:1")  # still tagged keep:1
    df = pallet("system", "df").out.splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[1].split()[:3] == ["Images", "1", "0"]
    # dangling prune removes nothing here, -a removes the tagged one
    r = pallet("image", "prune", "-f")
    assert "Total reclaimed space: 0B" in r.out
    r = pallet("image", "prune", "-a", "-f")
    assert f"deleted: {iid}" in r.out and "Total reclaimed space: 2." in r.out
    # without -f, a "no" answer keeps everything
    _import(pallet, busybox_tar, "")
    r = pallet("image", "prune", input="n\n")
    assert "Are you sure" in r.out and pallet("images", "-q").out.strip()
    r = pallet("image", "prune", input="y\n")
    assert "deleted: sha256:" in r.out
    assert "store ok" in pallet("system", "check").out
    assert "Version:" in pallet("version").out
    assert json.loads(pallet("info", "--format", "json").out)["Images"] == 0


def test_bad_arguments_one_line(pallet, busybox_tar: Path) -> None:
    for args, text in [
        (("import", str(busybox_tar), "Bad:Ref"), "invalid reference"),
        (("import", str(busybox_tar), "bb", "-c", "FROM scratch"), "not a valid change"),
        (("import", "/nonexistent.tar"), "no such file"),
        (("tag", "missing", "x:1"), "missing"),
        (("save", "-o", "/tmp/x.tar", "missing:1"), "missing"),
        (("image", "inspect", "missing"), "No such image"),
        (("history", "missing"), "missing"),
    ]:
        r = pallet.fail(*args)
        assert text.lower() in r.err.lower(), (args, r.err)
        assert r.err.count("\n") == 1, (args, r.err)


def test_save_refuses_terminal_and_cleans_temp(pallet, busybox_tar: Path, tmp_path: Path) -> None:
    _import(pallet, busybox_tar, "bb:1")
    out = tmp_path / "o"
    out.mkdir()
    r = pallet.fail("save", "-o", str(out / "x.tar"), "bb:1", "nope:1")
    assert list(out.iterdir()) == []
    assert "nope" in r.err
    # stdout to a pty is refused
    import os
    import pty

    m, s = pty.openpty()
    try:
        p = subprocess.run(pallet.argv("save", "bb:1"), stdout=s, stderr=subprocess.PIPE, env=pallet.env,
                           timeout=60)
    finally:
        os.close(s)
        os.close(m)
    assert p.returncode != 0 and b"terminal" in p.stderr


def test_system_check_finds_and_repairs(pallet, busybox_tar: Path) -> None:
    _import(pallet, busybox_tar, "bb:1")
    blobs = pallet.root / "blobs" / "sha256"
    big = max(blobs.iterdir(), key=lambda p: p.stat().st_size)
    with open(big, "r+b") as f:
        f.seek(100)
        f.write(b"X")
    r = pallet("system", "check", check=False)
    assert r.rc == 1 and "does not match its digest" in r.out
    assert r.err.count("\n") == 1 and "--repair" in r.err
    r = pallet("system", "check", "--repair")
    assert "repaired:" in r.out
    assert "store ok" in pallet("system", "check").out
    # the image that lost its content is gone; importing again works
    assert pallet("images", "-q").out.strip() == ""
    _import(pallet, busybox_tar, "bb:1")


def test_save_repository_and_load_renames(pallet, busybox_tar: Path, tmp_path: Path) -> None:
    a = _import(pallet, busybox_tar, "bb:1")
    b = _import(pallet, busybox_tar, "bb:2", "-c", "ENV B=1")
    _import(pallet, busybox_tar, "other:1", "-c", "ENV O=1")
    out = tmp_path / "bb.tar"
    pallet("save", "-o", str(out), "bb")  # no tag: every tag of the repository
    import tarfile

    with tarfile.open(out) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())
    assert sorted(t for m in manifest for t in m["RepoTags"]) == ["bb:1", "bb:2"]
    pallet("tag", "other:1", "bb:1")  # bb:1 now names another image
    lines = pallet("load", "-i", str(out)).out.splitlines()
    assert any(x.startswith("The image bb:1 already exists, renaming the old one with ID sha256:")
               for x in lines)
    assert "Loaded image: bb:1" in lines and "Loaded image: bb:2" in lines
    ids = {json.loads(pallet("inspect", n).out)[0]["Id"] for n in ("bb:1", "bb:2")}
    assert ids == {a, b}


def test_rmi_refuses_image_in_use(pallet, busybox_tar: Path) -> None:
    iid = _import(pallet, busybox_tar, "bb:1")
    pallet("create", "--name", "user1", "bb:1", "true")
    r = pallet.fail("rmi", "bb:1")
    assert "is using its referenced image" in r.err and r.err.count("\n") == 1
    assert pallet.fail("rmi", iid).rc != 0
    assert pallet("rmi", "-f", "bb:1").out.strip() == "Untagged: bb:1"  # untag only, as docker
    assert pallet("images", "-q", "--no-trunc").out.split() == [iid]
    assert "Total reclaimed space: 0B" in pallet("image", "prune", "-a", "-f").out
    pallet("rm", "user1")
    assert f"deleted: {iid}" in pallet("image", "prune", "-f").out


def test_images_before_since(pallet, busybox_tar: Path) -> None:
    import time

    old = _import(pallet, busybox_tar, "old:1")
    time.sleep(1.1)
    new = _import(pallet, busybox_tar, "new:1", "-c", "ENV N=1")
    assert pallet("images", "-q", "--no-trunc", "-f", "since=old:1").out.split() == [new]
    assert pallet("images", "-q", "--no-trunc", "-f", "before=new:1").out.split() == [old]
    # newest first
    assert pallet("images", "--format", "{{.Repository}}").out.split() == ["new", "old"]
    assert "missing" in pallet.fail("images", "-f", "since=missing:1").err


def test_system_df_counts_containers_and_volumes(pallet, busybox_tar: Path) -> None:
    """docker's figures: a stopped container's writable layer and an unused volume are reclaimable."""
    _import(pallet, busybox_tar, "bb:1")
    pallet("run", "--name", "dfc", "--network", "none", "-v", "dfvol:/data", "bb:1", "sh", "-c",
           "head -c 1000000 /dev/zero > /data/f; head -c 500000 /dev/zero > /big")
    try:
        rows = {r["Type"]: r for r in map(json.loads, pallet("system", "df", "--format", "json").out.splitlines())}
        assert rows["Images"]["TotalCount"] == "1" and rows["Images"]["Active"] == "1"
        c, v = rows["Containers"], rows["Local Volumes"]
        assert (c["TotalCount"], c["Active"], c["Size"], c["Reclaimable"]) == ("1", "0", "500kB", "500kB (100%)")
        assert (v["TotalCount"], v["Active"], v["Size"], v["Reclaimable"]) == ("1", "1", "1MB", "0B (0%)")
    finally:
        pallet("rm", "dfc")
    df = pallet("system", "df").out.splitlines()
    assert df[2].split() == ["Containers", "0", "0", "0B", "0B"]
    assert df[3].split() == ["Local", "Volumes", "1", "0", "1MB", "1MB", "(100%)"]


def test_global_root_options(pallet, busybox_tar: Path, tmp_path: Path) -> None:
    """--root/--runroot (podman's names) win over PALLET_ROOT/PALLET_RUNROOT; --log-level is checked."""
    root, run = tmp_path / "flag-root", tmp_path / "flag-run"
    g = ["--root", str(root), f"--runroot={run}", "--log-level", "debug"]
    iid = pallet(*g, "import", str(busybox_tar), "bb:1").out.strip()
    assert (root / "db.sqlite").is_file() and (root / "layers").is_dir()
    assert pallet(*g, "images", "-q", "--no-trunc").out.split() == [iid]
    assert pallet("images", "-q").out.strip() == ""  # the env's root (the fixture's) is untouched
    info = json.loads(pallet(*g, "info", "--format", "json").out)
    assert info["DockerRootDir"] == str(root) and info["RunRoot"] == str(run)
    r = pallet.fail("--log-level", "loud", "images")
    assert r.rc == 125 and "invalid choice" in r.err
