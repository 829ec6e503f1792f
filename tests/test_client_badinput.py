"""The client against a registry that lies: every failure is one clear error, and transient
ones (429, a dropped connection) are retried or resumed."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from lying_registry import LyingRegistry

from pallet.distribution.client.registry import Registry
from pallet.distribution.client.remote import resolve
from pallet.errors import DataCorruption, InvalidArgument, NotFound, Unavailable


@pytest.fixture
def liar(busybox_tar: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    monkeypatch.setattr("pallet.distribution.client.transport.BACKOFF", 0.01)
    r = LyingRegistry(busybox_tar)
    yield r
    r.close()


def _read_layer(host: str) -> str:
    with Registry(host) as reg:
        img = resolve(reg.repo("lie/img"), "1").image
        h = hashlib.sha256()
        with img.layers()[0].uncompressed() as f:
            while b := f.read(1 << 16):
                h.update(b)
        assert f"sha256:{h.hexdigest()}" == str(img.layers()[0].diff_id())
        return "ok"


@pytest.mark.parametrize("mode,exc,match", [
    ("digest-lie", DataCorruption, "digest mismatch"),
    ("big-manifest", InvalidArgument, "over the 4194304-byte limit"),
    ("bad-mediatype", InvalidArgument, "unsupported manifest media type"),
    ("corrupt-blob", DataCorruption, "corrupt|digest mismatch"),
    ("drop-always", Unavailable, "connection dropped|truncated"),
    ("503-always", Unavailable, "down"),
])
def test_lies_are_clear_errors(liar: LyingRegistry, mode: str, exc: type, match: str) -> None:
    liar.mode = mode
    with pytest.raises(exc, match=match):
        _read_layer(liar.host)
    liar.mode = ""
    assert _read_layer(liar.host) == "ok"


@pytest.mark.parametrize("mode", ["429", "drop-once", "5xx-once"])
def test_transient_failures_recover(liar: LyingRegistry, mode: str) -> None:
    liar.mode = mode
    assert _read_layer(liar.host) == "ok"
    if mode == "5xx-once":  # the manifest, the config and the layer were each asked twice
        assert sorted(n for p, n in liar.hits.items() if "/v2/lie/" in p and n > 1) == [2, 2, 2]


def test_unknown_blob_and_refused(liar: LyingRegistry) -> None:
    from pallet.oci.digest import Digest

    with Registry(liar.host) as reg:
        with pytest.raises(NotFound, match="blob unknown"):
            reg.repo("lie/img").blob_bytes(Digest.of(b"nope"), 4, 100)
    port = liar.host.rsplit(":", 1)[1]
    liar.close()
    with Registry(f"127.0.0.1:{port}") as reg:
        with pytest.raises(Unavailable, match="cannot reach registry .*connection refused"):
            resolve(reg.repo("x/y"), "1")


@pytest.mark.parametrize("compressed", [True, False])
def test_push_retries_dropped_upload(liar: LyingRegistry, busybox_tar: Path, tmp_path: Path,
                                     compressed: bool) -> None:
    """A connection dropped mid-upload restarts that blob's upload (a new session)."""
    import contextlib

    from client_registry import make_oci_layout

    from pallet.distribution.client.push import push_image
    from pallet.image.sources import open_archive

    liar.mode = "upload-drop-once"
    with Registry(liar.host) as reg, contextlib.ExitStack() as stack:
        if compressed:
            img = resolve(reg.repo("lie/img"), "1").image
        else:
            make_oci_layout(busybox_tar, tmp_path / "layout")
            img = stack.enter_context(open_archive(str(tmp_path / "layout"), str(tmp_path)))[0].image
        push_image(reg.repo("lie/other", push=True), img, "2")
    assert liar.drops == 1
    assert "manifests/2" in liar.pushed


def test_blob_redirect_drops_credentials(liar: LyingRegistry) -> None:
    """Blob GETs follow a 307 to object storage; the registry's credentials are not sent there."""
    from pallet.distribution.client.credentials import Credentials

    liar.mode = "redirect"
    with Registry(liar.host, creds=Credentials("u", "p")) as reg:
        img = resolve(reg.repo("lie/img"), "1").image
        assert img.config_file()["architecture"] == "amd64"
        with img.layers()[0].uncompressed() as f:
            while f.read(1 << 16):
                pass
    assert len(liar.storage_headers) == 2  # config + layer
    assert all("Authorization" not in h for h in liar.storage_headers)
