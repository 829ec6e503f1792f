"""The window size of tty containers when a terminal attaches (issue 3: ``-t`` with a real pty and
window size): ``attach``, ``start -a``/``start -ai`` give the container's pty the attaching
terminal's size and follow its SIGWINCH; ``exec -t`` gets the caller's size. Each check runs the
same way against the session's private dockerd, from a real pty (``pty.fork``)."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Callable

import pytest
from engine_helpers import bb_fixture, wait_until  # noqa: F401  (bb_fixture registers the 'bb' fixture)

pytestmark = pytest.mark.privileged

NO_SIZE = "stty: standard input"  # what busybox's `stty size` says (exit 0) of a 0x0 window


class Engine:
    """pallet or docker, driven by the same argv (``--pull never`` for docker's run/create)."""

    def __init__(self, name: str, base: Callable[..., list[str]], env: dict[str, str]) -> None:
        self.name, self.base, self.env = name, base, env

    def argv(self, verb: str, *args: str) -> list[str]:
        pull = ["--pull", "never"] if self.name == "docker" and verb in ("run", "create") else []
        return self.base(verb, *pull, *args)

    def run(self, verb: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(self.argv(verb, *args), env=self.env, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert not check or p.returncode == 0, (self.name, verb, args, p.returncode, p.stdout, p.stderr)
        return p

    def out(self, verb: str, *args: str) -> str:
        return self.run(verb, *args).stdout.strip()


@pytest.fixture(params=["pallet", "docker"])
def eng(request: pytest.FixtureRequest) -> Engine:
    if request.param == "pallet":
        bb = request.getfixturevalue("bb")
        return Engine("pallet", bb.argv, bb.env)
    env = request.getfixturevalue("dockerd")
    return Engine("docker", lambda *a: ["docker", *a], env)


def _ws(rows: int, cols: int) -> bytes:
    return struct.pack("HHHH", rows, cols, 0, 0)


class Term:
    """A command on a fresh pty (its controlling terminal) of ROWS x COLS; we hold the master."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int, cols: int) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: size the terminal before the command can ask it
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, _ws(rows, cols))
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd, self.out, self.code = pid, fd, b"", None

    def _read(self, timeout: float) -> None:
        r, _, _ = select.select([self.fd], [], [], timeout)
        if r:
            try:
                self.out += os.read(self.fd, 65536)
            except OSError:  # EIO: the command exited and closed the slave
                time.sleep(timeout)

    def expect(self, pattern: bytes, timeout: float = 10, start: int = 0) -> bool:
        deadline = time.monotonic() + timeout
        while pattern not in self.out[start:] and time.monotonic() < deadline:
            self._read(0.1)
        return pattern in self.out[start:]

    def send_until(self, data: bytes, pattern: bytes, timeout: float = 10) -> bool:
        """Type DATA (again every second) until PATTERN shows in what comes after the first try."""
        start = len(self.out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.write(self.fd, data)
            if self.expect(pattern, 1.0, start):
                return True
        return False

    def resize(self, rows: int, cols: int) -> None:
        """The terminal is resized: the kernel signals SIGWINCH to its foreground process group (the command)."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, _ws(rows, cols))

    def wait(self, timeout: float = 20) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
                return self.code
            self._read(0.05)
        return None

    def close(self) -> None:
        if self.code is None and self.wait(0) is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_attach_sets_the_terminal_size_and_follows_sigwinch(eng: Engine) -> None:
    """``run -dit`` starts with a 0x0 pty (docker's too); ``attach`` from a 33x111 terminal sizes
    it, a resize of that terminal reaches the shell, and ``exit`` ends attach with 0."""
    cid = eng.out("run", "-dit", "--network", "none", "busybox", "sh", "-c", "stty size 2>&1; exec sh")
    try:
        assert wait_until(lambda: NO_SIZE in eng.run("logs", cid).stdout, 10), eng.run("logs", cid)
        t = Term(eng.argv("attach", cid), eng.env, 33, 111)
        try:
            assert t.expect(b"/ # ", 10), t.out  # the shell redraws its prompt on the resize (SIGWINCH)
            assert t.send_until(b"stty size\r", b"33 111\r\n"), t.out
            # seen from outside too: the container's console is that pty
            assert eng.out("exec", cid, "stty", "-F", "/dev/console", "size") == "33 111"
            t.resize(44, 122)
            assert t.send_until(b"stty size\r", b"44 122\r\n"), t.out
            assert eng.out("exec", cid, "stty", "-F", "/dev/console", "size") == "44 122"
            os.write(t.fd, b"exit\r")
            assert t.wait(20) == 0, t.out
        finally:
            t.close()
        assert eng.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid) == "exited 0"
    finally:
        eng.run("rm", "-f", cid, check=False)


def test_detach_keys_leave_the_container_running(eng: Engine) -> None:
    """ctrl-p ctrl-q (docker's default detach keys) typed into ``attach`` of a ``-it`` container:
    "read escape sequence", status 1, the container runs on; a ctrl-p followed by anything else
    reaches the container."""
    cid = eng.out("run", "-dit", "--network", "none", "busybox", "sh")
    try:
        t = Term(eng.argv("attach", cid), eng.env, 24, 80)
        try:
            assert t.expect(b"/ # ", 10), t.out
            assert t.send_until(b"echo a-$((1+1))\r", b"a-2\r\n"), t.out
            os.write(t.fd, b"\x10")
            time.sleep(0.2)
            os.write(t.fd, b"echo b-$((2+2))\r")  # the held ctrl-p goes with it
            assert t.expect(b"b-4\r\n", 10), t.out
            os.write(t.fd, b"\x10\x11")
            assert t.expect(b"read escape sequence", 10), t.out
            assert t.wait(10) == 1, t.out
        finally:
            t.close()
        assert eng.out("inspect", "-f", "{{.State.Status}}", cid) == "running"
    finally:
        eng.run("rm", "-f", cid, check=False)


def test_escape_proxy_holds_a_partial_sequence() -> None:
    from pallet.engine.attach import DETACH_KEYS, escape

    assert escape(b"ab\x10", b"", DETACH_KEYS) == (b"ab", b"\x10", False)
    assert escape(b"x", b"\x10", DETACH_KEYS) == (b"\x10x", b"", False)
    assert escape(b"\x11rest", b"\x10", DETACH_KEYS) == (b"", b"", True)
    assert escape(b"ls\x10\x11", b"", DETACH_KEYS) == (b"ls", b"", True)
    assert escape(b"\x10\x11", b"", b"") == (b"\x10\x11", b"", False)  # no tty: no detach keys


@pytest.mark.parametrize("flags", [("-it", "-ai"), ("-t", "-a")], ids=["create-it+start-ai", "create-t+start-a"])
def test_start_attached_gets_the_terminal_size(eng: Engine, flags: tuple[str, str]) -> None:
    create, start = flags
    cid = eng.out("create", create, "--network", "none", "busybox", "sh", "-c", "sleep 0.5; stty size")
    try:
        t = Term(eng.argv("start", start, cid), eng.env, 33, 111)
        try:
            assert t.expect(b"33 111\r", 15), t.out
            assert t.wait(20) == 0, t.out
        finally:
            t.close()
    finally:
        eng.run("rm", "-f", cid, check=False)


def test_exec_tty_gets_the_callers_size(eng: Engine) -> None:
    cid = eng.out("run", "-d", "--network", "none", "busybox", "sleep", "60")
    try:
        for flags in ("-t", "-it"):
            t = Term(eng.argv("exec", flags, cid, "sh", "-c", "sleep 0.3; stty size"), eng.env, 21, 77)
            try:
                assert t.expect(b"21 77\r", 15), (flags, t.out)
                assert t.wait(20) == 0, t.out
            finally:
                t.close()
    finally:
        eng.run("rm", "-f", cid, check=False)


def test_tty_size_is_set_before_the_command_runs(bb) -> None:  # type: ignore[no-untyped-def]
    """process.consoleSize from the caller's terminal, set on the pty before the command runs."""
    eng = Engine("pallet", bb.argv, bb.env)
    cid = eng.out("run", "-d", "--network", "none", "busybox", "sleep", "60")
    try:
        got = []
        for argv in [eng.argv("exec", "-t", cid, "stty", "size")] * 4 + \
                [eng.argv("run", "--rm", "-it", "--network", "none", "busybox", "stty", "size")] * 2:
            t = Term(argv, eng.env, 21, 77)
            try:
                t.wait(20)
                got.append(t.out)
            finally:
                t.close()
        assert all(b"21 77" in o for o in got), got
    finally:
        eng.run("rm", "-f", cid, check=False)


def _monitor_request(runroot: str, msg: object) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(os.path.join(runroot, "monitor.sock"))
        s.sendall(json.dumps(msg).encode() + b"\n")
        line = b""
        while not line.endswith(b"\n"):
            ch = s.recv(4096)
            if not ch:
                break
            line += ch
    return json.loads(line)


def test_resize_without_a_terminal_and_bad_requests(bb) -> None:  # type: ignore[no-untyped-def]
    """No terminal on the attaching side: nothing is resized (docker's attach asks its stdout).
    The monitor's resize op refuses a container without a tty, an unknown one and a bad size
    with one line, and keeps serving."""
    from pallet.engine.attach import resize

    root, runroot = str(bb.root), str(bb.runroot)
    cid = bb("create", "-t", "--network", "none", "busybox", "sh", "-c", "sleep 0.5; stty size 2>&1").out.strip()
    r = bb("start", "-a", cid)  # stdout is a pipe here
    assert r.out.startswith(NO_SIZE), r.out
    bb("rm", cid)

    tty = bb("run", "-dt", "--network", "none", "busybox", "sleep", "60").out.strip()
    plain = bb("run", "-d", "--network", "none", "busybox", "sleep", "60").out.strip()
    assert resize(runroot, root, tty, 12, 34)
    assert bb("exec", tty, "stty", "-F", "/dev/console", "size").out.strip() == "12 34"
    assert not resize(runroot, root, plain, 12, 34)
    assert not resize(runroot, root, "0" * 64, 12, 34)
    reply = _monitor_request(runroot, {"op": "resize", "id": tty, "rows": "x", "cols": 5})
    assert reply.get("exit_code") == 125 and "invalid window size" in str(reply.get("error")), reply
    reply = _monitor_request(runroot, {"op": "resize", "id": plain, "rows": 1, "cols": 5})
    assert "no tty" in str(reply.get("error")), reply
    assert resize(runroot, root, tty, 40, 100)  # still serving
    assert bb("exec", tty, "stty", "-F", "/dev/console", "size").out.strip() == "40 100"
    bb("rm", "-f", tty, plain)
