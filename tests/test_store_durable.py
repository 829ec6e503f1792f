"""Deferred durability (store/durable.py): layers and layer blobs are published unsynced with a
per-boot mark, write_image syncs once and clears the marks before any row names them, and after
a reboot an unsynced layer/blob no row names counts as absent (replaced, never reused).

A reboot is simulated by giving the module another boot id and a later boot time: the
store code then sees the real files exactly as it would after a real crash-and-reboot
(minus the lost page cache, which is what the rule guards against)."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_util import BytesImage, BytesLayer, make_tar

from pallet.oci.reference import Reference
from pallet.store import Store, durable
from pallet.store.locks import FileLock


@pytest.fixture
def st(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "root", tmp_path / "run")
    yield s
    s.close()


@pytest.fixture
def reboot(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def go() -> None:
        monkeypatch.setattr(durable, "_boot", b"another-boot")
        monkeypatch.setattr(durable, "_btime", time.time() + 5)
    return go


def _img() -> BytesImage:
    base = make_tar([("bin", "dir", None), ("bin/sh", "file", b"#!shell")])
    top = make_tar([("etc", "dir", None), ("etc/f", "file", b"content")])
    return BytesImage([BytesLayer(base, "gzip"), BytesLayer(top)], {"created": "2026-11-28T00:00:00Z"})


def _marker(st: Store, layer: BytesLayer) -> Path:
    return st.paths.layer(layer.diff_id()) / "layer.json"


def test_add_layer_is_marked_and_write_image_clears(st: Store) -> None:
    img = _img()
    base = img.layers()[0]
    st.add_layer(base)
    if durable.state(_marker(st, base)) is None:
        pytest.skip("no user xattrs here: layers are synced before publishing instead")
    assert durable.state(_marker(st, base)) == durable.boot_id()
    assert durable.state(st.paths.blob(base.digest())) == durable.boot_id()
    assert st.has_layer(base.diff_id()) and st.has_blob(base.digest())  # same boot: trusted
    rec = st.write_image(img, [Reference.parse("durable:1")])
    for layer in img.layers():
        assert durable.state(_marker(st, layer)) is None
        assert durable.state(st.paths.blob(layer.digest())) is None
    assert durable.state(st.paths.blob(rec.id)) is None and durable.state(st.paths.blob(rec.manifest_digest)) is None
    assert st.check(deep=True).ok


def test_unsynced_layer_of_an_earlier_boot_is_replaced(st: Store, reboot) -> None:  # type: ignore[no-untyped-def]
    img = _img()
    top = img.layers()[1]
    st.add_layer(top)  # published, never synced, no row: then the machine "crashes"
    # what a crash may leave: the file data never reached the disk
    f = st.paths.layer_diff(top.diff_id()) / "etc" / "f"
    f.write_bytes(b"")
    reboot()
    assert not st.has_layer(top.diff_id()) and not st.has_blob(top.digest())
    rec = st.write_image(img, [Reference.parse("durable:1")])  # re-extracts it, does not reuse it
    assert (st.lowerdirs(rec)[0] / "etc" / "f").read_bytes() == b"content"
    assert st.has_layer(top.diff_id()) and st.check(deep=True).ok
    assert not [n for n in os.listdir(st.paths.tmp) if n.startswith("st-")]


def test_written_image_stays_trusted_after_a_reboot(st: Store, reboot) -> None:  # type: ignore[no-untyped-def]
    img = _img()
    rec = st.write_image(img, [Reference.parse("durable:1")])
    for layer in img.layers():  # as if clearing the marks had been lost in the crash
        os.setxattr(_marker(st, layer), durable.XATTR, durable.boot_id())
    reboot()
    assert all(st.has_layer(d) for d in rec.diff_ids)  # rows name them: synced before the rows
    assert all(st.has_blob(b.digest) for b in rec.layer_blobs)
    assert st.lowerdirs(rec) and st.resolve_image("durable:1").id == rec.id
    again = st.write_image(img, [Reference.parse("durable:2")])
    assert again.id == rec.id and st.check().ok


def test_garbage_of_an_earlier_boot_is_removed_by_repair(st: Store, reboot) -> None:  # type: ignore[no-untyped-def]
    layer = _img().layers()[1]
    st.add_layer(layer)
    reboot()
    rep = st.check(repair=True)
    assert rep.ok and not st.paths.layer(layer.diff_id()).exists() and not st.blobs.all()


def test_file_lock_depth_is_thread_safe(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "l.lock")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(2000):
                with lock.shared():
                    pass
        except BaseException as e:  # noqa: BLE001 (collected, asserted below)
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not lock.held
    with lock.exclusive():  # nothing left held: an exclusive lock is possible
        assert lock.held


def test_tmp_spreads_new_directories(st: Store) -> None:
    import fcntl
    import struct

    fd = os.open(st.paths.tmp, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = struct.unpack_from("i", fcntl.ioctl(fd, 0x80086601, bytes(8)))[0]
    except OSError:
        pytest.skip("this filesystem has no inode flags")
    finally:
        os.close(fd)
    assert flags & 0x00020000  # FS_TOPDIR_FL (chattr +T), see paths.spread_subdirs
