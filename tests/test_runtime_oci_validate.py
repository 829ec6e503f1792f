"""The bundles pallet makes pass the OCI runtime-tools bundle validation.

``native/oci-validate`` (built by scripts/setup.sh into .venv/bin) runs runtime-tools' ``validate``
library (Debian's golang-github-opencontainers-runtime-tools-dev) on a bundle directory with the
host-specific checks on, platform linux, and prints one violation a line (exit 1) or nothing
(exit 0). It is run here with ``-level should``: SHOULD-level findings fail too.

Checked: ``pallet.runtime.spec.default_spec`` bundles (what bench/engine.sh hands runc) for each
kind of flag; the config.json of containers the engine created and started with docker's flags
(the built-in runtime keeps it in its state dir ``<runroot>/runtime/<id>/config.json``, its rootfs
being the overlay mounted inside the container: ``/proc/<pid>/root`` stands for it); the bundle
the engine writes for runc (``<runroot>/containers/<id>/bundle``, validated in place); and that
the validator does fail on broken bundles.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import bb_fixture  # noqa: F401  (registers the 'bb' fixture)

from pallet.runtime import spec as rspec

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "native" / "oci-validate" / "main.go"
GOPATH = "/usr/share/gocode"
LIBRARY = Path(GOPATH, "src/github.com/opencontainers/runtime-tools/validate")


@pytest.fixture(scope="session")
def validator(tmp_path_factory: pytest.TempPathFactory) -> str:
    """setup.sh's binary when it is current, else one built here (offline, GOPATH mode)."""
    built = REPO / ".venv" / "bin" / "oci-validate"
    if built.exists() and built.stat().st_mtime >= SOURCE.stat().st_mtime:
        return str(built)
    if shutil.which("go") is None or not LIBRARY.is_dir():
        pytest.skip("oci-validate needs go and golang-github-opencontainers-runtime-tools-dev (scripts/setup.sh)")
    out = tmp_path_factory.mktemp("oci-validate")
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOCACHE=str(out / "cache"), GOFLAGS="",
               GOPROXY="off", CGO_ENABLED="0")
    p = subprocess.run(["go", "build", "-o", str(out / "oci-validate"), "./native/oci-validate"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr
    return str(out / "oci-validate")


def validate(validator: str, bundle: Path) -> tuple[int, str, str]:
    p = subprocess.run([validator, "-level", "should", str(bundle)], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def make_bundle(where: Path, spec: dict[str, Any], rootfs: Path | str) -> Path:
    """``where`` with config.json and ``rootfs`` a link to the given root (followed by the checks)."""
    where.mkdir(parents=True)
    (where / "config.json").write_text(json.dumps(spec))
    os.symlink(rootfs, where / "rootfs")
    return where


DEFAULT_SPEC_CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "tty-env-cwd-hostname": {"terminal": True, "env": ["A=1", "B=two words"], "cwd": "/tmp", "hostname": "box"},
    "non-root-user": {"uid": 65534, "gid": 65534, "additional_gids": [65534, 1]},
    "caps-nnp": {"cap_add": ["SYS_ADMIN", "CAP_NET_ADMIN"], "cap_drop": ["NET_RAW", "chown"],
                 "no_new_privileges": True},
    "cap-drop-all": {"cap_drop": ["ALL"], "cap_add": ["KILL"]},
    "privileged": {"privileged": True},
    "read-only-tmpfs-binds": {"read_only": True, "tmpfs": {"/run": "size=1m,mode=755", "/t": ""},
                              "binds": [("/etc", "/host-etc", True), ("/tmp", "/host-tmp", False)]},
    "resources": {"memory": 64 << 20, "memory_swap": -1, "cpus": 0.5, "cpu_shares": 512, "pids_limit": 50},
    "network-host-cgroups-path": {"network": "host", "cgroups_path": "/pallet/oci-validate"},
    "userns": {"userns": (0, 100000, 65536)},
    "rlimits-annotations": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}],
                            "annotations": {"org.example.key": "value"}},
    "seccomp-unconfined": {"seccomp": "unconfined"},
}


@pytest.mark.parametrize("case", list(DEFAULT_SPEC_CASES))
def test_default_spec_bundle_passes(validator: str, busybox_rootfs: Path, tmp_path: Path, case: str) -> None:
    spec = rspec.default_spec(["/bin/sh", "-c", "true"], **DEFAULT_SPEC_CASES[case])
    rc, out, err = validate(validator, make_bundle(tmp_path / "b", spec, busybox_rootfs))
    assert (rc, out, err) == (0, "", ""), f"{case}: {out}{err}"


def test_default_spec_absolute_rootfs_passes(validator: str, busybox_rootfs: Path, tmp_path: Path) -> None:
    """As bench/engine.sh writes it: root.path the absolute path of <bundle>/rootfs."""
    b = tmp_path / "b"
    spec = rspec.default_spec(["true"], str(b / "rootfs"), hostname="bench")
    assert validate(validator, make_bundle(b, spec, busybox_rootfs)) == (0, "", "")


BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "relative cwd": (lambda s: s["process"].update(cwd="tmp"), 'cwd "tmp" is not an absolute path'),
    "unknown namespace": (lambda s: s["linux"]["namespaces"].append({"type": "bogus"}), "namespaces"),
    "unknown capability": (lambda s: s["process"]["capabilities"]["bounding"].append("CAP_BOGUS"), "CAP_BOGUS"),
    "no args": (lambda s: s["process"].update(args=[]), "args"),
    "relative mount destination": (lambda s: s["mounts"].append({"destination": "mnt", "type": "tmpfs",
                                                                 "source": "tmpfs"}), '"mnt" is not absolute'),
    "effective not permitted": (lambda s: s["process"]["capabilities"]["permitted"].remove("CAP_KILL"),
                                'effective capability "CAP_KILL"'),
    "other spec version": (lambda s: s.update(ociVersion="1.1.0"), '"1.1.0"'),
    "hostname without uts namespace": (lambda s: s["linux"].update(
        namespaces=[n for n in s["linux"]["namespaces"] if n["type"] != "uts"]), "UTS namespace"),
}


def test_validator_fails_on_broken_bundles(validator: str, busybox_rootfs: Path, tmp_path: Path) -> None:
    good = rspec.default_spec(["/bin/sh"], hostname="box")
    assert validate(validator, make_bundle(tmp_path / "good", good, busybox_rootfs))[0] == 0
    for i, (what, (breaks, says)) in enumerate(BROKEN.items()):
        spec = copy.deepcopy(good)
        breaks(spec)
        rc, out, _ = validate(validator, make_bundle(tmp_path / f"bad{i}", spec, busybox_rootfs))
        assert rc == 1 and says in out, f"{what}: rc {rc}, {out!r}"
    missing = tmp_path / "no-rootfs"
    missing.mkdir()
    (missing / "config.json").write_text(json.dumps(good))
    rc, out, _ = validate(validator, missing)
    assert rc == 1 and "cannot find the root path" in out, out
    (missing / "config.json").write_text('{"ociVersion": "1.0.2", "process": {"args": 5}}')
    assert validate(validator, missing)[0] == 1  # not even a spec


# docker flags -> a check that the config.json read is that container's
ENGINE_CASES: list[tuple[list[str], Callable[[dict[str, Any]], bool]]] = [
    (["-e", "A=1", "-e", "B=two words", "-w", "/tmp", "-u", "nobody"],
     lambda s: "A=1" in s["process"]["env"] and s["process"]["cwd"] == "/tmp" and s["process"]["user"]["uid"] == 65534),
    (["--cap-add", "SYS_ADMIN", "--cap-drop", "NET_RAW"],
     lambda s: "CAP_SYS_ADMIN" in s["process"]["capabilities"]["bounding"]
     and "CAP_NET_RAW" not in s["process"]["capabilities"]["bounding"]),
    (["--privileged"], lambda s: "seccomp" not in s["linux"]),
    (["--read-only", "--tmpfs", "/scratch:size=1m", "-v", "{vol}:/data:ro"],
     lambda s: s["root"]["readonly"] and {"/scratch", "/data"} <= {m["destination"] for m in s["mounts"]}),
    (["--memory", "64m", "--cpus", "0.5", "--pids-limit", "50"],
     lambda s: s["linux"]["resources"]["pids"]["limit"] == 50
     and s["linux"]["resources"]["memory"]["limit"] == 64 << 20),
    (["--security-opt", "no-new-privileges"], lambda s: s["process"]["noNewPrivileges"] is True),
    (["--network", "host"], lambda s: "network" not in [n["type"] for n in s["linux"]["namespaces"]]),
    (["-t", "--init", "--hostname", "box"], lambda s: s["process"]["terminal"] and s["hostname"] == "box"),
    ([], lambda s: True),  # the default network
]


@pytest.mark.privileged
def test_created_containers_pass(bb, validator: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    vol = tmp_path / "vol"
    vol.mkdir()
    failures = []
    for i, (flags, landed) in enumerate(ENGINE_CASES):
        argv = [f.format(vol=vol) for f in flags]
        if "--network" not in argv and argv:
            argv = ["--network", "none", *argv]
        cid = bb("create", *argv, "busybox", "/bin/sleep", "30").out.strip()
        try:
            bb("start", cid)
            pid = int(bb("inspect", "-f", "{{.State.Pid}}", cid).out)
            spec = json.loads((bb.runroot / "runtime" / cid / "config.json").read_text())
            assert landed(spec), f"{flags}: not in {spec}"
            rc, out, err = validate(validator, make_bundle(tmp_path / f"b{i}", spec, f"/proc/{pid}/root"))
            if (rc, out, err) != (0, "", ""):
                failures.append(f"{flags}: {out}{err}")
        finally:
            bb("rm", "-f", cid)
    assert not failures, "\n".join(failures)


@pytest.mark.privileged
def test_runc_bundle_passes_in_place(bb, validator: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The bundle handed to runc: config.json beside the overlay rootfs the engine mounted."""
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    (tmp_path / "vol").mkdir()
    cid = bb("create", "--runtime", "runc", "--network", "none", "-e", "A=1", "--read-only", "-v",
             f"{tmp_path / 'vol'}:/data", "--memory", "64m", "--cap-drop", "ALL", "busybox", "/bin/sleep", "30").out.strip()
    try:
        bb("start", cid)
        bundle = bb.runroot / "containers" / cid / "bundle"
        assert (bundle / "rootfs" / "bin" / "sleep").exists()
        assert validate(validator, bundle) == (0, "", "")
    finally:
        bb("rm", "-f", cid)
