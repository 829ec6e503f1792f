"""image/diff.py: an overlay upper dir -> an OCI layer tar (whiteouts, opaque dirs, hard links,
long and non-ASCII names, xattrs) readable by GNU tar and tarfile, and docker's A/C/D list."""
from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from pallet.image.diff import changes, engine_mountpoints, write_layer

EMPTY = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def members(upper: Path) -> dict[str, tarfile.TarInfo]:
    buf = io.BytesIO()
    write_layer(str(upper), buf)
    buf.seek(0)
    return {m.name.rstrip("/"): m for m in tarfile.open(fileobj=buf)}


def test_empty_upper_is_dockers_empty_layer(tmp_path: Path) -> None:
    buf = io.BytesIO()
    r = write_layer(str(tmp_path), buf)
    assert (r.diff_id, r.size, r.entries) == (EMPTY, 1024, 0)


def test_files_links_long_names(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a/f").write_text("hello" * 300)
    os.chmod(tmp_path / "a/f", 0o4751)
    os.link(tmp_path / "a/f", tmp_path / "a/g")
    os.symlink("/etc/passwd", tmp_path / "abs")
    deep = tmp_path / "a" / ("x" * 120) / "y"
    deep.mkdir(parents=True)
    (deep / ("z" * 90)).write_text("deep")
    (tmp_path / "ünï").write_text("u")
    ((tmp_path / "a") / ("L" * 200)).write_text("long")
    os.setxattr(tmp_path / "a/f", "user.k", b"v")
    m = members(tmp_path)
    assert m["a/f"].size == 1500 and m["a/f"].mode == 0o4751 and m["a/f"].pax_headers["SCHILY.xattr.user.k"] == "v"
    assert m["a/g"].islnk() and m["a/g"].linkname == "a/f"
    assert m["abs"].issym() and m["abs"].linkname == "/etc/passwd"
    assert f"a/{'x' * 120}/y/{'z' * 90}" in m and "ünï" in m and f"a/{'L' * 200}" in m
    out = tmp_path.parent / "tar-out.tar"
    buf = io.BytesIO()
    write_layer(str(tmp_path), buf)
    out.write_bytes(buf.getvalue())
    dest = tmp_path.parent / "extracted"
    dest.mkdir()
    subprocess.run(["tar", "-xf", str(out), "-C", str(dest)], check=True)
    assert (dest / "a/f").read_text() == "hello" * 300 and (dest / "ünï").read_text() == "u"


def test_same_tree_same_digest(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    a, b = io.BytesIO(), io.BytesIO()
    assert write_layer(str(tmp_path), a).diff_id == write_layer(str(tmp_path), b).diff_id
    assert a.getvalue() == b.getvalue()


@pytest.mark.privileged
def test_whiteouts_opaque_and_changes(tmp_path: Path) -> None:
    upper, lower = tmp_path / "upper", tmp_path / "lower"
    for d in (upper / "etc", upper / "new/dir", upper / "opq", lower / "etc", lower / "opq", lower / "same"):
        d.mkdir(parents=True)
    (lower / "etc/passwd").write_text("old")
    (lower / "etc/group").write_text("g")
    (lower / "opq/old").write_text("o")
    (upper / "etc/passwd").write_text("new")
    os.mknod(upper / "etc/group", 0o20000, 0)
    os.setxattr(upper / "opq", "trusted.overlay.opaque", b"y")
    (upper / "opq/fresh").write_text("f")
    (upper / "new/dir/file").write_text("n")
    (upper / "etc/hosts").write_text("")
    st = os.stat(lower / "etc")
    os.utime(upper / "etc", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod(upper / "etc", os.stat(lower / "etc").st_mode & 0o7777)
    m = members(upper)
    assert "etc/.wh.group" in m and m["etc/.wh.group"].isreg() and "etc/group" not in m
    assert "opq/.wh..wh..opq" in m and "opq/fresh" in m
    assert not any("trusted.overlay" in k for t in m.values() for k in t.pax_headers)
    skip = engine_mountpoints(str(upper))
    assert skip == {"etc/hosts"}
    got = [str(c) for c in changes(str(upper), [str(lower)], skip)]
    # docker's order and kinds: dirs equal to the lower one only appear as parents of A/D
    assert got == ["C /etc", "D /etc/group", "C /etc/passwd", "A /new", "A /new/dir", "A /new/dir/file",
                   "C /opq", "A /opq/fresh", "D /opq/old"]
