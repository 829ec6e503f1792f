"""``-t`` with ``--runtime runc`` (runc's console-socket contract): run -t/-it, create -t + start -a,
run -dit + attach, exec -t/-it; window size (initial and SIGWINCH), raw input, exit codes, and
nothing left behind when the command fails. Driven through real ptys (``pty.fork``: the pallet
CLI gets the pty as its controlling terminal, as in a shell).

crun 1.8 refuses this host's hybrid cgroup layout ("cgroups in hybrid mode not supported"):
its test skips there with that reason; the runc tests prove the contract."""
from __future__ import annotations

import fcntl
import glob
import os
import pty
import select
import shutil
import signal
import struct
import termios
import time

import pytest
from engine_helpers import bb_fixture, wait_until  # noqa: F401  (bb_fixture registers the 'bb' fixture)

pytestmark = [pytest.mark.privileged,
              pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")]


def _winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def is_raw(master: int) -> bool:
    """The pallet CLI put its terminal in raw mode (tcgetattr on a pty master reads the slave's
    settings): typed input from now on is not flushed by its tcsetattr."""
    return not termios.tcgetattr(master)[3] & termios.ICANON


def drive(bb, args: list[str], steps: list[tuple[object, object]], *, rows: int = 33, cols: int = 99,
          timeout: float = 20.0) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    """Run ``pallet ARGS`` on a fresh pty of ROWSxCOLS; each step waits until its bytes appeared in
    the output (since the previous step) or its predicate(master) holds, then writes bytes or calls
    fn(master, pid of the CLI). Returns the output and the exit code."""
    argv = bb.argv(*args)
    pid, master = pty.fork()
    if pid == 0:  # the child: exec at once (never back into pytest)
        try:
            os.execve(argv[0], argv, bb.env)
        finally:
            os._exit(127)
    _winsize(master, rows, cols)
    out = b""
    mark = 0
    deadline = time.monotonic() + timeout
    status = None
    try:
        while time.monotonic() < deadline:
            trigger = steps[0][0] if steps else None
            if callable(trigger) and trigger(master) or isinstance(trigger, bytes) and trigger in out[mark:]:
                if isinstance(trigger, bytes):
                    mark = out.index(trigger, mark) + len(trigger)
                action = steps.pop(0)[1]
                if isinstance(action, bytes):
                    os.write(master, action)
                else:
                    action(master, pid)  # type: ignore[operator]
                continue
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: the child and its pty slave are gone
                    data = b""
                if not data:
                    break
                out += data
        end = time.monotonic() + 5
        while status is None and time.monotonic() < end:
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid:
                status = st
            else:
                time.sleep(0.02)
    finally:
        if status is None:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            _, status = os.waitpid(pid, 0)
        os.close(master)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)


def _no_console_sockets(bb) -> None:  # type: ignore[no-untyped-def]
    left = glob.glob(f"{bb.runroot}/**/console-*.sock", recursive=True)
    assert not left, left


def test_run_it_tty_winsize_winch_input_exit(bb) -> None:  # type: ignore[no-untyped-def]
    out, rc = drive(bb, ["run", "--rm", "-it", "--runtime", "runc", "--network", "none", "busybox", "sh", "-c",
                         "tty; stty size; read x; echo got-$x; stty size; exit 7"],
                    [(b"33 99", lambda m, _p: _winsize(m, 41, 123)), (is_raw, b"hello\r")])
    assert "/dev/pts/0" in out and "33 99" in out, out
    assert "got-hello" in out and "41 123" in out, out  # raw input reached read; SIGWINCH resized the pty
    assert rc == 7, out
    # ^C typed at the terminal: raw mode passes the byte to the container's pty, whose line
    # discipline sends SIGINT to the foreground job (sleep; sh as pid 1 then exits 130)
    out, rc = drive(bb, ["run", "--rm", "-it", "--runtime", "runc", "--network", "none", "busybox", "sh", "-c",
                         "echo ready; sleep 5; echo after"], [(b"ready", b"\x03")])
    assert "after" not in out and rc == 130, (out, rc)
    # SIGTERM sent to the foreground CLI reaches the container's pid 1 (its trap runs)
    out, rc = drive(bb, ["run", "--rm", "-t", "--runtime", "runc", "--network", "none", "busybox", "sh", "-c",
                         "trap 'echo got-term; exit 9' TERM; echo ready; i=0; "
                         "while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done"],
                    [(b"ready", lambda _m, p: os.kill(p, signal.SIGTERM))])
    assert "got-term" in out and rc == 9, (out, rc)
    _no_console_sockets(bb)


def test_run_t_without_stdin_and_create_start_a(bb) -> None:  # type: ignore[no-untyped-def]
    r = bb("run", "--rm", "-t", "--runtime", "runc", "--network", "none", "busybox", "sh", "-c",
           "tty; echo line; exit 3", check=False)
    assert r.rc == 3 and r.out == "/dev/pts/0\r\nline\r\n", r
    cid = bb("create", "-t", "--runtime", "runc", "--network", "none", "busybox", "sh", "-c",
             "tty; [ -t 0 ] && echo stdin-is-tty; exit 4").out.strip()
    r = bb("start", "-a", cid, check=False)
    assert r.rc == 4 and "/dev/pts/0\r\nstdin-is-tty\r\n" in r.out, r
    assert bb("inspect", "-f", "{{.Config.Tty}} {{.HostConfig.Runtime}}", cid).out.strip() == "true runc"
    bb("rm", cid)
    _no_console_sockets(bb)


def test_run_dit_then_attach(bb) -> None:  # type: ignore[no-untyped-def]
    bb("run", "-dit", "--name", "ta", "--runtime", "runc", "--network", "none", "busybox", "sh", "-c",
       "echo started; read x; echo got-$x; exit 4")
    time.sleep(0.3)
    out, rc = drive(bb, ["attach", "ta"], [(is_raw, b"hi\r")])
    assert "got-hi" in out and rc == 4, (out, rc)
    assert bb("wait", "ta").out.strip() == "4"
    assert "started" in bb("logs", "ta").out
    bb("rm", "ta")
    _no_console_sockets(bb)


def test_exec_t_and_it(bb) -> None:  # type: ignore[no-untyped-def]
    bb("run", "-d", "--name", "te", "--runtime", "runc", "--network", "none", "busybox", "sleep", "60")
    r = bb("exec", "-t", "te", "sh", "-c", "tty; exit 6", check=False)
    assert r.rc == 6 and r.out == "/dev/pts/0\r\n", r
    out, rc = drive(bb, ["exec", "-it", "te", "sh", "-c", "stty size; read x; echo got-$x; stty size; exit 5"],
                    [(b"20 70", lambda m, _p: _winsize(m, 25, 80)), (is_raw, b"yes\r")], rows=20, cols=70)
    assert "20 70" in out and "got-yes" in out and "25 80" in out and rc == 5, (out, rc)
    # failures: not found 127, one line, nothing left in the container's run dir
    r = bb.fail("exec", "-t", "te", "nosuch")
    assert r.rc == 127 and len(r.err.strip().splitlines()) == 1, r
    r = bb.fail("exec", "-it", "te", "/etc/passwd", input="")
    assert r.rc == 126, r
    _no_console_sockets(bb)
    cid = bb("inspect", "-f", "{{.Id}}", "te").out.strip()
    left = sorted(os.listdir(bb.runroot / "containers" / cid))
    assert not [f for f in left if f.startswith(("exec-", "console-"))], left
    bb("rm", "-f", "te")


def test_run_t_failure_leaves_nothing(bb) -> None:  # type: ignore[no-untyped-def]
    r = bb.fail("run", "--rm", "-t", "--runtime", "runc", "--network", "none", "busybox", "nosuch")
    assert r.rc == 127 and len(r.err.strip().splitlines()) == 1, r
    r = bb.fail("run", "-t", "--name", "tf", "--runtime", "runc", "busybox", "/etc/passwd")
    assert r.rc == 126, r
    cid = bb("inspect", "-f", "{{.Id}}", "tf").out.strip()
    assert not os.path.ismount(bb.runroot / "containers" / cid / "bundle" / "rootfs")
    bb("rm", "tf")
    _no_console_sockets(bb)
    run_dirs = bb.runroot / "containers"
    assert not run_dirs.exists() or not list(run_dirs.iterdir()), list(run_dirs.iterdir())  # no bundle left
    # the bb fixture then checks: no mount, cgroup, process or container dir left


def test_crun_tty_where_crun_works(bb) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("crun") is None:
        pytest.skip("crun is not installed")
    r = bb("run", "--rm", "--runtime", "crun", "--network", "none", "busybox", "true", check=False)
    if r.rc != 0 and "hybrid" in r.err:
        pytest.skip(f"crun refuses this host: {r.err.strip()}")
    out, rc = drive(bb, ["run", "--rm", "-it", "--runtime", "crun", "--network", "none", "busybox", "sh", "-c",
                         "tty; stty size; read x; echo got-$x; exit 7"], [(b"33 99", b"hello\r")])
    assert "/dev/pts/0" in out and "got-hello" in out and rc == 7, (out, rc)
    _no_console_sockets(bb)
