"""/etc/hosts, /etc/hostname and /etc/resolv.conf as a real dockerd writes them (as root):
the same flags give byte-identical files with ``--network none``; on the default bridge the
hosts file is docker's plus its ``IP HOSTNAME`` line and nothing else."""
from __future__ import annotations

import json
import subprocess

import pytest
from engine_helpers import bb_fixture  # noqa: F401  (registers the 'bb' fixture)

pytestmark = pytest.mark.privileged
SCRIPT = "cat /etc/hosts; echo ==; cat /etc/hostname; echo ==; cat /etc/resolv.conf"
FLAGS = ("--hostname", "hh", "--add-host", "foo:1.2.3.4", "--add-host", "bar:::1")


def test_etc_files_as_docker_writes_them(bb, dockerd: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    def _docker(*args: str) -> str:
        if args[0] == "run":  # never reach for Docker Hub
            args = ("run", "--pull", "never", *args[1:])
        r = subprocess.run(["docker", *args], capture_output=True, text=True, env=dockerd, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    for extra in ((), ("--dns", "9.9.9.9")):
        args = ("run", "--rm", "--network", "none", *FLAGS, *extra, "busybox", "sh", "-c", SCRIPT)
        assert bb(*args).out == _docker(*args), extra
    want_hosts = _docker("run", "--rm", "--network", "none", "busybox", "cat", "/etc/hosts")
    want_resolv = _docker("run", "--rm", "--network", "none", "busybox", "cat", "/etc/resolv.conf")
    bb("run", "-d", "--name", "br", "busybox", "sleep", "60")
    try:
        c = json.loads(bb("inspect", "br").out)[0]
        ip, short = c["NetworkSettings"]["IPAddress"], c["Id"][:12]
        assert bb("exec", "br", "cat", "/etc/hosts").out == want_hosts + f"{ip}\t{short}\n"
        assert bb("exec", "br", "cat", "/etc/hostname").out == f"{short}\n"
        assert bb("exec", "br", "cat", "/etc/resolv.conf").out == want_resolv
    finally:
        bb("rm", "-f", "br", check=False)
