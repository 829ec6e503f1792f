"""The storage-driver contract, run against every registered driver (storage/__init__.py)."""
from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from pallet.distribution.server.errors import RegistryError
from pallet.distribution.server.storage import DRIVERS, open_driver
from pallet.oci.digest import Digest


@pytest.fixture(params=sorted(DRIVERS))
def drv(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_driver(request.param, rootdirectory=str(tmp_path / "store"))


def dg(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def test_blobs_and_links(drv) -> None:  # type: ignore[no-untyped-def]
    d = dg(b"manifest")
    assert drv.blob_size(d) is None and drv.blob_read(d, 100) is None
    drv.blob_put(d, b"manifest")
    assert drv.blob_size(d) == 8 and drv.blob_read(d, 100) == b"manifest" and drv.blob_touch(d)
    assert not drv.repo_exists("a/b")
    drv.manifest_link("a/b", d)
    drv.tag_set("a/b", "v1", d)
    drv.layer_link("a/c", d)
    assert drv.repo_exists("a/b") and drv.repositories() == ["a/b", "a/c"]
    assert drv.manifest_linked("a/b", d) and not drv.manifest_linked("a/c", d)
    assert drv.tag_get("a/b", "v1") == d and drv.tags("a/b") == ["v1"] and drv.manifest_links("a/b") == [d]
    assert drv.layer_links("a/c") == [d]
    assert drv.tag_remove("a/b", "v1") and not drv.tag_remove("a/b", "v1") and drv.tags("a/b") == []
    assert drv.manifest_unlink("a/b", d) and not drv.manifest_linked("a/b", d)
    assert [x for x, _ in drv.blobs()] == [d]
    drv.blob_remove(d)
    assert drv.blob_size(d) is None


def test_referrers(drv) -> None:  # type: ignore[no-untyped-def]
    s, r1, r2 = dg(b"s"), dg(b"r1"), dg(b"r2")
    drv.referrer_add("x", s, r1, b'{"digest":"1"}')
    drv.referrer_add("x", s, r2, b'{"digest":"2"}')
    assert sorted(drv.referrers("x", s)) == [b'{"digest":"1"}', b'{"digest":"2"}']
    drv.referrer_remove("x", s, r1)
    assert drv.referrers("x", s) == [b'{"digest":"2"}'] and drv.referrers("y", s) == []


def test_upload_commit_is_atomic_and_checked(drv) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        data = b"a" * 3_000_000
        u = drv.upload_create("r")
        assert drv.upload_size("r", u) == 0 and drv.upload_size("other", u) is None
        w = drv.upload_writer("r", u)
        await w.write(data[:1_000_000])
        assert await w.close() == 1_000_000
        w = drv.upload_writer("r", u)
        await w.write(data[1_000_000:])
        await w.abort()  # a client that went away: its bytes are dropped
        assert drv.upload_size("r", u) == 1_000_000
        w = drv.upload_writer("r", u)
        await w.write(data[1_000_000:])
        await w.close()
        assert drv.blob_size(dg(data)) is None  # nothing visible before the commit
        with pytest.raises(RegistryError) as e:
            await drv.upload_commit("r", u, dg(b"other"))
        assert e.value.code == "DIGEST_INVALID" and drv.upload_size("r", u) is None
        assert drv.blob_size(dg(data)) is None and drv.blob_size(dg(b"other")) is None
        u = drv.upload_create("r")
        w = drv.upload_writer("r", u)
        await w.write(data)
        await w.close()
        getattr(drv, "_hashers", {}).clear()  # as after a restart: the commit re-hashes the file
        assert await drv.upload_commit("r", u, dg(data)) == len(data)
        assert drv.blob_size(dg(data)) == len(data) and drv.layer_linked("r", dg(data))
        assert drv.upload_size("r", u) is None and drv.uploads() == []
        with pytest.raises(RegistryError):
            drv.upload_writer("r", u)
        with pytest.raises(RegistryError):
            drv.upload_writer("r", "../../x")

    asyncio.run(go())
