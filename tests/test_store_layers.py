"""Layer application (OCI image-layout layer.md): whiteouts and opaque dirs as overlayfs
understands them (proven with a real overlay mount), hard links, symlinks, device nodes, fifos,
xattrs, owners, modes, mtimes; compression; digest / diff-id verification leaving nothing behind."""
from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from store_util import BytesLayer, make_tar

from pallet.errors import DataCorruption, PalletError
from pallet.oci.digest import Digest
from pallet.store import Store


@pytest.fixture
def st(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store.open(tmp_path / "root", tmp_path / "run")
    yield s
    s.close()


def _empty(st: Store) -> bool:
    return not os.listdir(st.paths.tmp) and not os.listdir(st.paths.layers) and not st.blobs.all()


def _tar(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti, data = e if isinstance(e, tuple) else (e, None)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _ti(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.mtime = 1_600_000_000
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


@pytest.mark.privileged
def test_whiteouts_in_a_real_overlay_mount(st: Store, tmp_path: Path) -> None:
    lower = BytesLayer(make_tar([("a", "dir", None), ("a/gone", "file", b"1"), ("a/kept", "file", b"2"),
                                 ("b", "dir", None), ("b/old", "file", b"3"), ("c", "dir", None),
                                 ("c/x", "file", b"4")]))
    upper = BytesLayer(make_tar([("a", "dir", None), ("a/.wh.gone", "file", b""),
                                 ("b", "dir", None), ("b/.wh..wh..opq", "file", b""),
                                 ("b/new", "file", b"5"), (".wh.c", "file", b""),
                                 (".wh..wh.plnk.123", "file", b"")]))
    st.add_layer(lower)
    st.add_layer(upper)
    up = st.layer_dir(upper.diff_id())
    w = os.lstat(up / "a" / "gone")
    assert stat.S_ISCHR(w.st_mode) and w.st_rdev == 0
    assert os.getxattr(up / "b", "trusted.overlay.opaque") == b"y"
    assert not (up / ".wh..wh.plnk.123").exists() and not (up / "b" / ".wh..wh..opq").exists()
    merged = tmp_path / "merged"
    merged.mkdir()
    lowers = ":".join(str(st.layer_dir(x.diff_id())) for x in (upper, lower))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lowers}", str(merged)], check=True)
    try:
        assert sorted(os.listdir(merged)) == ["a", "b"]
        assert sorted(os.listdir(merged / "a")) == ["kept"]
        assert sorted(os.listdir(merged / "b")) == ["new"]
    finally:
        subprocess.run(["umount", str(merged)], check=True)


@pytest.mark.privileged
def test_metadata_links_nodes_xattrs(st: Store) -> None:
    f = _ti("bin/su", mode=0o4755, uid=0, gid=0, size=3)
    owned = _ti("home/u/file", mode=0o640, uid=1000, gid=1001, size=2, mtime=1_234_567_890)
    owned.pax_headers = {"mtime": "1234567890.123456789", "SCHILY.xattr.user.note": "hi",
                         "SCHILY.xattr.security.capability": "\x01\x00\x00\x02" + "\x00" * 16}
    sgid = _ti("usr/bin/wall", mode=0o2755, uid=0, gid=5, size=1)
    long = "d/" + "x" * 150 + "/" + "y" * 120
    tar = _tar([_ti("bin", tarfile.DIRTYPE), (f, b"su!"), _ti("home/u", tarfile.DIRTYPE, mode=0o700, uid=1000,
                                                              gid=1000),
                (owned, b"hi"), (sgid, b"w"),
                _ti("bin/su2", tarfile.LNKTYPE, linkname="bin/su"),
                _ti("bin/abs", tarfile.SYMTYPE, linkname="/bin/su"),
                _ti("bin/rel", tarfile.SYMTYPE, linkname="../bin/su", uid=7, gid=7),
                _ti("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
                _ti("dev/loop0", tarfile.BLKTYPE, devmajor=7, devminor=0, mode=0o660, gid=6),
                _ti("run/fifo", tarfile.FIFOTYPE, mode=0o600),
                (_ti(long, size=1), b"L"),
                _ti("ro", tarfile.DIRTYPE, mode=0o555, mtime=1_000_000_000),
                (_ti("ro/f", size=1), b"r")])
    layer = BytesLayer(tar)
    st.add_layer(layer)
    r = st.layer_dir(layer.diff_id())
    s = os.lstat(r / "bin/su")
    assert stat.S_IMODE(s.st_mode) == 0o4755 and (r / "bin/su").read_bytes() == b"su!"
    assert os.lstat(r / "bin/su2").st_ino == s.st_ino and s.st_nlink == 2
    o = os.lstat(r / "home/u/file")
    assert (o.st_uid, o.st_gid, stat.S_IMODE(o.st_mode)) == (1000, 1001, 0o640)
    assert o.st_mtime_ns == 1_234_567_890_123_456_789
    assert os.getxattr(r / "home/u/file", "user.note") == b"hi"
    assert os.getxattr(r / "home/u/file", "security.capability")[:4] == b"\x01\x00\x00\x02"
    h = os.lstat(r / "home/u")
    assert (h.st_uid, stat.S_IMODE(h.st_mode)) == (1000, 0o700)
    w = os.lstat(r / "usr/bin/wall")
    assert (w.st_gid, stat.S_IMODE(w.st_mode)) == (5, 0o2755)
    assert os.readlink(r / "bin/abs") == "/bin/su" and os.readlink(r / "bin/rel") == "../bin/su"
    assert os.lstat(r / "bin/rel").st_uid == 7
    n = os.lstat(r / "dev/null")
    assert stat.S_ISCHR(n.st_mode) and n.st_rdev == os.makedev(1, 3) and stat.S_IMODE(n.st_mode) == 0o666
    b = os.lstat(r / "dev/loop0")
    assert stat.S_ISBLK(b.st_mode) and b.st_rdev == os.makedev(7, 0) and b.st_gid == 6
    assert stat.S_ISFIFO(os.lstat(r / "run/fifo").st_mode)
    assert (r / long).read_bytes() == b"L"
    ro = os.lstat(r / "ro")
    assert stat.S_IMODE(ro.st_mode) == 0o555 and ro.st_mtime == 1_000_000_000
    assert os.lstat(r / "bin/su").st_mtime == 1_600_000_000


@pytest.mark.privileged
@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_gnu_and_ustar_formats(st: Store, fmt: int) -> None:
    name = "p/" + "q" * 90 + "/" + "r" * 90
    ti = _ti(name, size=2, uid=0o7777777 + 5 if fmt == tarfile.GNU_FORMAT else 0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        tf.addfile(ti, io.BytesIO(b"ok"))
        tf.addfile(_ti("p/l", tarfile.SYMTYPE, linkname="t" * 150 if fmt == tarfile.GNU_FORMAT else "t"))
    layer = BytesLayer(buf.getvalue())
    st.add_layer(layer)
    r = st.layer_dir(layer.diff_id())
    assert (r / name).read_bytes() == b"ok"
    if fmt == tarfile.GNU_FORMAT:
        assert os.lstat(r / name).st_uid == 0o7777777 + 5
        assert os.readlink(r / "p/l") == "t" * 150


def test_multi_member_gzip_and_zstd(st: Store) -> None:
    tar = make_tar([("f", "file", b"a" * 100_000), ("g", "file", os.urandom(50_000))])
    half = len(tar) // 2
    layer = BytesLayer(tar, "gzip")
    layer.blob = gzip.compress(tar[:half]) + gzip.compress(tar[half:])
    layer._digest = Digest.of(layer.blob)
    st.add_layer(layer)
    assert (st.layer_dir(layer.diff_id()) / "f").read_bytes() == b"a" * 100_000
    z = BytesLayer(make_tar([("z", "file", b"zz")]), "zstd")
    st.add_layer(z)
    assert (st.layer_dir(z.diff_id()) / "z").read_bytes() == b"zz"
    assert st.has_blob(z.digest()) and st.blob_path(z.digest()).read_bytes() == z.blob


@pytest.mark.parametrize("comp", ["", "gzip", "zstd"])
def test_mismatches_leave_nothing(st: Store, comp: str) -> None:
    tar = make_tar([("d", "dir", None), ("d/f", "file", b"data" * 1000)])
    bad_digest = BytesLayer(tar, comp, digest=Digest.of(b"other"))
    with pytest.raises(DataCorruption, match="digest mismatch"):
        st.add_layer(bad_digest)
    assert _empty(st)
    bad_diff = BytesLayer(tar, comp, diff_id=Digest.of(b"other"))
    with pytest.raises(DataCorruption, match="diff-id mismatch" if comp else "digest mismatch|diff-id"):
        st.add_layer(bad_diff)
    assert _empty(st)
    good = BytesLayer(tar, comp)
    good.blob = good.blob[:-7]  # truncated blob; digest names the full one
    with pytest.raises(DataCorruption):
        st.add_layer(good)
    assert _empty(st)


def test_corrupt_compressed_stream(st: Store) -> None:
    tar = make_tar([("f", "file", os.urandom(200_000))])
    layer = BytesLayer(tar, "gzip")
    blob = bytearray(layer.blob)
    blob[len(blob) // 2] ^= 0xFF
    layer.blob = bytes(blob)
    layer._digest = Digest.of(layer.blob)
    with pytest.raises(DataCorruption):
        st.add_layer(layer)
    assert _empty(st)


def test_add_layer_is_idempotent_and_restores_blob(st: Store) -> None:
    layer = BytesLayer(make_tar([("f", "file", b"1")]), "gzip")
    st.add_layer(layer)
    st.add_layer(layer)
    st.blobs.remove(layer.digest())
    st.add_layer(layer)  # the layer is there; only the blob is stored again
    assert st.has_blob(layer.digest()) and st.has_layer(layer.diff_id())


@pytest.mark.privileged
def test_full_disk_is_one_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)], check=True)
    try:
        with Store.open(small / "root", tmp_path / "run") as st:
            for comp in ("", "gzip"):
                layer = BytesLayer(make_tar([("big", "file", os.urandom(2_500_000))]), comp)
                with pytest.raises(PalletError, match="No space left on device") as ei:
                    st.add_layer(layer)
                assert "\n" not in str(ei.value)
                assert _empty(st)
            with pytest.raises(PalletError, match="No space left on device"):
                st.put_blob(os.urandom(4_000_000))
            assert _empty(st)
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_compression_is_sniffed_not_trusted(st: Store) -> None:
    """A blob labelled gzip that is a plain tar (and the reverse) is still read correctly."""
    plain = BytesLayer(make_tar([("p", "file", b"plain")]))
    plain._mt = "application/vnd.oci.image.layer.v1.tar+gzip"
    st.add_layer(plain)
    assert (st.layer_dir(plain.diff_id()) / "p").read_bytes() == b"plain"
    z = BytesLayer(make_tar([("z", "file", b"zstd")]), "zstd")
    z._mt = "application/vnd.oci.image.layer.v1.tar"
    st.add_layer(z)
    assert (st.layer_dir(z.diff_id()) / "z").read_bytes() == b"zstd"


@pytest.mark.privileged
def test_whiteout_applies_to_lower_layers_only(st: Store) -> None:
    """layer.md: files present in the same layer as a whiteout are not hidden by it, whichever
    comes first in the tar."""
    layer = BytesLayer(make_tar([("a", "dir", None), ("a/x", "file", b"kept"), ("a/.wh.x", "file", b""),
                                 ("a/.wh.y", "file", b""), ("a/y", "file", b"also kept")]))
    st.add_layer(layer)
    r = st.layer_dir(layer.diff_id())
    assert (r / "a/x").read_bytes() == b"kept" and (r / "a/y").read_bytes() == b"also kept"


def test_libarchive_xattrs(st: Store) -> None:
    ti = _ti("f", size=1)
    ti.pax_headers = {"LIBARCHIVE.xattr.user.a%3Db": "aGVsbG8"}  # name "user.a=b", value "hello"
    layer = BytesLayer(_tar([(ti, b"1")]))
    st.add_layer(layer)
    assert os.getxattr(st.layer_dir(layer.diff_id()) / "f", "user.a=b") == b"hello"
