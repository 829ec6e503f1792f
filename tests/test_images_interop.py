"""Archive interop with real peers: what pallet saves, skopeo reads and converts; what skopeo
and a real dockerd write, pallet loads. The dockerd is a private one started for the session
(own data root and socket, no bridge, no iptables) and torn down after."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.interop, pytest.mark.privileged]

SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")


def skopeo(*args: str) -> str:
    p = subprocess.run([SKOPEO or "skopeo", "--insecure-policy", *args], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, f"skopeo {' '.join(args)}: {p.stderr}"
    return p.stdout


@pytest.fixture
def imported(pallet, busybox_tar: Path) -> str:
    return pallet("import", "-c", 'CMD ["sh"]', str(busybox_tar), "bb:1").out.strip()


@needs_skopeo
def test_save_docker_archive_read_by_skopeo(pallet, imported: str, tmp_path: Path) -> None:
    out = tmp_path / "bb.tar"
    pallet("save", "-o", str(out), "bb:1")
    info = json.loads(skopeo("inspect", f"docker-archive:{out}"))
    layers = json.loads(pallet("inspect", "bb:1").out)[0]["RootFS"]["Layers"]
    assert info["Layers"] == layers
    cfg = json.loads(skopeo("inspect", "--config", f"docker-archive:{out}"))
    assert cfg["config"]["Cmd"] == ["sh"]
    skopeo("copy", f"docker-archive:{out}", f"oci:{tmp_path / 'oci'}:bb")
    assert (tmp_path / "oci" / "index.json").is_file()
    # a docker-archive to stdout is byte-identical to -o (deterministic)
    p = subprocess.run(pallet.argv("save", "bb:1"), capture_output=True, env=pallet.env, timeout=120)
    assert p.returncode == 0 and p.stdout == out.read_bytes()


@needs_skopeo
def test_save_oci_archive_read_by_skopeo(pallet, imported: str, tmp_path: Path) -> None:
    out = tmp_path / "bb-oci.tar"
    pallet("save", "--format", "oci-archive", "-o", str(out), "bb:1")
    info = json.loads(skopeo("inspect", f"oci-archive:{out}"))
    cfg = json.loads(skopeo("inspect", "--config", f"oci-archive:{out}"))
    assert cfg["config"]["Cmd"] == ["sh"] and len(info["Layers"]) == 1
    skopeo("copy", f"oci-archive:{out}", f"oci:{tmp_path / 'oci'}:x")
    # and pallet loads its own OCI archive back, tag and image ID intact
    pallet("rmi", "bb:1")
    assert pallet("load", "-i", str(out)).out.strip() == "Loaded image: bb:1"
    assert json.loads(pallet("inspect", "bb:1").out)[0]["Id"] == imported


@needs_skopeo
def test_save_oci_dir(pallet, imported: str, tmp_path: Path) -> None:
    out = tmp_path / "layout"
    pallet("save", "--format", "oci-dir", "-o", str(out), "bb:1")
    cfg = json.loads(skopeo("inspect", "--config", f"oci:{out}:1"))
    assert cfg["config"]["Cmd"] == ["sh"]
    r = pallet.fail("save", "--format", "oci-dir", "-o", str(out), "bb:1")
    assert "already exists" in r.err
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dir left
    pallet("rmi", "bb:1")
    assert pallet("load", "-i", str(out)).out.strip() == "Loaded image: bb:1"
    assert json.loads(pallet("inspect", "bb:1").out)[0]["Id"] == imported


@needs_skopeo
def test_load_what_skopeo_writes(pallet, imported: str, tmp_path: Path) -> None:
    src = tmp_path / "src.tar"
    pallet("save", "-o", str(src), "bb:1")
    dk = tmp_path / "sk-docker.tar"
    skopeo("copy", f"docker-archive:{src}", f"docker-archive:{dk}:example.com/sk/bb:2")
    oci = tmp_path / "sk-oci.tar"
    skopeo("copy", f"docker-archive:{src}", f"oci-archive:{oci}:latest")
    ocidir = tmp_path / "sk-ocidir"
    skopeo("copy", "--dest-compress", f"docker-archive:{src}", f"oci:{ocidir}:v1")
    pallet("rmi", "bb:1")
    assert pallet("load", "-i", str(dk)).out.strip() == "Loaded image: example.com/sk/bb:2"
    assert json.loads(pallet("inspect", "example.com/sk/bb:2").out)[0]["Id"] == imported
    out = pallet("load", input=oci.read_bytes()).out.strip()  # stdin; an OCI archive with a bare tag
    assert out.startswith("Loaded image ID: sha256:")
    out = pallet("load", "-i", str(ocidir)).out.strip()  # an OCI layout dir, gzip layers
    assert out.startswith("Loaded image ID: sha256:")
    gz_id = out.split()[-1]
    assert json.loads(pallet("inspect", gz_id).out)[0]["RootFS"]["Layers"] == \
        json.loads(pallet("inspect", "example.com/sk/bb:2").out)[0]["RootFS"]["Layers"]
    # save a gzip-layered image as a docker-archive: layers are decompressed for it
    again = tmp_path / "again.tar"
    pallet("save", "-o", str(again), gz_id)
    assert json.loads(skopeo("inspect", f"docker-archive:{again}"))["Layers"] == \
        json.loads(pallet("inspect", gz_id).out)[0]["RootFS"]["Layers"]
    assert "store ok" in pallet("system", "check").out


# -- the session's private dockerd (conftest) ------------------------------------------------

def test_load_docker_save(pallet, dockerd: dict[str, str], busybox_tar: Path, tmp_path: Path) -> None:
    def docker(*args: str) -> str:
        p = subprocess.run(["docker", *args], env=dockerd, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, f"docker {' '.join(args)}: {p.stderr}"
        return p.stdout

    iid = docker("import", "-c", "ENV X=1", str(busybox_tar), "dbb:latest").strip()
    docker("tag", "dbb:latest", "dbb:two")
    out = tmp_path / "docker.tar"
    docker("save", "-o", str(out), "dbb:latest", "dbb:two")
    lines = pallet("load", "-i", str(out)).out.splitlines()
    assert sorted(lines) == ["Loaded image: dbb:latest", "Loaded image: dbb:two"]
    info = json.loads(pallet("inspect", "dbb").out)[0]
    assert info["Id"] == iid and info["Config"]["Env"][-1] == "X=1"
    assert sorted(info["RepoTags"]) == ["dbb:latest", "dbb:two"]
    # and docker loads what pallet saves
    back = tmp_path / "pallet.tar"
    pallet("save", "-o", str(back), "dbb:two")
    docker("rmi", "dbb:latest", "dbb:two")
    assert "Loaded image: dbb:two" in docker("load", "-i", str(back))
    assert docker("image", "inspect", "-f", "{{.Id}}", "dbb:two").strip() == iid
