"""``pallet pull/push/login/logout`` end to end: the real CLI, the real store, distribution 2.8,
skopeo / podman / docker on the other side."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from client_registry import (
    PASSWORD,
    USER,
    htpasswd_yaml,
    make_oci_layout,
    push_busybox_with_skopeo,
    salted_tar,
    skopeo,
    start_registry,
)

pytestmark = [pytest.mark.interop, pytest.mark.privileged]


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory):
    r = start_registry(tmp_path_factory.mktemp("pull-plain"))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def basic_reg(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("pull-basic")
    r = start_registry(tmp, htpasswd_yaml(tmp))
    yield r
    r.stop()


@pytest.fixture
def pl(pallet, tmp_path: Path):  # type: ignore[no-untyped-def]
    pallet.env["DOCKER_CONFIG"] = str(tmp_path / "dockercfg")
    pallet.env.pop("REGISTRY_AUTH_FILE", None)
    return pallet


def _store_clean(root: Path) -> None:
    """No temp files and no unreferenced layers or blobs after a failure."""
    assert not any((root / "tmp").iterdir()) if (root / "tmp").exists() else True
    layers = root / "layers"
    assert not (layers.exists() and any(layers.iterdir())), list(layers.iterdir())


@pytest.mark.parametrize("fmt,comp", [("v2s2", "gzip"), ("oci", "zstd")])
def test_pull_skopeo_pushed(pl, reg, busybox_tar: Path, tmp_path: Path, fmt: str, comp: str) -> None:
    name = f"{reg.host}/cli/{fmt}-{comp}:1"
    push_busybox_with_skopeo(busybox_tar, tmp_path, f"docker://{name}", "--format", fmt,
                             "--dest-compress-format", comp)
    r = pl("pull", name)
    assert "Pull complete" in r.out and r.out.strip().endswith(name)
    rec = json.loads(pl("image", "inspect", name).out)[0]
    assert rec["RepoTags"] == [name]
    assert rec["RepoDigests"][0].startswith(f"{reg.host}/cli/{fmt}-{comp}@sha256:")
    layers = list((pl.root / "layers").iterdir())
    assert len(layers) == 1 and (layers[0] / "diff" / "bin" / "busybox").exists()
    # again: the layer is already stored; pull by digest gives the same image, -q prints the ref only
    again = pl("pull", name).out
    assert "Already exists" not in again and "Image is up to date" in again  # as docker: no layer lines
    dref = rec["RepoDigests"][0]
    assert pl("pull", "-q", dref).out.strip() == dref


def test_pull_platform_from_index(pl, reg, busybox_tar: Path, tmp_path: Path) -> None:
    layout = tmp_path / "multi"
    descs = []
    for arch in ("amd64", "arm64"):
        sub = tmp_path / f"l-{arch}"
        make_oci_layout(salted_tar(busybox_tar, tmp_path / f"{arch}.tar", arch), sub, arch)
        idx = json.loads((sub / "index.json").read_text())["manifests"][0]
        idx["platform"] = {"os": "linux", "architecture": arch}
        idx.pop("annotations", None)
        descs.append(idx)
        shutil.copytree(sub / "blobs", layout / "blobs", dirs_exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": _put_blob(layout, {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descs}),
        "size": 0, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
    _fix_sizes(layout)
    out = skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:latest",
                 f"docker://{reg.host}/cli/multi:1")
    assert out.returncode == 0, out.stderr
    pl("pull", "--platform", "linux/arm64", f"{reg.host}/cli/multi:1")
    cfg = json.loads(pl("image", "inspect", f"{reg.host}/cli/multi:1").out)[0]
    assert cfg["Architecture"] == "arm64"
    r = pl.fail("pull", "--platform", "linux/s390x", f"{reg.host}/cli/multi:1")
    assert "s390x" in r.err and "amd64" in r.err


def _put_blob(layout: Path, obj: dict) -> str:  # type: ignore[type-arg]
    import hashlib

    data = json.dumps(obj).encode()
    d = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / d).write_bytes(data)
    return f"sha256:{d}"


def _fix_sizes(layout: Path) -> None:
    idx = json.loads((layout / "index.json").read_text())
    for m in idx["manifests"]:
        m["size"] = (layout / "blobs" / "sha256" / m["digest"].split(":")[1]).stat().st_size
    (layout / "index.json").write_text(json.dumps(idx))


def test_pull_all_tags_and_unknown(pl, reg, busybox_tar: Path, tmp_path: Path) -> None:
    for t in ("a", "b"):
        push_busybox_with_skopeo(busybox_tar, tmp_path, f"docker://{reg.host}/cli/tags:{t}")
    r = pl("pull", "-a", f"{reg.host}/cli/tags")
    assert f"{reg.host}/cli/tags:a" in r.out and f"{reg.host}/cli/tags:b" in r.out
    r = pl.fail("pull", f"{reg.host}/cli/tags:nope")
    assert "manifest unknown" in r.err and r.err.count("\n") == 1
    r = pl.fail("pull", f"{reg.host}/cli/nothere:1")
    assert "unknown" in r.err


def test_push_then_skopeo_podman_docker_pull(pl, reg, dockerd: dict[str, str], busybox_tar: Path,
                                             tmp_path: Path) -> None:
    pl("import", str(busybox_tar), "bb:1")
    dest = f"{reg.host}/pushed/bb:1"
    r = pl("push", "bb:1", dest)
    assert "Pushed" in r.out and "digest: sha256:" in r.out
    # pushing again: every blob exists; the image records the pushed digest (RepoDigests)
    assert "Layer already exists" in pl("push", "bb:1", dest).out
    rd = json.loads(pl("image", "inspect", "bb:1").out)[0]["RepoDigests"]
    assert any(d.startswith(f"{reg.host}/pushed/bb@sha256:") for d in rd)
    out = skopeo("copy", "--src-tls-verify=false", f"docker://{dest}", f"oci:{tmp_path}/sk:x")
    assert out.returncode == 0, out.stderr
    if shutil.which("podman"):
        import tempfile

        prun = tempfile.mkdtemp(prefix="pprun", dir="/tmp")  # podman caps runroot at 50 chars
        try:
            pod = ["podman", "--root", str(tmp_path / "podman"), "--runroot", prun, "--storage-driver", "vfs"]
            p = subprocess.run([*pod, "pull", "-q", "--tls-verify=false", dest],
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            p = subprocess.run([*pod, "run", "--rm", "--network", "none", dest, "/bin/busybox", "echo", "hi"],
                               capture_output=True, text=True, timeout=120)
            assert p.stdout.strip() == "hi", p.stderr
            subprocess.run([*pod, "rmi", "-a", "-f"], capture_output=True, timeout=60)
        finally:
            shutil.rmtree(prun, ignore_errors=True)
    p = subprocess.run(["docker", "pull", "-q", dest], capture_output=True, text=True, env=dockerd, timeout=120)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(["docker", "run", "--pull", "never", "--rm", "--network", "none", dest, "/bin/busybox", "echo", "hi"],
                       capture_output=True, text=True, env=dockerd, timeout=120)
    assert p.stdout.strip() == "hi", p.stderr
    subprocess.run(["docker", "rmi", "-f", dest], capture_output=True, env=dockerd, timeout=60)
    # round trip: a fresh store pulls what pallet pushed
    pl2 = type(pl)(tmp_path / "root2", tmp_path / "run2")
    pl2("pull", dest)


def test_login_push_logout(pl, basic_reg, busybox_tar: Path, tmp_path: Path) -> None:
    pl("import", str(busybox_tar), "bb:1")
    dest = f"{basic_reg.host}/auth/bb:1"
    r = pl.fail("push", "bb:1", dest)
    assert "unauthorized" in r.err.lower() and basic_reg.host in r.err
    r = pl.fail("login", "-u", USER, "--password-stdin", basic_reg.host, input="Xyzzy-wrong\n")
    assert "unauthorized" in r.err.lower() and basic_reg.host in r.err and "Xyzzy" not in r.err
    assert not (tmp_path / "dockercfg" / "config.json").exists()
    r = pl("login", "-u", USER, "--password-stdin", basic_reg.host, input=PASSWORD + "\n")
    assert r.out == "Login Succeeded\n" and PASSWORD not in r.out + r.err
    cfg = json.loads((tmp_path / "dockercfg" / "config.json").read_text())
    assert basic_reg.host in cfg["auths"]
    pl("push", "bb:1", dest)
    pl("rmi", "bb:1")
    pl("pull", dest)
    assert "Removing login credentials" in pl("logout", basic_reg.host).out
    assert "Not logged in" in pl("logout", basic_reg.host).out
    r = pl.fail("pull", dest)
    assert "unauthorized" in r.err.lower()


@pytest.mark.parametrize("mode", ["corrupt-blob", "drop-always", "digest-lie", "big-manifest", "bad-mediatype"])
def test_failed_pull_leaves_nothing(pl, busybox_tar: Path, mode: str) -> None:
    from lying_registry import LyingRegistry

    liar = LyingRegistry(busybox_tar)
    try:
        liar.mode = mode
        r = pl.fail("pull", f"{liar.host}/lie/img:1")
        assert r.err.startswith("Error: ") and r.err.count("\n") == 1, r.err
        assert pl("images", "-q").out.strip() == ""
        _store_clean(pl.root)
        liar.mode = ""
        pl("pull", f"{liar.host}/lie/img:1")
    finally:
        liar.close()


def test_ensure_image_policies(reg, busybox_tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The --pull hook for run/create/build."""
    from pallet.engine.distribution import ensure_image
    from pallet.errors import InvalidArgument, NotFound
    from pallet.store import Store

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    name = f"{reg.host}/ens/bb:1"
    push_busybox_with_skopeo(busybox_tar, tmp_path, f"docker://{name}")
    with Store.open(tmp_path / "root", tmp_path / "run") as st:
        with pytest.raises(NotFound, match="never"):
            ensure_image(st, name, "never")
        rec = ensure_image(st, name, "missing")
        assert ensure_image(st, name, "never").id == rec.id
        assert ensure_image(st, name, "always").id == rec.id
        with pytest.raises(InvalidArgument):
            ensure_image(st, name, "sometimes")


def test_cli_login_token_registry(pl, tmp_path_factory: pytest.TempPathFactory) -> None:
    from client_registry import TokenIssuer

    tmp = tmp_path_factory.mktemp("cli-token")
    issuer = TokenIssuer(tmp)
    r = start_registry(tmp, issuer.yaml())
    try:
        e = pl.fail("login", "-u", USER, "--password-stdin", r.host, input="nope\n")
        assert "unauthorized" in e.err and r.host in e.err
        assert "Login Succeeded" in pl("login", "-u", USER, "--password-stdin", r.host, input=PASSWORD).out
        e = pl.fail("login", "-u", USER, r.host)  # no terminal to prompt on
        assert "terminal" in e.err
    finally:
        r.stop()
        issuer.close()


def test_pull_then_run(pl, reg, busybox_tar: Path, tmp_path: Path) -> None:
    """What skopeo pushed (OCI, zstd), pallet pulls and runs; run --pull=missing pulls by itself."""
    name = f"{reg.host}/run/bb:1"
    push_busybox_with_skopeo(busybox_tar, tmp_path, f"docker://{name}", "--format", "oci",
                             "--dest-compress-format", "zstd")
    r = pl("run", "--rm", "--network", "none", "--pull", "missing", name, "/bin/busybox", "echo", "hi", timeout=120)
    assert r.out.strip().endswith("hi")
    assert pl("images", "-q", name).out.strip()
    pl("rmi", name)
    r = pl.fail("run", "--rm", "--network", "none", "--pull", "never", name, "true")
    assert "No such image" in r.err or "not known locally" in r.err


def test_interrupted_pull_leaves_nothing(pl, busybox_tar: Path) -> None:
    """Ctrl-C mid-blob: exit 130 promptly, no image, no layer, no temp file; the next pull completes."""
    import signal
    import time

    from lying_registry import LyingRegistry

    liar = LyingRegistry(busybox_tar)
    try:
        liar.mode = "slow"
        p = subprocess.Popen(pl.argv("pull", f"{liar.host}/lie/img:1"), env=pl.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        layer_path = f"/v2/lie/img/blobs/{liar.manifest_layer}"
        while time.monotonic() < deadline and not liar.hits.get(layer_path):
            time.sleep(0.05)
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        rc = p.wait(timeout=30)
        assert rc == 130 and time.monotonic() - t0 < 6  # the whole blob would take ~10 s
        assert pl("images", "-q").out.strip() == ""
        _store_clean(pl.root)
        liar.mode = ""
        pl("pull", f"{liar.host}/lie/img:1")
    finally:
        liar.close()


def test_against_pallets_own_registry(pl, busybox_tar: Path, tmp_path: Path) -> None:
    """push then pull through `pallet registry serve` (htpasswd Basic auth), via login."""
    import socket
    import sys
    import time

    from client_registry import free_port

    htp = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True)
    (tmp_path / "htpasswd").write_text(htp.stdout)
    port = free_port()
    srv = subprocess.Popen([sys.executable, "-m", "pallet", "--root", str(tmp_path / "srvroot"), "registry", "serve",
                            "--addr", f"127.0.0.1:{port}", "--root", str(tmp_path / "regdata"),
                            "--htpasswd", str(tmp_path / "htpasswd"), "--access-log", "off"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert srv.poll() is None, srv.stderr.read().decode() if srv.stderr else ""
                time.sleep(0.1)
        host = f"127.0.0.1:{port}"
        pl("import", str(busybox_tar), "bb:1")
        assert "unauthorized" in pl.fail("push", "bb:1", f"{host}/own/bb:1").err.lower()
        pl("login", "-u", USER, "--password-stdin", host, input=PASSWORD)
        pl("push", "bb:1", f"{host}/own/bb:1")
        pl2 = type(pl)(tmp_path / "root2", tmp_path / "run2")
        pl2.env["DOCKER_CONFIG"] = pl.env["DOCKER_CONFIG"]
        pl2("pull", f"{host}/own/bb:1")
        assert pl2("images", "-q").out.strip()
    finally:
        srv.terminate()
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait(5)
