"""Many processes, one store: two processes adding the same layer/image at once end with one
copy and a clean check(); a SIGKILL in the middle of add_layer leaves a store that the next
add and check() accept."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_util import BytesImage, BytesLayer, make_tar

from pallet.oci.reference import Reference
from pallet.store import Store

HERE = Path(__file__).resolve().parent

# A child that writes an image built from a tar file; SLOW makes its layer stream trickle so a
# test can kill it mid-extraction.
CHILD = r"""
import io, os, sys, time
sys.path.insert(0, sys.argv[4])  # the tests dir (store_util)
from store_util import BytesImage, BytesLayer
from pallet.oci.reference import Reference
from pallet.store import Store

class Slow(io.RawIOBase):
    def __init__(self, data): self.f = io.BytesIO(data)
    def readable(self): return True
    def readinto(self, b):
        time.sleep(0.05)
        return self.f.readinto(memoryview(b)[:65536])

root, run, tarpath, _tests, slow, go = sys.argv[1:7]
layer = BytesLayer(open(tarpath, "rb").read(), "gzip")
if slow == "1":
    data = layer.blob
    layer.compressed = lambda: Slow(data)
while time.time() < float(go):  # start together
    time.sleep(0.001)
with Store.open(root, run) as st:
    rec = st.write_image(BytesImage([layer]), [Reference.parse("same:1")])
    print(rec.id)
"""


def _tar_file(tmp_path: Path, files: int) -> Path:
    entries = [("d", "dir", None)] + [(f"d/f{i}", "file", os.urandom(2000)) for i in range(files)]
    p = tmp_path / "layer.tar"
    p.write_bytes(make_tar(entries))
    return p


def _child(tmp_path: Path, tar: Path, slow: bool, go: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "root"), str(tmp_path / "run"),
                             str(tar), str(HERE), "1" if slow else "0", str(go)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_processes_same_image(tmp_path: Path) -> None:
    tar = _tar_file(tmp_path, 1500)
    Store.open(tmp_path / "root", tmp_path / "run").close()
    go = time.time() + 0.5
    procs = [_child(tmp_path, tar, False, go) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()
    assert outs[0][0] == outs[1][0]
    with Store.open(tmp_path / "root", tmp_path / "run") as st:
        imgs = st.list_images()
        assert len(imgs) == 1 and len(os.listdir(st.paths.layers)) == 1
        assert st.usage().layers[str(imgs[0].diff_ids[0])][1] == 1
        rep = st.check()
        assert rep.ok and not rep.garbage, rep
        assert len(os.listdir(st.lowerdirs(imgs[0])[0] / "d")) == 1500


def test_sigkill_mid_add_layer(tmp_path: Path) -> None:
    tar = _tar_file(tmp_path, 400)
    Store.open(tmp_path / "root", tmp_path / "run").close()
    p = _child(tmp_path, tar, True, 0)
    tmpdir = tmp_path / "root" / "tmp"
    deadline = time.time() + 30
    while time.time() < deadline and not any(n.startswith("st-layer-") for n in os.listdir(tmpdir)):
        time.sleep(0.02)
    time.sleep(0.3)  # well inside the extraction
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    assert os.listdir(tmpdir), "the kill should have left temp files"
    with Store.open(tmp_path / "root", tmp_path / "run") as st:
        assert os.listdir(tmpdir) == []  # cleaned by open (no writer active)
        assert st.check().ok and os.listdir(st.paths.layers) == []
        layer = BytesLayer(tar.read_bytes(), "gzip")
        rec = st.write_image(BytesImage([layer]), [Reference.parse("after:kill")])
        assert st.check().ok
        assert len(os.listdir(st.lowerdirs(rec)[0] / "d")) == 400


def test_check_finds_and_repairs(tmp_path: Path) -> None:
    with Store.open(tmp_path / "root", tmp_path / "run") as st:
        a = st.write_image(BytesImage([BytesLayer(make_tar([("a", "file", b"1")]))]), [Reference.parse("a")])
        b = st.write_image(BytesImage([BytesLayer(make_tar([("b", "file", b"2")]), "gzip")]),
                           [Reference.parse("b")])
        assert st.check().ok
        # corrupt a's layer blob, break b's layer dir, add garbage
        st.blob_path(a.layer_blobs[0].digest).write_bytes(b"rotten")
        (st.paths.layer(b.diff_ids[0]) / "layer.json").unlink()
        (st.paths.tmp / "stale").write_bytes(b"x")
        os.utime(st.paths.tmp / "stale", (time.time() - 3600, time.time() - 3600))
        (st.paths.tmp / "young-foreign").write_bytes(b"in use by a build, say")
        st.put_blob(b"unused")
        rep = st.check()
        assert not rep.ok and len(rep.problems) >= 2 and rep.garbage
        assert any("does not match" in p for p in rep.problems) and any("incomplete" in p for p in rep.problems)
        rep = st.check(repair=True)
        assert rep.ok and rep.repaired
        assert st.list_images() == [] and st.blobs.all() == [] and os.listdir(st.paths.layers) == []
        assert os.listdir(st.paths.tmp) == ["young-foreign"]
        rep = st.check()
        assert rep.ok and not rep.problems and rep.garbage == ["temp file young-foreign"]


def test_temp_dir_survives_other_processes_cleaning(tmp_path: Path) -> None:
    with Store.open(tmp_path / "root", tmp_path / "run") as st, st.temp_dir() as d:
        (d / "spool").write_bytes(b"x")
        old = time.time() - 3600
        os.utime(d, (old, old))
        code = ("import sys; from pallet.store import Store; st = Store.open(sys.argv[1], sys.argv[2]); "
                "print(st.check(repair=True))")
        subprocess.run([sys.executable, "-c", code, str(tmp_path / "root"), str(tmp_path / "run")],
                       check=True, timeout=60, capture_output=True)
        assert (d / "spool").read_bytes() == b"x"
    assert not d.exists()


@pytest.mark.parametrize("n", [3])
def test_many_writers_distinct_images(tmp_path: Path, n: int) -> None:
    """Different images written concurrently from several processes all land, rows intact."""
    tars = []
    for i in range(n):
        p = tmp_path / f"l{i}.tar"
        p.write_bytes(make_tar([("x", "file", f"{i}".encode() * 1000)]))
        tars.append(p)
    Store.open(tmp_path / "root", tmp_path / "run").close()
    go = time.time() + 0.5
    procs = [_child(tmp_path, t, False, go) for t in tars]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    with Store.open(tmp_path / "root", tmp_path / "run") as st:
        assert len(st.list_images()) == n and st.check().ok
        assert len(st.resolve_image("same:1").repo_tags) == 1


@pytest.mark.privileged
def test_deep_check_compares_layers_with_their_blobs(tmp_path: Path) -> None:
    from store_util import make_tar as mk

    with Store.open(tmp_path / "root", tmp_path / "run") as st:
        tar = mk([("d", "dir", None), ("d/f", "file", b"hello"), ("d/l", "symlink", "/etc/passwd"),
                  ("d/h", "link", "d/f"), ("d/.wh.gone", "file", b""), ("o", "dir", None),
                  ("o/.wh..wh..opq", "file", b""), ("d", "dir", None)])
        rec = st.write_image(BytesImage([BytesLayer(tar, "gzip")]), [Reference.parse("deep")])
        assert st.check(deep=True).ok, st.check(deep=True)
        tree = st.lowerdirs(rec)[0]
        (tree / "d" / "f").write_bytes(b"HELLO")  # same size, other content
        (tree / "d" / "extra").write_bytes(b"x")
        rep = st.check(deep=True)
        assert not rep.ok and any("d/f differs" in p for p in rep.problems)
        assert any("d/extra is not in the layer blob" in p for p in rep.problems)
        assert st.check().ok  # the shallow check cannot see it
        rep = st.check(repair=True, deep=True)
        assert rep.ok and st.list_images() == [] and os.listdir(st.paths.layers) == []


ADD_LAYER = r"""
import sys, time
sys.path.insert(0, sys.argv[4])
from store_util import BytesLayer
from pallet.store import Store
root, run, tarpath, _tests, go = sys.argv[1:6]
layer = BytesLayer(open(tarpath, "rb").read(), "zstd")
while time.time() < float(go):
    time.sleep(0.001)
with Store.open(root, run) as st:
    with st.lock.shared():
        info = st.layers.add(layer)
    print("created" if info.created else "found")
"""


def test_two_processes_add_the_same_layer(tmp_path: Path) -> None:
    """Exactly one process extracts; the other waits on the layer lock and finds it."""
    tar = _tar_file(tmp_path, 1500)
    Store.open(tmp_path / "root", tmp_path / "run").close()
    go = time.time() + 0.5
    procs = [subprocess.Popen([sys.executable, "-c", ADD_LAYER, str(tmp_path / "root"), str(tmp_path / "run"),
                               str(tar), str(HERE), str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        outs.append(out.decode().strip())
    assert sorted(outs) == ["created", "found"]
    with Store.open(tmp_path / "root", tmp_path / "run") as st:
        assert len(os.listdir(st.paths.layers)) == 1 and os.listdir(st.paths.tmp) == []
        assert len(st.blobs.all()) == 1
        assert st.check().ok
