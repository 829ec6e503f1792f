"""Archive readers/writers, --change parsing and output helpers, without a store (fast)."""
from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from pallet.cli.fmt import human_duration, human_size, render
from pallet.errors import DataCorruption, InvalidArgument
from pallet.image.changes import apply_changes, split_words
from pallet.image.docker_archive import write_docker_archive
from pallet.image.layer import BlobLayer
from pallet.image.oci_layout import write_oci_archive
from pallet.image.rootfs import rootfs_layer
from pallet.image.sources import open_archive
from pallet.image.static import StaticImage, config_json
from pallet.oci import mediatypes as mt
from pallet.oci.reference import Reference


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for n, b in files.items():
            ti = tarfile.TarInfo(n)
            ti.size = len(b)
            tf.addfile(ti, io.BytesIO(b))
    return buf.getvalue()


def _image(tmp_path: Path, blobs: list[bytes], gz: bool = False) -> StaticImage:
    layers = []
    diff_ids = []
    for i, tar in enumerate(blobs):
        p = tmp_path / f"layer{i}"
        p.write_bytes(gzip.compress(tar, 1) if gz else tar)
        with rootfs_layer(str(p), str(tmp_path / "tmp")) as lay:
            layers.append(BlobLayer(lambda p=p: open(p, "rb"), media_type=lay.media_type(), size=lay.size(),
                                    digest=lay.digest(), diff_id=lay.diff_id()))
            diff_ids.append(str(lay.diff_id()))
    cfg = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    return StaticImage(config_json(cfg), layers)


@pytest.mark.parametrize("fmt", ["docker", "oci"])
@pytest.mark.parametrize("gz", [False, True])
def test_round_trip(tmp_path: Path, fmt: str, gz: bool) -> None:
    img = _image(tmp_path, [_tar({"a": b"1" * 5000}), _tar({"b/c": os.urandom(3000)})], gz)
    tags = [Reference.parse("example.com/x/y:1"), Reference.parse("busybox")]
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        if fmt == "docker":
            write_docker_archive(f, [(img, tags)], str(tmp_path / "tmp"))
        else:
            write_oci_archive(f, [(img, tags)])
    with open_archive(str(out), str(tmp_path / "tmp")) as got:
        assert len(got) == 1
        back = got[0].image
        assert back.config_digest() == img.config_digest()  # the image ID survives
        assert sorted(map(str, got[0].tags)) == sorted(map(str, tags))
        for a, b in zip(back.layers(), img.layers(), strict=True):
            assert a.diff_id() == b.diff_id()
            with a.uncompressed() as f1, b.uncompressed() as f2:
                assert f1.read() == f2.read()
        if fmt == "oci":
            assert back.manifest().media_type == mt.OCI_MANIFEST
    # stdin (spooled) and a gzip-compressed archive read the same
    gzout = tmp_path / "out.tar.gz"
    gzout.write_bytes(gzip.compress(out.read_bytes(), 1))
    with open(gzout, "rb") as f, open_archive("-", str(tmp_path / "tmp"), stdin=f) as got:
        assert got[0].image.config_digest() == img.config_digest()
    assert not os.listdir(tmp_path / "tmp")  # spools removed


def test_layer_verification(tmp_path: Path) -> None:
    tar = _tar({"a": b"x" * 10000})
    img = _image(tmp_path, [tar])
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        write_docker_archive(f, [(img, [])], str(tmp_path))
    data = bytearray(out.read_bytes())
    with tarfile.open(out) as tf:
        m = next(x for x in tf.getmembers() if x.name.endswith("layer.tar"))
    data[m.offset_data + 700] ^= 1
    out.write_bytes(bytes(data))
    with open_archive(str(out), str(tmp_path)) as got:
        with pytest.raises(DataCorruption, match="digest mismatch"):
            with got[0].image.layers()[0].compressed() as f:
                while f.read(4096):
                    pass


def test_changes() -> None:
    cfg = apply_changes({"Cmd": ["old"], "Env": ["A=0"]},
                        ['ENV A=1 B="two words"', "ENTRYPOINT /bin/app -x", "USER 1000:1000",
                         'VOLUME ["/data"]', "EXPOSE 8080/udp 9000-9001", "STOPSIGNAL SIGINT",
                         "LABEL 'k 1'=v", "ONBUILD RUN make", "WORKDIR /a", "WORKDIR b"])
    assert cfg["Env"] == ["A=1", "B=two words"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "/bin/app -x"] and cfg["Cmd"] is None
    assert cfg["User"] == "1000:1000" and cfg["Volumes"] == {"/data": {}}
    assert cfg["ExposedPorts"] == {"8080/udp": {}, "9000-9001/tcp": {}}
    assert cfg["StopSignal"] == "SIGINT" and cfg["Labels"] == {"k 1": "v"}
    assert cfg["OnBuild"] == ["RUN make"] and cfg["WorkingDir"] == "/a/b"
    # a CMD given with the ENTRYPOINT in the same set is kept
    assert apply_changes({}, ['CMD ["x"]', 'ENTRYPOINT ["y"]'])["Cmd"] == ["x"]
    for bad in ["RUN x", "CMD", "USER a b", "EXPOSE http", "ENV A", "ONBUILD FROM x", 'LABEL a="b']:
        with pytest.raises(InvalidArgument):
            apply_changes({}, [bad])
    assert split_words(r'a "b c" d\ e') == ["a", "b c", "d e"]


def test_human_output() -> None:
    assert human_size(0) == "0B"
    assert human_size(4_260_000) == "4.26MB"
    assert human_size(290_040_320) == "290MB"
    assert human_size(1_980_000) == "1.98MB"
    assert human_duration(0.2) == "Less than a second"
    assert human_duration(70) == "About a minute"
    assert human_duration(2 * 3600) == "2 hours"
    assert human_duration(3 * 86400) == "3 days"
    objs = [{"ID": "abc", "Repository": "bb", "Tag": "1"}]
    assert render("{{.Repository}}:{{.Tag}}", objs) == "bb:1"
    assert json.loads(render("json", objs)) == objs[0]
    assert render("{{json .}}", objs) == json.dumps(objs[0], separators=(",", ":"))
    with pytest.raises(InvalidArgument):
        render("{{.Nope}}", objs)


def test_docker25_layout(tmp_path: Path) -> None:
    """docker >= 25 saves an OCI layout plus a manifest.json naming blobs/sha256/<hex> paths."""
    img = _image(tmp_path, [_tar({"a": b"1" * 3000})])
    oci = tmp_path / "oci.tar"
    with open(oci, "wb") as f:
        write_oci_archive(f, [(img, [Reference.parse("busybox:1")])])
    with tarfile.open(oci) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
    d = img.layers()[0].digest().encoded
    files["manifest.json"] = json.dumps([{"Config": f"blobs/sha256/{img.config_digest().encoded}",
                                          "RepoTags": ["busybox:1"], "Layers": [f"blobs/sha256/{d}"]}]).encode()
    out = tmp_path / "d25.tar"
    out.write_bytes(_tar(files))
    with open_archive(str(out), str(tmp_path / "tmp")) as got:
        assert [str(t) for t in got[0].tags] == ["docker.io/library/busybox:1"]
        assert got[0].image.config_digest() == img.config_digest()
