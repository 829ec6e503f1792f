"""The engine's wiring of networks (bridge default, -p, host, none, container:X) and of ttys."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import time
import urllib.request

import pytest
from engine_helpers import bb_fixture, wait_until  # noqa: F401  (bb_fixture registers the 'bb' fixture)

pytestmark = pytest.mark.privileged


def test_network_modes_and_published_port(bb, tmp_path) -> None:  # type: ignore[no-untyped-def]
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("from pallet\n")
    port = 20000 + os.getpid() % 20000
    bb("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "-v", f"{www}:/www:ro", "busybox",
       "httpd", "-f", "-p", "80", "-h", "/www")

    def get() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                return r.read().decode()
        except OSError:
            return ""

    assert wait_until(lambda: get() == "from pallet\n", 10)
    assert bb("port", "web").out.strip() == f"80/tcp -> 127.0.0.1:{port}"
    ip = bb("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web").out.strip()
    assert ip.count(".") == 3
    assert f"127.0.0.1:{port}->80/tcp" in bb("ps").out
    # container:X shares web's network namespace: its loopback reaches web's httpd
    r = bb("run", "--rm", "--network", "container:web", "busybox", "wget", "-qO-", "http://127.0.0.1/")
    assert r.out == "from pallet\n"
    r = bb("run", "--rm", "--network", "none", "busybox", "sh", "-c", "ls /sys/class/net")
    assert r.out.split() == ["lo"]
    r = bb("run", "--rm", "--network", "host", "busybox", "hostname")
    assert r.out.strip() == os.uname().nodename
    assert bb("inspect", "-f", "{{.HostConfig.NetworkMode}}", "web").out.strip() == "bridge"
    bb("rm", "-f", "web")
    assert not get()


def test_tty_has_window_size_and_raw_io(bb) -> None:  # type: ignore[no-untyped-def]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 99, 0, 0))
    p = subprocess.Popen(bb.argv("run", "--rm", "-it", "--network", "none", "busybox", "sh", "-c",
                                 "tty; stty size; read x; echo got-$x"),
                         env=bb.env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 20
    sent = False
    while time.monotonic() < deadline and p.poll() is None:
        import select

        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                out += os.read(master, 4096)
            except OSError:
                break
        if b"33 99" in out and not sent:
            os.write(master, b"hello\r")
            sent = True
    p.wait(timeout=20)
    try:
        while True:
            r, _, _ = __import__("select").select([master], [], [], 0.2)
            if not r:
                break
            out += os.read(master, 4096)
    except OSError:
        pass
    os.close(master)
    text = out.decode(errors="replace")
    assert "/dev/pts/0" in text and "33 99" in text and "got-hello" in text, text
    assert p.returncode == 0


def test_runc_runtime_same_contract(bb) -> None:  # type: ignore[no-untyped-def]
    import shutil

    if not shutil.which("runc"):
        pytest.skip("runc is not installed")
    r = bb("run", "--rm", "--runtime", "runc", "busybox", "sh", "-c", "echo hi; exit 3", check=False)
    assert (r.rc, r.out) == (3, "hi\n")
    assert bb.fail("run", "--rm", "--runtime", "runc", "--network", "none", "busybox", "nosuch").rc == 127
    bb("run", "-d", "--name", "rc", "--runtime", "runc", "--network", "none", "busybox", "sleep", "30")
    assert bb("exec", "rc", "echo", "in").out == "in\n"
    bb("pause", "rc")
    bb("unpause", "rc")
    bb("stop", "-t", "1", "rc")
    assert bb("inspect", "-f", "{{.State.ExitCode}}", "rc").out.strip() == "137"
    bb("rm", "rc")
