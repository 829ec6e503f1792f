"""Registry config (distribution's YAML keys, flags win), 429 TOOMANYREQUESTS, and the
in-process RegistryThread other tests use."""
from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from registry_helpers import free_port, pallet_argv, start_registry

from pallet.distribution.server import config as cfg
from pallet.errors import InvalidArgument

pytestmark = pytest.mark.timeout(120)


def test_config_keys_and_flags_win(tmp_path: Path) -> None:
    f = tmp_path / "c.yml"
    f.write_text("""version: 0.1
http: {addr: ":5999", tls: {certificate: /c.pem, key: /k.pem}}
storage: {filesystem: {rootdirectory: /srv/reg}, delete: {enabled: false}, cache: {blobdescriptor: inmemory}}
auth: {htpasswd: {realm: R, path: /h}}
log: {accesslog: {disabled: true}}
pallet: {workers: 3, max_concurrent: 7}
notifications: {endpoints: []}
""")
    c = cfg.load(str(f))
    assert (c.addr, c.root, c.delete_enabled, c.tls_cert, c.tls_key) == ("0.0.0.0:5999", "/srv/reg", False,
                                                                       "/c.pem", "/k.pem")
    assert (c.htpasswd, c.htpasswd_realm, c.access_log, c.workers, c.max_concurrent) == ("/h", "R", "off", 3, 7)
    cfg.merge(c, addr="127.0.0.1:1", root="/other", workers=None)
    assert (c.addr, c.root, c.workers) == ("127.0.0.1:1", "/other", 3)


@pytest.mark.parametrize("text", ["http: [unclosed", "- a list", "pallet: {workers: many}"])
def test_bad_config_files(tmp_path: Path, text: str) -> None:
    f = tmp_path / "c.yml"
    f.write_text(text)
    with pytest.raises(InvalidArgument):
        cfg.load(str(f))
    p = subprocess.run(pallet_argv("registry", "serve", "--config", str(f), "--root", str(tmp_path / "r")),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 125 and p.stderr.startswith("Error: registry config") and p.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_port_in_use_fails_cleanly(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = subprocess.run(pallet_argv("registry", "serve", "--addr", f"127.0.0.1:{port}", "--root",
                                       str(tmp_path / "r")), capture_output=True, text=True, timeout=30)
    assert p.returncode == 125 and "cannot listen on" in p.stderr
    assert not (tmp_path / "r").exists()


def test_too_many_requests(tmp_path: Path) -> None:
    srv = start_registry(tmp_path / "root", "--max-concurrent", "1")
    try:
        loc = srv.request("POST", "/v2/q/x/blobs/uploads/").h("Location")
        hold = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        hold.sendall(f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc".encode())
        deadline = time.monotonic() + 10
        r = srv.request("GET", "/v2/")
        while r.status != 429 and time.monotonic() < deadline:
            time.sleep(0.05)
            r = srv.request("GET", "/v2/")
        assert (r.status, r.code) == (429, "TOOMANYREQUESTS") and r.h("Retry-After") == "1"
        hold.close()
        deadline = time.monotonic() + 10
        while srv.request("GET", "/v2/").status != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.request("GET", "/v2/").status == 200
    finally:
        srv.stop()


def test_registry_thread(tmp_path: Path) -> None:
    from pallet.distribution.server.serve import RegistryThread

    with RegistryThread(tmp_path / "reg") as reg:
        assert reg.host.startswith("127.0.0.1:") and reg.host != f"127.0.0.1:{free_port()}"
        with urllib.request.urlopen(f"{reg.url}/v2/", timeout=5) as r:
            assert r.status == 200 and r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{reg.url}/v2/", timeout=2)


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    import signal

    srv = start_registry(tmp_path / "root", "--workers", "2")
    assert srv.proc is not None
    kids = [int(p) for p in (Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split())]
    assert len(kids) == 2
    srv.stop(signal.SIGKILL)

    def running(pid: int) -> bool:  # gone, or a zombie waiting for its new parent to reap it
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, IndexError):
            return False

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(running(k) for k in kids):
        time.sleep(0.05)
    assert not [k for k in kids if running(k)]
