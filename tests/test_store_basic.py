"""Store basics: blobs verified and atomic, images written/resolved/tagged/deleted, refcounts."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from store_util import BytesImage, BytesLayer, make_tar

from pallet.errors import Conflict, DataCorruption, NotFound
from pallet.oci.digest import Digest
from pallet.oci.reference import Reference
from pallet.store import Store


@pytest.fixture
def st(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "root", tmp_path / "run")
    yield s
    s.close()


def _tmp_empty(st: Store) -> bool:
    return os.listdir(st.paths.tmp) == []


def test_layout(st: Store) -> None:
    for p in (st.paths.blob_dir(), st.paths.layers, st.paths.tmp, st.paths.containers, st.paths.volumes,
              st.paths.run_containers, st.paths.db):
        assert p.exists(), p


def test_put_blob_verifies(st: Store) -> None:
    d, n = st.put_blob(b"hello")
    assert d == Digest.of(b"hello") and n == 5 and st.blob_path(d).read_bytes() == b"hello"
    d2, _ = st.put_blob(io.BytesIO(b"x" * 3_000_000), Digest.of(b"x" * 3_000_000), 3_000_000)
    assert st.has_blob(d2)
    with pytest.raises(DataCorruption):
        st.put_blob(io.BytesIO(b"evil"), Digest.of(b"good"))
    with pytest.raises(DataCorruption):
        st.put_blob(io.BytesIO(b"good!"), Digest.of(b"good"), 4)
    assert not st.has_blob(Digest.of(b"good")) and not st.has_blob(Digest.of(b"evil"))
    assert _tmp_empty(st)
    with pytest.raises(NotFound):
        st.blob_path(Digest.of(b"nothing"))


class _Failing(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        raise OSError(5, "I/O error")


def test_put_blob_read_error_leaves_nothing(st: Store) -> None:
    with pytest.raises(Exception, match="I/O error|EIO"):
        st.put_blob(_Failing(), Digest.of(b"q"))
    assert _tmp_empty(st) and st.blobs.all() == []


def _img(n: int, comp: str = "") -> BytesImage:
    tar = make_tar([("etc", "dir", None), ("etc/f", "file", f"content {n}".encode())])
    base = make_tar([("bin", "dir", None), ("bin/sh", "file", b"#!shell")])
    return BytesImage([BytesLayer(base, comp), BytesLayer(tar, comp)], {"created": f"2026-11-2{n}T00:00:00Z"})


@pytest.mark.parametrize("comp", ["", "gzip", "zstd"])
def test_write_resolve_delete(st: Store, comp: str) -> None:
    img = _img(1, comp)
    rec = st.write_image(img, [Reference.parse("busybox")],
                         [Reference.parse("busybox").with_digest(img.digest())])
    assert rec.id == img.config_digest() and rec.manifest_digest == img.digest()
    assert [str(r) for r in rec.repo_tags] == ["docker.io/library/busybox:latest"]
    assert rec.diff_ids == [x.diff_id() for x in img.layers()]
    assert rec.created == "2026-11-21T00:00:00Z" and rec.size == sum(len(x.tar) for x in img.layers())
    for text in ("busybox", "docker.io/library/busybox:latest", str(rec.id), rec.id.hex, rec.id.short,
                 rec.id.hex[:5], f"busybox@{img.digest()}"):
        assert st.resolve_image(text).id == rec.id, text
    lowers = st.lowerdirs(rec)
    assert (lowers[0] / "etc" / "f").read_bytes() == b"content 1" and (lowers[1] / "bin" / "sh").exists()
    # the stored image reads back identical
    view = st.image(rec)
    assert view.raw_manifest() == img.raw_manifest() and view.raw_config() == img.raw_config()
    with view.layers()[1].uncompressed() as f:
        assert f.read() == img.layers()[1].tar
    # a second image sharing the base layer
    rec2 = st.write_image(_img(2, comp), [Reference.parse("other:1")])
    assert st.usage().layers[str(rec.diff_ids[0])][1] == 2
    st.delete_image(rec.id)
    assert not st.has_layer(rec.diff_ids[1]) and st.has_layer(rec.diff_ids[0])
    assert not st.has_blob(rec.manifest_digest) and not st.has_blob(rec.id)
    with pytest.raises(NotFound):
        st.resolve_image("busybox")
    st.delete_image(rec2.id)
    assert st.paths.layers.exists() and os.listdir(st.paths.layers) == []
    assert st.blobs.all() == [] and st.check().ok and _tmp_empty(st)


def test_tags_and_prefixes(st: Store) -> None:
    a = st.write_image(_img(1), [Reference.parse("a:1")])
    b = st.write_image(_img(2), [Reference.parse("b:1")])
    st.tag(a.id, Reference.parse("x"))
    assert st.resolve_image("x").id == a.id
    st.tag(b.id, Reference.parse("x"))  # moves
    assert st.resolve_image("x").id == b.id
    assert st.untag(Reference.parse("x")) == b.id
    with pytest.raises(NotFound):
        st.untag(Reference.parse("x"))
    with pytest.raises(NotFound):
        st.resolve_image("nosuch")
    common = os.path.commonprefix([a.id.hex, b.id.hex])
    if common:
        with pytest.raises(Conflict):
            st.resolve_image(common)
    assert {r.id for r in st.list_images()} == {a.id, b.id}
    # writing the same image again only adds names
    again = st.write_image(_img(1), [Reference.parse("a:2")])
    assert again.id == a.id and {str(r) for r in again.repo_tags} == {"docker.io/library/a:1",
                                                                       "docker.io/library/a:2"}


def test_diff_id_mismatch_in_config_leaves_nothing(st: Store) -> None:
    good = BytesLayer(make_tar([("f", "file", b"1")]))
    bad = BytesLayer(make_tar([("g", "file", b"2")]), diff_id=Digest.of(b"not the tar"))
    with pytest.raises(DataCorruption):
        st.write_image(BytesImage([good, bad]))
    assert os.listdir(st.paths.layers) == [] and st.blobs.all() == [] and _tmp_empty(st)
    assert st.list_images() == []


def test_failed_write_inside_outer_shared_lock(st: Store) -> None:
    """put_blob then write_image under one shared lock: a failure raises the real error."""
    bad = BytesLayer(make_tar([("g", "file", b"2")]), diff_id=Digest.of(b"not the tar"))
    with st.lock.shared():
        st.put_blob(b"config-ish")
        with pytest.raises(DataCorruption):
            st.write_image(BytesImage([bad]))
    assert st.check().ok


def test_corrupt_database_is_one_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    Store.open(root, tmp_path / "run").close()
    for f in root.glob("db.sqlite*"):
        f.unlink()
    (root / "db.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(DataCorruption, match="store database .*db.sqlite"):
        Store.open(root, tmp_path / "run")
