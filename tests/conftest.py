"""Shared fixtures: an isolated pallet root per test, a CLI runner, and a busybox rootfs
tarball made from Debian's busybox-static (there is no Docker Hub here)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

IS_ROOT = os.geteuid() == 0
BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="needs root")
    for item in items:
        if "privileged" in item.keywords:
            item.add_marker(skip)


@dataclass
class Result:
    rc: int
    out: str
    err: str


class Pallet:
    """Runs the real ``pallet`` CLI against an isolated root and runroot."""

    def __init__(self, root: Path, runroot: Path) -> None:
        self.root = root
        self.runroot = runroot
        self.env = dict(os.environ, PALLET_ROOT=str(root), PALLET_RUNROOT=str(runroot))

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pallet", *args]

    def __call__(self, *args: str, input: bytes | str | None = None, check: bool = True,
                 timeout: float = 120) -> Result:
        data = input.encode() if isinstance(input, str) else input
        p = subprocess.run(self.argv(*args), input=data, capture_output=True, env=self.env,
                           timeout=timeout)
        r = Result(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))
        if check and r.rc != 0:
            raise AssertionError(f"pallet {' '.join(args)} exited {r.rc}\nstdout: {r.out}\nstderr: {r.err}")
        return r

    def fail(self, *args: str, input: bytes | str | None = None, timeout: float = 120) -> Result:
        """Run a command that must fail: non-zero exit and a one-line error."""
        r = self(*args, input=input, check=False, timeout=timeout)
        assert r.rc != 0, f"pallet {' '.join(args)} unexpectedly succeeded: {r.out}"
        return r


@pytest.fixture
def pallet(tmp_path: Path) -> Iterator[Pallet]:
    root = tmp_path / "root"
    runroot = tmp_path / "run"
    yield Pallet(root, runroot)
    _prune_networks(root, runroot)


# pallet's nft tables and PALLET-* chains on the host when the session started (any root's:
# benchmarks, other suites running beside this one); filled by _networks_down_at_exit
FIREWALL_BEFORE: set[str] = set()


@pytest.fixture(scope="session", autouse=True)
def _networks_down_at_exit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end of the session, take down what any test root under the session's temp dir
    left active (bridges, nft tables): roots made by other fixtures than ``pallet`` too. Then
    fail the run if a bridge, nft table or PALLET-* chain of one of its roots is still there."""
    if IS_ROOT:
        from pallet.network.firewall import present

        FIREWALL_BEFORE.update(present())
    yield
    if not IS_ROOT:
        return
    base = tmp_path_factory.getbasetemp()
    for root in pallet_roots(base):
        try:
            _prune_networks(root, _runroot_of(root))
        except Exception:  # noqa: BLE001 - best effort at exit; what stays is reported below
            pass
    left = network_leftovers(base, FIREWALL_BEFORE)
    assert not left, f"the session left network state of its pallet roots on the host: {left}"


@pytest.fixture(autouse=True)
def _test_roots_down(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test with a ``tmp_path``, take down the networks of the pallet roots under it
    that the ``pallet`` fixture does not own (a test's own ``Pallet(tmp_path / "root", ...)``),
    so that no test keeps a bridge (pallet0) and its rules up for the rest of the session."""
    tmp = request.getfixturevalue("tmp_path") if IS_ROOT and "tmp_path" in request.fixturenames else None
    yield
    if tmp is None:
        return
    for root in pallet_roots(tmp, depth=2):
        if not ("pallet" in request.fixturenames and root == tmp / "root"):
            _prune_networks(root, _runroot_of(root))


def pallet_roots(base: Path, depth: int = 3) -> list[Path]:
    """The pallet roots (a ``networks`` dir with configs) under BASE, DEPTH levels down, each
    once: symlinks (pytest's ``NAMEcurrent``) are not followed. Pruning a root through such a
    second path once took its bridge down but left its rules, under the other path's name."""
    out: list[Path] = []

    def walk(d: Path, n: int) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if not e.is_dir(follow_symlinks=False):
                continue
            if e.name == "networks":
                if any(f.endswith(".json") and not f.endswith(".endpoints.json") for f in os.listdir(e.path)):
                    out.append(d)
            elif n > 0:
                walk(Path(e.path), n - 1)

    walk(base, depth)
    return out


def _runroot_of(root: Path) -> Path:
    """The fixtures' layout (DIR/root + DIR/run), else pallet's default (ROOT/run)."""
    sib = root.parent / "run"
    return sib if (sib / "networks").is_dir() or not (root / "run").is_dir() else root / "run"


def network_leftovers(base: Path, before: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """What of the pallet roots under BASE is up on the host: their nft tables and PALLET-*
    chains (those in BEFORE excepted; a root's items carry the hash of its path, so other
    roots' and engines' rules are never counted) and their bridges (same name and pallet's MAC
    for the network: another root's same-named bridge is not counted)."""
    from pallet.network.firewall import names_for, present
    from pallet.network.manager import Networks, bridge_exists, owned

    hashes = set()
    for dirpath, dirnames, _files in os.walk(base):
        if dirpath.count(os.sep) - str(base).count(os.sep) >= 3:
            dirnames.clear()
        hashes.add(names_for(dirpath).fwd[-8:])
    left = sorted(x for x in present() - before if x[-8:] in hashes and x[-9] in "-_")
    for root in pallet_roots(base):
        left += [f"bridge {n.bridge} of network {n.name} of {root}" for n in Networks(root).store.all()
                 if bridge_exists(n.bridge) and owned(n)]
    return left


def _prune_networks(root: Path, runroot: Path) -> None:
    """Take down the bridges and nft rules a test's root activated (left up otherwise: a
    network stays active until ``network rm``/``prune``), so tests leave the host as found."""
    if IS_ROOT and (root / "networks").is_dir():
        from pallet.network.manager import Networks

        Networks(root, runroot).prune()


def make_busybox_rootfs(dest: Path) -> Path:
    """A minimal busybox root: /bin/busybox + applet links, /etc/passwd and /etc/group."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (apt-get install busybox-static)")
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest, 0o755)  # mktemp dirs are 0700: a non-root container user could not traverse "/"
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        if a != "busybox" and not (dest / "bin" / a).exists():
            os.symlink("busybox", dest / "bin" / a)
    (dest / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return dest


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("bbroot"))


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Path:
    """A rootfs tarball (what ``docker import`` takes)."""
    out = tmp_path_factory.mktemp("bbtar") / "busybox.tar"
    with tarfile.open(out, "w") as tf:
        tf.add(busybox_rootfs, arcname=".")
    return out


@pytest.fixture(scope="session")
def dockerd(busybox_tar: Path) -> Iterator[dict[str, str]]:
    """A private dockerd for the session (docker parity and interop checks), with
    ``busybox:latest`` imported from the same rootfs tarball; the environment to reach it is
    yielded (``DOCKER_HOST``). Started here rather than borrowed from the host so a test never
    depends on a daemon it did not start; skipped where dockerd is not installed or not root."""
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("dockerd is not installed")
    if not IS_ROOT:
        pytest.skip("dockerd needs root")
    d = Path(tempfile.mkdtemp(prefix="pdk", dir="/tmp"))  # short: containerd's socket path limit
    sock = d / "d.sock"
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}")
    log = open(d / "dockerd.log", "wb")
    proc = subprocess.Popen(["dockerd", "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
                             "-H", f"unix://{sock}", "--pidfile", str(d / "pid"), "--bridge=none",
                             "--iptables=false", "--ip6tables=false", "--ip-masq=false"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 40
        while True:
            if proc.poll() is not None:
                pytest.skip(f"dockerd exited {proc.returncode} at start: {(d / 'dockerd.log').read_text()[-300:]}")
            if subprocess.run(["docker", "version"], env=env, capture_output=True, timeout=10).returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.skip("dockerd did not come up within 40 s")
            time.sleep(0.2)
        p = subprocess.run(["docker", "import", str(busybox_tar), "busybox:latest"], env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        yield env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        for sub in ("exec", "data"):
            subprocess.run(["umount", "-R", str(d / sub)], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)
