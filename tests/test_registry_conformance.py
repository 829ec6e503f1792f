"""The OCI distribution spec v1.1 conformance categories, case by case from the spec text:
pull, push, content discovery, content management (end-1 .. end-13)."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_helpers import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Server,
    sha,
    start_registry,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("conformance") / "root"
    srv = start_registry(root)
    yield srv
    srv.stop()


# ---------------------------------------------------------------------------------- pull
def test_end1_base_answers_with_api_version(reg: Server) -> None:
    r = reg.request("GET", "/v2/")
    assert r.status == 200
    assert r.h("Docker-Distribution-API-Version") == "registry/2.0"


def test_pull_manifest_by_tag_and_digest(reg: Server) -> None:
    d, body = reg.push_image("pull/img", "v1")
    for ref in ("v1", d):
        r = reg.request("GET", f"/v2/pull/img/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert r.status == 200 and r.body == body
        assert r.h("Docker-Content-Digest") == d
        assert r.h("Content-Type") == OCI_MANIFEST
        h = reg.request("HEAD", f"/v2/pull/img/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert h.status == 200 and h.body == b""
        assert h.h("Content-Length") == str(len(body)) and h.h("Docker-Content-Digest") == d


def test_pull_manifest_unknown(reg: Server) -> None:
    reg.push_image("pull/unknown", "v1")
    r = reg.request("GET", "/v2/pull/unknown/manifests/nope")
    assert (r.status, r.code) == (404, "MANIFEST_UNKNOWN")
    r = reg.request("GET", "/v2/pull/unknown/manifests/" + sha(b"nothing"))
    assert (r.status, r.code) == (404, "MANIFEST_UNKNOWN")
    assert reg.request("HEAD", "/v2/pull/unknown/manifests/nope").status == 404
    r = reg.request("GET", "/v2/no/such/repo/manifests/latest")
    assert (r.status, r.code) == (404, "NAME_UNKNOWN")


def test_pull_blob_and_range(reg: Server) -> None:
    data = os.urandom(100_000)
    d = reg.push_blob("pull/blob", data)
    r = reg.request("GET", f"/v2/pull/blob/blobs/{d}")
    assert r.status == 200 and r.body == data and r.h("Docker-Content-Digest") == d
    h = reg.request("HEAD", f"/v2/pull/blob/blobs/{d}")
    assert h.status == 200 and h.h("Content-Length") == str(len(data)) and h.body == b""
    p = reg.request("GET", f"/v2/pull/blob/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert p.status == 206 and p.body == data[10:20]
    r = reg.request("GET", f"/v2/pull/blob/blobs/{sha(b'missing')}")
    assert (r.status, r.code) == (404, "BLOB_UNKNOWN")
    # a blob that exists globally is invisible from a repository that does not link it
    r = reg.request("GET", f"/v2/pull/other/blobs/{d}")
    assert (r.status, r.code) == (404, "BLOB_UNKNOWN")


def test_pull_accept_negotiation(reg: Server) -> None:
    d, body = reg.push_image("pull/neg", "oci")
    r = reg.request("GET", "/v2/pull/neg/manifests/oci", headers={"Accept": DOCKER_MANIFEST})
    assert (r.status, r.code) == (404, "MANIFEST_UNKNOWN")
    r = reg.request("GET", "/v2/pull/neg/manifests/oci", headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"})
    assert r.status == 200
    r = reg.request("GET", "/v2/pull/neg/manifests/oci", headers={"Accept": "*/*"})
    assert r.status == 200
    # an index for a client that only reads single manifests: the host platform's entry
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": len(body),
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    assert reg.push_manifest("pull/neg", "multi", index, OCI_INDEX).status == 201
    r = reg.request("GET", "/v2/pull/neg/manifests/multi", headers={"Accept": OCI_MANIFEST})
    assert r.status == 200 and r.h("Docker-Content-Digest") == d
    r = reg.request("GET", "/v2/pull/neg/manifests/multi", headers={"Accept": OCI_INDEX})
    assert r.status == 200 and r.body == index


# ---------------------------------------------------------------------------------- push
def test_push_post_then_put(reg: Server) -> None:
    data = b"monolithic two-step"
    r = reg.request("POST", "/v2/push/a/blobs/uploads/")
    assert r.status == 202 and r.h("Location") and r.h("Docker-Upload-UUID")
    r = reg.request("PUT", r.h("Location") + f"?digest={sha(data)}", data,
                    {"Content-Type": "application/octet-stream"})
    assert r.status == 201 and r.h("Location").endswith(sha(data)) and r.h("Docker-Content-Digest") == sha(data)
    assert reg.request("GET", f"/v2/push/a/blobs/{sha(data)}").body == data


def test_push_single_post(reg: Server) -> None:
    data = b"single POST"
    r = reg.request("POST", f"/v2/push/b/blobs/uploads/?digest={sha(data)}", data,
                    {"Content-Type": "application/octet-stream"})
    assert r.status == 201 and r.h("Location") == f"/v2/push/b/blobs/{sha(data)}"
    assert reg.request("HEAD", f"/v2/push/b/blobs/{sha(data)}").status == 200


def test_push_empty_blob(reg: Server) -> None:
    assert reg.push_blob("push/empty", b"") == sha(b"")
    assert reg.request("GET", f"/v2/push/empty/blobs/{sha(b'')}").body == b""


def test_push_chunked_with_status_and_out_of_order(reg: Server) -> None:
    data = os.urandom(300_000)
    c1, c2, c3 = data[:100_000], data[100_000:200_000], data[200_000:]
    r = reg.request("POST", "/v2/push/chunked/blobs/uploads/", headers={"Content-Length": "0"})
    loc = r.h("Location")
    r = reg.request("PATCH", loc, c1, {"Content-Range": "0-99999", "Content-Type": "application/octet-stream"})
    assert r.status == 202 and r.h("Range") == "0-99999"
    loc = r.h("Location")
    # out of order: 416 and the session keeps its size
    r = reg.request("PATCH", loc, c3, {"Content-Range": "200000-299999"})
    assert r.status == 416
    s = reg.request("GET", loc)
    assert s.status == 204 and s.h("Range") == "0-99999" and s.h("Docker-Upload-UUID") and s.h("Location")
    r = reg.request("PATCH", loc, c2, {"Content-Range": "100000-199999"})
    assert r.status == 202 and r.h("Range") == "0-199999"
    r = reg.request("PUT", r.h("Location") + f"?digest={sha(data)}", c3,
                    {"Content-Range": "200000-299999", "Content-Type": "application/octet-stream"})
    assert r.status == 201
    assert reg.request("GET", f"/v2/push/chunked/blobs/{sha(data)}").body == data


def test_push_stream_patch_without_content_range(reg: Server) -> None:
    data = os.urandom(50_000)
    loc = reg.request("POST", "/v2/push/stream/blobs/uploads/").h("Location")
    r = reg.request("PATCH", loc, data[:20_000])
    assert r.status == 202 and r.h("Range") == "0-19999"
    r = reg.request("PATCH", r.h("Location"), data[20_000:])
    assert r.h("Range") == "0-49999"
    r = reg.request("PUT", r.h("Location") + f"?digest={sha(data)}")
    assert r.status == 201


def test_push_digest_mismatch_stores_nothing(reg: Server) -> None:
    r = reg.request("POST", f"/v2/push/bad/blobs/uploads/?digest={sha(b'other')}", b"content")
    assert (r.status, r.code) == (400, "DIGEST_INVALID")
    assert reg.request("HEAD", f"/v2/push/bad/blobs/{sha(b'content')}").status == 404
    assert reg.request("HEAD", f"/v2/push/bad/blobs/{sha(b'other')}").status == 404
    loc = reg.request("POST", "/v2/push/bad/blobs/uploads/").h("Location")
    r = reg.request("PUT", loc + f"?digest={sha(b'other')}", b"content")
    assert (r.status, r.code) == (400, "DIGEST_INVALID")
    assert not list((reg.root / "blobs").rglob(sha(b"content")[7:]))


def test_push_cross_repo_mount(reg: Server) -> None:
    data = b"mount me"
    d = reg.push_blob("push/src", data)
    r = reg.request("POST", f"/v2/push/dst/blobs/uploads/?mount={d}&from=push/src")
    assert r.status == 201 and r.h("Location") == f"/v2/push/dst/blobs/{d}" and r.h("Docker-Content-Digest") == d
    assert reg.request("GET", f"/v2/push/dst/blobs/{d}").body == data
    # not in the source repository: an ordinary upload session instead
    r = reg.request("POST", f"/v2/push/dst/blobs/uploads/?mount={sha(b'x')}&from=push/src")
    assert r.status == 202 and r.h("Location")


def test_push_manifest_by_tag_digest_and_missing_blobs(reg: Server) -> None:
    d, body = reg.push_image("push/m", "t1")
    r = reg.push_manifest("push/m", d, body)
    assert r.status == 201 and r.h("Location") == f"/v2/push/m/manifests/{d}" and r.h("Docker-Content-Digest") == d
    bad = json.loads(body)
    bad["layers"][0]["digest"] = sha(b"never pushed")
    r = reg.push_manifest("push/m", "t2", json.dumps(bad).encode())
    assert (r.status, r.code) == (400, "MANIFEST_BLOB_UNKNOWN")
    assert reg.request("GET", "/v2/push/m/manifests/t2").status == 404
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha(b"no manifest"), "size": 3}]}).encode()
    r = reg.push_manifest("push/m", "idx", index, OCI_INDEX)
    assert (r.status, r.code) == (400, "MANIFEST_BLOB_UNKNOWN")


def test_push_docker_media_types(reg: Server) -> None:
    d, body = reg.push_image("push/docker", "v1", media_type=DOCKER_MANIFEST)
    r = reg.request("GET", "/v2/push/docker/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert r.status == 200 and r.h("Content-Type") == DOCKER_MANIFEST and r.body == body
    lst = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
                      "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": d, "size": len(body),
                                     "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    r = reg.push_manifest("push/docker", "list", lst, "application/vnd.docker.distribution.manifest.list.v2+json")
    assert r.status == 201


def test_upload_cancel(reg: Server) -> None:
    loc = reg.request("POST", "/v2/push/cancel/blobs/uploads/").h("Location")
    reg.request("PATCH", loc, b"abc")
    assert reg.request("DELETE", loc).status == 204
    r = reg.request("GET", loc)
    assert (r.status, r.code) == (404, "BLOB_UPLOAD_UNKNOWN")


# ---------------------------------------------------------------------- content discovery
def test_tags_list_pagination(reg: Server) -> None:
    _, body = reg.push_image("disc/tags", "a")
    for t in ("b", "c", "d", "e"):
        assert reg.push_manifest("disc/tags", t, body).status == 201
    r = reg.request("GET", "/v2/disc/tags/tags/list")
    assert r.json() == {"name": "disc/tags", "tags": ["a", "b", "c", "d", "e"]}
    r = reg.request("GET", "/v2/disc/tags/tags/list?n=2")
    assert r.json()["tags"] == ["a", "b"] and r.h("Link") == '</v2/disc/tags/tags/list?n=2&last=b>; rel="next"'
    r = reg.request("GET", "/v2/disc/tags/tags/list?n=2&last=b")
    assert r.json()["tags"] == ["c", "d"]
    r = reg.request("GET", "/v2/disc/tags/tags/list?n=10&last=d")
    assert r.json()["tags"] == ["e"] and not r.h("Link")
    assert reg.request("GET", "/v2/disc/tags/tags/list?n=0").json()["tags"] == []
    r = reg.request("GET", "/v2/disc/none/tags/list")
    assert (r.status, r.code) == (404, "NAME_UNKNOWN")


def test_catalog_pagination(reg: Server) -> None:
    for n in ("cat/x1", "cat/x2", "cat/x3"):
        reg.push_image(n, "v")
    repos = reg.request("GET", "/v2/_catalog").json()["repositories"]
    assert {"cat/x1", "cat/x2", "cat/x3"} <= set(repos) and repos == sorted(repos)
    r = reg.request("GET", "/v2/_catalog?n=1&last=cat/x1")
    assert r.json()["repositories"] == ["cat/x2"] and "last=cat/x2" in r.h("Link")


def test_referrers(reg: Server) -> None:
    sd, sbody = reg.push_image("disc/ref", "subject")
    empty = b"{}"
    ed = reg.push_blob("disc/ref", empty)

    def artifact(at: str, ann: str) -> bytes:
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
                           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": ed, "size": 2},
                           "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": ed, "size": 2}],
                           "subject": {"mediaType": OCI_MANIFEST, "digest": sd, "size": len(sbody)},
                           "annotations": {"n": ann}}).encode()

    a1, a2 = artifact("application/vnd.example.sbom", "1"), artifact("application/vnd.example.sig", "2")
    for a in (a1, a2):
        r = reg.push_manifest("disc/ref", sha(a), a)
        assert r.status == 201 and r.h("OCI-Subject") == sd
    r = reg.request("GET", f"/v2/disc/ref/referrers/{sd}")
    assert r.status == 200 and r.h("Content-Type") == OCI_INDEX
    got = {m["digest"]: m for m in r.json()["manifests"]}
    assert set(got) == {sha(a1), sha(a2)}
    assert got[sha(a1)]["artifactType"] == "application/vnd.example.sbom"
    assert got[sha(a1)]["annotations"] == {"n": "1"} and got[sha(a1)]["size"] == len(a1)
    r = reg.request("GET", f"/v2/disc/ref/referrers/{sd}?artifactType=application/vnd.example.sig")
    assert [m["digest"] for m in r.json()["manifests"]] == [sha(a2)]
    assert r.h("OCI-Filters-Applied") == "artifactType"
    # no referrers: 200 and an empty index
    r = reg.request("GET", f"/v2/disc/ref/referrers/{sha(b'lonely')}")
    assert r.status == 200 and r.json()["manifests"] == []
    # a referrer deleted is no longer listed
    assert reg.request("DELETE", f"/v2/disc/ref/manifests/{sha(a1)}").status == 202
    r = reg.request("GET", f"/v2/disc/ref/referrers/{sd}")
    assert [m["digest"] for m in r.json()["manifests"]] == [sha(a2)]
    r = reg.request("GET", "/v2/disc/ref/referrers/sha256:nothex")
    assert (r.status, r.code) == (400, "DIGEST_INVALID")


def test_referrer_pushed_before_its_subject(reg: Server) -> None:
    ed = reg.push_blob("disc/early", b"{}")
    ghost = sha(b"subject that does not exist yet")
    a = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x",
                    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": ed, "size": 2},
                    "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": ghost, "size": 1}}).encode()
    assert reg.push_manifest("disc/early", sha(a), a).status == 201
    assert len(reg.request("GET", f"/v2/disc/early/referrers/{ghost}").json()["manifests"]) == 1


# --------------------------------------------------------------------- content management
def test_delete_tag_manifest_and_blob(reg: Server) -> None:
    d, body = reg.push_image("mgmt/del", "keep")
    assert reg.push_manifest("mgmt/del", "drop", body).status == 201
    assert reg.request("DELETE", "/v2/mgmt/del/manifests/drop").status == 202
    assert reg.request("GET", "/v2/mgmt/del/manifests/drop").status == 404
    assert reg.request("GET", "/v2/mgmt/del/manifests/keep").status == 200
    assert reg.request("DELETE", f"/v2/mgmt/del/manifests/{d}").status == 202
    r = reg.request("GET", f"/v2/mgmt/del/manifests/{d}")
    assert (r.status, r.code) == (404, "MANIFEST_UNKNOWN")
    assert reg.request("GET", "/v2/mgmt/del/manifests/keep").status == 404  # tags of it went too
    assert reg.request("DELETE", f"/v2/mgmt/del/manifests/{d}").status == 404
    layer = json.loads(body)["layers"][0]["digest"]
    assert reg.request("DELETE", f"/v2/mgmt/del/blobs/{layer}").status == 202
    r = reg.request("GET", f"/v2/mgmt/del/blobs/{layer}")
    assert (r.status, r.code) == (404, "BLOB_UNKNOWN")
    assert reg.request("DELETE", f"/v2/mgmt/del/blobs/{layer}").status == 404


def test_delete_disabled_by_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text("version: 0.1\nstorage:\n  delete:\n    enabled: false\n")
    srv = start_registry(tmp_path / "root", "--config", str(cfg))
    try:
        d, _ = srv.push_image("m/x", "v")
        r = srv.request("DELETE", f"/v2/m/x/manifests/{d}")
        assert (r.status, r.code) == (405, "UNSUPPORTED")
        r = srv.request("DELETE", "/v2/m/x/blobs/" + d)
        assert (r.status, r.code) == (405, "UNSUPPORTED")
        assert srv.request("GET", f"/v2/m/x/manifests/{d}").status == 200
    finally:
        srv.stop()
