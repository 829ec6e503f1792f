"""Bad archives and hostile timing: every failure is one error line, a non-zero exit and a store
exactly as before (files under the root and every db row); two loads of one archive at once
give one image; a load killed with SIGKILL leaves a store the next command and ``system check``
accept."""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged


def _add(tf: tarfile.TarFile, name: str, data: bytes | Path) -> None:
    ti = tarfile.TarInfo(name)
    if isinstance(data, Path):
        ti.size = data.stat().st_size
        with open(data, "rb") as f:
            tf.addfile(ti, f)
    else:
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))


def docker_archive(out: Path, layer_tar: Path, tag: str = "bad:1", *, config_patch: dict | None = None,
                   lie_diff_id: bool = False, corrupt_config_name: bool = False) -> Path:
    """A minimal docker-archive around one layer tar, optionally with a lie in it."""
    h = hashlib.sha256()
    with open(layer_tar, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    diff_id = "sha256:" + ("0" * 64 if lie_diff_id else h.hexdigest())
    cfg = {"architecture": "amd64", "os": "linux", "created": "2026-11-28T00:00:00Z", "config": {},
           "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    cfg.update(config_patch or {})
    raw = json.dumps(cfg).encode()
    cname = ("f" * 64 if corrupt_config_name else hashlib.sha256(raw).hexdigest()) + ".json"
    manifest = [{"Config": cname, "RepoTags": [tag], "Layers": ["l1/layer.tar"]}]
    with tarfile.open(out, "w") as tf:
        _add(tf, cname, raw)
        _add(tf, "l1/layer.tar", layer_tar)
        _add(tf, "manifest.json", json.dumps(manifest).encode())
    return out


def snapshot(root: Path) -> tuple[list[str], dict[str, list]]:
    files = []
    for dirpath, dirs, names in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel.startswith("locks"):
            continue  # flock files are created on demand and are not state
        for n in names + dirs:
            p = os.path.normpath(os.path.join(rel, n))
            if not p.startswith("db.sqlite") and not p.startswith("locks"):
                files.append(p)
    rows: dict[str, list] = {}
    db = root / "db.sqlite"
    if db.exists():
        con = sqlite3.connect(db)
        try:
            for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                rows[t] = sorted(map(repr, con.execute(f"SELECT * FROM {t}")))
        finally:
            con.close()
    return sorted(files), rows


@pytest.fixture
def seeded(pallet, busybox_tar: Path):
    """A store holding one image, so 'unchanged' is not trivially 'empty'."""
    pallet("import", str(busybox_tar), "seed:1")
    return pallet


def _fails_cleanly(pallet, *args: str, expect: str, input: bytes | None = None) -> None:
    before = snapshot(pallet.root)
    r = pallet.fail(*args, input=input)
    assert r.err.count("\n") == 1 and r.err.startswith("Error: "), r.err
    assert expect.lower() in r.err.lower(), r.err
    assert snapshot(pallet.root) == before


def _small_layer(tmp_path: Path) -> Path:
    """A layer the seeded store does not hold (a known diff-id would be skipped, not read)."""
    layer = tmp_path / "small-layer.tar"
    with tarfile.open(layer, "w") as tf:
        _add(tf, "etc/hello", b"hello\n" * 1000)
        _add(tf, "data/rand", os.urandom(200_000))
    return layer


def test_bad_archives_leave_store_unchanged(seeded, tmp_path: Path) -> None:
    pallet = seeded
    busybox_tar = _small_layer(tmp_path)
    good = docker_archive(tmp_path / "good.tar", busybox_tar)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.tar"
    trunc.write_bytes(data[: len(data) // 2])
    _fails_cleanly(pallet, "load", "-i", str(trunc), expect="truncated")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(os.urandom(100_000))
    _fails_cleanly(pallet, "load", "-i", str(junk), expect="tar")
    _fails_cleanly(pallet, "load", input=b"", expect="empty")
    lie = docker_archive(tmp_path / "lie.tar", busybox_tar, lie_diff_id=True)
    _fails_cleanly(pallet, "load", "-i", str(lie), expect="mismatch")
    cfg = docker_archive(tmp_path / "cfg.tar", busybox_tar, corrupt_config_name=True)
    _fails_cleanly(pallet, "load", "-i", str(cfg), expect="does not match its digest")
    # a byte flipped inside the layer, tar structure intact
    flipped = bytearray(data)
    with tarfile.open(good) as tf:
        m = tf.getmember("l1/layer.tar")
    flipped[m.offset_data + m.size // 2] ^= 0xFF
    fl = tmp_path / "flipped.tar"
    fl.write_bytes(bytes(flipped))
    _fails_cleanly(pallet, "load", "-i", str(fl), expect="mismatch")
    _fails_cleanly(pallet, "load", "-i", str(tmp_path / "absent.tar"), expect="no such file")
    _fails_cleanly(pallet, "load", "-i", str(busybox_tar), expect="neither a docker-archive")
    # a truncated rootfs tarball: import (file and stdin) fails the same way
    raw = busybox_tar.read_bytes()
    cut = tmp_path / "cut-rootfs.tar"
    cut.write_bytes(raw[: len(raw) // 2])
    _fails_cleanly(pallet, "import", str(cut), "cut:1", expect="truncated")
    _fails_cleanly(pallet, "import", "-", "cut:1", input=raw[: len(raw) // 2], expect="truncated")

    badtag = docker_archive(tmp_path / "badtag.tar", busybox_tar, tag="UPPER:case")
    _fails_cleanly(pallet, "load", "-i", str(badtag), expect="RepoTags")
    # the good one still loads afterwards, and the store checks clean
    assert pallet("load", "-i", str(good)).out.strip() == "Loaded image: bad:1"
    assert "store ok" in pallet("system", "check").out


def test_unknown_media_type_and_missing_blob(seeded, tmp_path: Path) -> None:
    pallet = seeded
    arch = tmp_path / "oci.tar"
    pallet("save", "--format", "oci-archive", "-o", str(arch), "seed:1")
    with tarfile.open(arch) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
    index = json.loads(files["index.json"])
    mdesc = index["manifests"][0]
    mname = "blobs/sha256/" + mdesc["digest"].split(":")[1]
    manifest = json.loads(files[mname])

    def rewrite(name: str, man: dict, drop: str = "") -> Path:
        raw = json.dumps(man).encode()
        dig = hashlib.sha256(raw).hexdigest()
        idx = dict(index, manifests=[dict(mdesc, digest=f"sha256:{dig}", size=len(raw))])
        out = tmp_path / name
        with tarfile.open(out, "w") as tf:
            for n, b in files.items():
                if n not in ("index.json", mname) and n != drop:
                    _add(tf, n, b)
            _add(tf, f"blobs/sha256/{dig}", raw)
            _add(tf, "index.json", json.dumps(idx).encode())
        return out

    odd = json.loads(json.dumps(manifest))
    odd["layers"][0]["mediaType"] = "application/x-mystery"
    _fails_cleanly(pallet, "load", "-i", str(rewrite("odd.tar", odd)), expect="unsupported layer media type")
    layer_blob = "blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1]
    _fails_cleanly(pallet, "load", "-i", str(rewrite("miss.tar", manifest, drop=layer_blob)), expect="missing")
    _fails_cleanly(pallet, "save", "-o", str(tmp_path / "x.tar"), "nosuch:1", expect="nosuch")
    _fails_cleanly(pallet, "tag", "seed:1", "Bad Ref", expect="invalid reference")
    _fails_cleanly(pallet, "rmi", "nosuch:1", expect="No such image")
    _fails_cleanly(pallet, "import", str(tmp_path / "oci.tar"), "x:1", "-c", "BOGUS 1", expect="BOGUS")


def _big_archive(tmp_path: Path, mb: int) -> Path:
    layer = tmp_path / "big-layer.tar"
    with tarfile.open(layer, "w") as tf:
        for i in range(4):
            _add(tf, f"blob{i}", os.urandom(mb * 1024 * 1024 // 4))
        for i in range(300):
            _add(tf, f"small/f{i}", b"x" * i)
    return docker_archive(tmp_path / "big.tar", layer, tag="big:1")


def test_concurrent_loads_one_image(pallet, tmp_path: Path) -> None:
    arch = _big_archive(tmp_path, 48)
    procs = [subprocess.Popen(pallet.argv("load", "-i", str(arch)), env=pallet.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert all(o[0].decode().strip() == "Loaded image: big:1" for o in outs)
    assert len(pallet("images", "-q").out.split()) == 1
    assert len(list((pallet.root / "layers").iterdir())) == 1
    assert "store ok" in pallet("system", "check").out


def test_sigkill_during_load(pallet, tmp_path: Path) -> None:
    arch = _big_archive(tmp_path, 64)
    p = subprocess.Popen(pallet.argv("load", "-i", str(arch)), env=pallet.env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    tmp = pallet.root / "tmp"
    while time.monotonic() < deadline and p.poll() is None:
        if tmp.is_dir() and any(tmp.iterdir()):
            break  # mid-extraction: a temp layer dir exists
        time.sleep(0.005)
    killed = p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    if not killed:
        pytest.skip("the load finished before it could be killed")
    assert pallet("images", "-q").out.strip() == ""
    r = pallet("system", "check")
    assert r.rc == 0
    assert pallet("load", "-i", str(arch)).out.strip() == "Loaded image: big:1"
    assert "store ok" in pallet("system", "check").out
    assert not any((pallet.root / "tmp").iterdir())


def test_malicious_layer_through_the_cli(seeded, tmp_path: Path) -> None:
    """The store's malicious-tar corpus (test_store_malicious) end to end: import and load of a tar
    that climbs out with '..' or through a symlink fail in one line and change nothing."""
    pallet = seeded
    outside = tmp_path / "outside"
    outside.mkdir()
    climb = tmp_path / "climb.tar"
    with tarfile.open(climb, "w") as tf:
        _add(tf, "ok", b"fine")
        _add(tf, "../../outside/evil", b"evil")
    via_link = tmp_path / "via-link.tar"
    with tarfile.open(via_link, "w") as tf:
        ti = tarfile.TarInfo("l")
        ti.type, ti.linkname = tarfile.SYMTYPE, str(outside)
        tf.addfile(ti)
        _add(tf, "l/evil", b"evil")
    _fails_cleanly(pallet, "import", str(climb), "evil:1", expect="'..'")
    _fails_cleanly(pallet, "import", str(via_link), "evil:1", expect="symlink")
    _fails_cleanly(pallet, "load", "-i", str(docker_archive(tmp_path / "evil-arch.tar", via_link)), expect="symlink")
    assert list(outside.iterdir()) == []


def test_full_disk_through_the_cli(pallet, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], check=True)
    try:
        layer = tmp_path / "big-layer.tar"
        with tarfile.open(layer, "w") as tf:
            _add(tf, "rand", os.urandom(3_000_000))
        arch = docker_archive(tmp_path / "big.tar", layer)
        env = dict(pallet.env, PALLET_ROOT=str(small / "root"))
        assert subprocess.run(pallet.argv("images"), env=env, capture_output=True, timeout=60).returncode == 0
        before = snapshot(small / "root")
        p = subprocess.run(pallet.argv("load", "-i", str(arch)), env=env, capture_output=True, timeout=60)
        err = p.stderr.decode()
        assert p.returncode != 0 and err.count("\n") == 1 and "No space left on device" in err, err
        assert snapshot(small / "root") == before
    finally:
        subprocess.run(["umount", str(small)], check=True)
