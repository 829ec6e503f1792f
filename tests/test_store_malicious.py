"""A corpus of malicious layer tars, each proven harmless: nothing is created or changed outside
the layer directory, the error is clear (InvalidArgument / DataCorruption), and the store is left
exactly as before (no layer dir, no blob, no temp dir)."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from store_util import BytesLayer, make_tar

from pallet.errors import DataCorruption, InvalidArgument, PalletError
from pallet.store import Store


def snapshot(top: Path) -> dict[str, object]:
    """Every path under ``top`` with what it is (content, link target), except the db and locks."""
    out: dict[str, object] = {}
    for root, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, top)
            if rel.startswith(("root/db.sqlite", "root/locks")):
                continue
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    out[rel] = ("file", f.read(), os.stat(p).st_mode)
            else:
                out[rel] = ("dir", os.stat(p).st_mode)
    return out


@pytest.fixture
def sandbox(tmp_path: Path):  # type: ignore[no-untyped-def]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"precious")
    st = Store.open(tmp_path / "root", tmp_path / "run")
    yield st, tmp_path, outside
    st.close()


def _raw_tar(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti, data = e if isinstance(e, tuple) else (e, None)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes = b"evil") -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    return ti, data


def _dir(name: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
    return ti


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, target
    return ti


def CORPUS(outside: Path) -> dict[str, tuple[bytes, type[PalletError]]]:
    o = str(outside)
    return {
        "dotdot": (_raw_tar([_file("../evil")]), InvalidArgument),
        "dotdot-deep": (_raw_tar([_file("a/b/../../../../evil")]), InvalidArgument),
        "dotdot-outside-abs": (_raw_tar([_file(f"../../../..{o}/victim")]), InvalidArgument),
        "symlink-abs-then-file": (_raw_tar([_link("l", o), _file("l/victim")]), InvalidArgument),
        "symlink-rel-then-file": (_raw_tar([_link("l", "../../../../../../../../" + o.lstrip("/")),
                                             _file("l/victim")]), InvalidArgument),
        "symlink-then-dir-file": (_raw_tar([_link("l", o), _file("l/sub/evil")]), InvalidArgument),
        "symlink-chain": (_raw_tar([_link("a", o), _link("b", "a"), _file("b/victim")]), InvalidArgument),
        "hardlink-dotdot": (_raw_tar([_link("h", "../outside/victim", tarfile.LNKTYPE)]), InvalidArgument),
        "hardlink-abs": (_raw_tar([_link("h", f"{o}/victim", tarfile.LNKTYPE)]), InvalidArgument),
        "hardlink-missing": (_raw_tar([_link("h", "nothing/here", tarfile.LNKTYPE)]), InvalidArgument),
        "hardlink-via-symlink": (_raw_tar([_link("l", o), _link("h", "l/victim", tarfile.LNKTYPE)]),
                                 InvalidArgument),
        "whiteout-dotdot": (_raw_tar([_file("a/.wh...", b"")]), InvalidArgument),
        "whiteout-dot": (_raw_tar([_file(".wh..", b"")]), InvalidArgument),
        "whiteout-via-symlink": (_raw_tar([_link("l", o), _file("l/.wh.victim", b"")]), InvalidArgument),
        "opaque-via-symlink": (_raw_tar([_link("l", o), _file("l/.wh..wh..opq", b"")]), InvalidArgument),
        "file-as-dir": (_raw_tar([_file("f", b"x"), _file("f/evil")]), InvalidArgument),
        "truncated": (_raw_tar([_file("big", b"x" * 100_000)])[:30_000], DataCorruption),
        "not-a-tar": (b"this is not a tar archive at all" * 100, DataCorruption),
        "bad-number": (b"x" * 100 + b"zzzzzzz\0" + b"\0" * 404, DataCorruption),
        "sparse": (_gnu_sparse(), InvalidArgument),
        "nul-in-pax-path": (_pax_nul(), InvalidArgument),
        "very-deep-path": (_raw_tar([_file("a/" * 3000 + "f")]), InvalidArgument),
        "nul-in-link-target": (_pax_link_nul(), InvalidArgument),
        "huge-pax-header": (_huge_pax(), InvalidArgument),
    }


def _gnu_sparse() -> bytes:
    ti = tarfile.TarInfo("sparse")
    ti.type = tarfile.GNUTYPE_SPARSE
    buf = io.BytesIO()
    buf.write(ti.tobuf(tarfile.GNU_FORMAT))
    buf.write(b"\0" * 1024)
    return buf.getvalue()


def _pax_nul() -> bytes:
    ti = tarfile.TarInfo("x")
    ti.pax_headers = {"path": "a\0b"}
    ti.size = 0
    return _raw_tar([ti])


def _pax_link_nul() -> bytes:
    ti = _link("l", "x")
    ti.pax_headers = {"linkpath": "a\0b"}
    return _raw_tar([ti])


def _huge_pax() -> bytes:
    ti = tarfile.TarInfo("x")
    ti.pax_headers = {"comment": "y" * (2 << 20)}
    return _raw_tar([ti])


CASES = list(CORPUS(Path("/x")).keys())


@pytest.mark.privileged
@pytest.mark.parametrize("case", CASES)
def test_malicious_tar_is_harmless(sandbox, case: str) -> None:  # type: ignore[no-untyped-def]
    st, top, outside = sandbox
    tar, err = CORPUS(outside)[case]
    before = snapshot(top)
    for comp in ("", "gzip"):
        with pytest.raises(err) as ei:
            st.add_layer(BytesLayer(tar, comp))
        msg = str(ei.value)
        assert "\n" not in msg and msg, msg
        assert snapshot(top) == before, f"{case}: the filesystem changed"
    assert (outside / "victim").read_bytes() == b"precious"
    st.close()
    Store.open(top / "root", top / "run").close()  # a later command drops the failed layers' lock files
    assert os.listdir(top / "root" / "locks") == ["store.lock"]


@pytest.mark.privileged
def test_harmless_oddities_land_inside(sandbox) -> None:  # type: ignore[no-untyped-def]
    """Absolute names are taken relative to the layer; a file replacing a symlink replaces the
    link (never writes through it); a dir replacing a symlink does the same; absolute symlinks
    are kept verbatim."""
    st, top, outside = sandbox
    o = str(outside)
    tar = _raw_tar([_file("/abs/file", b"inside"), _link("l", f"{o}/victim"), _file("l", b"replaced"),
                    _link("d", o), _dir("d"), _file("d/x", b"in d"),
                    _file("f", b"orig"), _link("h", "f", tarfile.LNKTYPE), _file("h", b"new h"),
                    _link("keep", "/etc/passwd")])
    layer = BytesLayer(tar)
    st.add_layer(layer)
    root = st.layer_dir(layer.diff_id())
    assert (root / "abs" / "file").read_bytes() == b"inside"
    assert (root / "l").read_bytes() == b"replaced" and not (root / "l").is_symlink()
    assert (root / "f").read_bytes() == b"orig" and (root / "h").read_bytes() == b"new h"
    assert os.readlink(root / "keep") == "/etc/passwd"
    assert (root / "d").is_dir() and not (root / "d").is_symlink() and (root / "d" / "x").read_bytes() == b"in d"
    assert (outside / "victim").read_bytes() == b"precious"
    assert sorted(os.listdir(outside)) == ["victim"]


def test_trusted_overlay_xattrs_are_dropped(sandbox) -> None:  # type: ignore[no-untyped-def]
    st, _, _ = sandbox
    ti, data = _file("f", b"x")
    ti.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc"}
    layer = BytesLayer(_raw_tar([(ti, data)]))
    st.add_layer(layer)
    f = st.layer_dir(layer.diff_id()) / "f"
    assert "trusted.overlay.redirect" not in os.listxattr(f)


def test_make_tar_helper_sanity() -> None:
    assert tarfile.open(fileobj=io.BytesIO(make_tar([("a", "file", b"1")]))).getnames() == ["a"]
