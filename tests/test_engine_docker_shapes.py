"""Output shapes that must match docker's byte for byte or column for column: the json-file log
line, `ps`/`stats` table headers of `--format 'table ...'`, `ps`'s quoted .Command, `stats`'
binary memory units, `top`'s columns (all checked against the anchor dockerd by hand)."""
from __future__ import annotations

import re

import pytest
from engine_helpers import bb_fixture  # noqa: F401  (bb_fixture registers the 'bb' fixture)

pytestmark = pytest.mark.privileged


def test_log_line_is_dockers_json_file_bytes(bb) -> None:  # type: ignore[no-untyped-def]
    bb("run", "--name", "lg", "busybox", "sh", "-c", "printf 'a<b>&c é\\t\"q\"\\n'; echo e >&2")
    path = bb("inspect", "-f", "{{.LogPath}}", "lg").out.strip()
    with open(path, "rb") as f:
        lines = sorted(f.read().decode().splitlines(), key=lambda ln: '"stream":"stderr"' in ln)  # stdout first
    # what dockerd 20.10's json-file driver writes for the same output (Go's escaping, compact)
    assert re.fullmatch(r'\{"log":"a\\u003cb\\u003e\\u0026c é\\u0009\\"q\\"\\n","stream":"stdout",'
                        r'"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"\}', lines[0]), lines[0]
    assert lines[1].startswith('{"log":"e\\n","stream":"stderr","time":"')
    assert bb("logs", "lg").out == 'a<b>&c é\t"q"\n'
    bb("rm", "lg")


def test_ps_stats_top_columns(bb) -> None:  # type: ignore[no-untyped-def]
    bb("run", "-d", "--name", "sh1", "busybox", "sh", "-c", "sleep 60 & sleep 61; wait")
    out = bb("ps", "--format", "table {{.ID}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.CreatedAt}}\\t{{.Names}}").out
    head, row = out.splitlines()[:2]
    assert re.split(r"\s{2,}", head) == ["CONTAINER ID", "COMMAND", "CREATED", "CREATED AT", "NAMES"]
    assert '"sh -c \'sleep 60 & s…"' in row  # quoted, cut at 20 like docker's
    assert bb("ps", "--no-trunc", "--format", "{{.Command}}").out.strip() == '"sh -c \'sleep 60 & sleep 61; wait\'"'
    out = bb("stats", "--no-stream", "--format",
             "table {{.Container}}\\t{{.ID}}\\t{{.CPUPerc}}\\t{{.MemUsage}}\\t{{.MemPerc}}\\t{{.PIDs}}", "sh1").out
    head, row = out.splitlines()
    assert re.split(r"\s{2,}", head) == ["CONTAINER", "CONTAINER ID", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"]
    cells = re.split(r"\s{2,}", row)
    assert cells[0] == "sh1" and re.fullmatch(r"[\d.]+(B|KiB|MiB) / [\d.]+(MiB|GiB|TiB)", cells[3]), row
    assert cells[-1] == "3"
    lines = bb("top", "sh1").out.splitlines()
    assert lines[0].startswith("UID                 PID                 PPID")
    cmds = sorted(ln[ln.index("00:00:00") + 8:].strip() for ln in lines[1:])
    assert cmds == ["sh -c sleep 60 & sleep 61; wait", "sleep 60", "sleep 61"], lines
    assert bb("top", "sh1", "-o", "pid,comm").out.splitlines()[0].split() == ["PID", "COMMAND"]
    bb("rm", "-f", "sh1")


def _pty_run(bb, script: str, on_out) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 99, 0, 0))
    p = subprocess.Popen(bb.argv("run", "--rm", "-it", "--network", "none", "busybox", "sh", "-c", script),
                         env=bb.env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    out = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and p.poll() is None:
        if select.select([master], [], [], 0.2)[0]:
            try:
                out += os.read(master, 4096)
            except OSError:
                break
        on_out(out, p, slave, master)
    p.wait(timeout=20)
    while select.select([master], [], [], 0.2)[0]:
        try:
            out += os.read(master, 4096)
        except OSError:
            break
    os.close(slave)
    os.close(master)
    return p.returncode, out.decode(errors="replace")


def test_sigwinch_resizes_the_container_tty(bb) -> None:  # type: ignore[no-untyped-def]
    import fcntl
    import os
    import signal
    import struct
    import termios

    done = []

    def step(out, p, slave, master):  # type: ignore[no-untyped-def]
        if b"33 99" in out and not done:
            # the user's terminal is resized: its size changes and the CLI gets SIGWINCH
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 41, 123, 0, 0))
            p.send_signal(signal.SIGWINCH)
            done.append(1)
            import time

            time.sleep(0.3)
            os.write(master, b"go\r")

    rc, text = _pty_run(bb, "stty size; read x; stty size", step)
    assert rc == 0 and "33 99" in text and "41 123" in text, text


def test_untested_flags_round_trip(bb) -> None:  # type: ignore[no-untyped-def]
    """attach, exec -d, logs --since, --stop-timeout, --cpu-shares, --restart always|unless-stopped,
    --privileged and --security-opt no-new-privileges from the CLI."""
    import time

    from engine_helpers import wait_until

    bb("run", "-d", "--name", "at", "busybox", "sh", "-c", "echo early; sleep 1; echo late; exit 3")
    r = bb("attach", "at", check=False, timeout=20)
    assert r.rc == 3 and "late" in r.out and "early" not in r.out, r  # attach shows output from now on
    assert bb("logs", "--since", "1h", "at").out.split() == ["early", "late"]
    assert bb("logs", "--since", "2099-01-01T00:00:00Z", "at").out == ""
    bb("run", "-d", "--name", "st", "--stop-timeout", "1", "--cpu-shares", "512", "busybox",
       "sh", "-c", "trap '' TERM; sleep 60 & wait")
    assert bb("inspect", "-f", "{{.Config.StopTimeout}} {{.HostConfig.CpuShares}}", "st").out.split() == ["1", "512"]
    bb("exec", "-d", "st", "sh", "-c", "echo x > /tmp/mark")
    assert wait_until(lambda: bb("exec", "st", "cat", "/tmp/mark", check=False).out == "x\n", 5)
    t = time.monotonic()
    bb("stop", "st")  # TERM is ignored: killed after --stop-timeout 1 s, not docker's default 10 s
    assert time.monotonic() - t < 8
    assert bb("inspect", "-f", "{{.State.ExitCode}}", "st").out.strip() == "137"
    for pol in ("always", "unless-stopped"):
        bb("run", "-d", "--name", pol, "--restart", pol, "busybox", "sh", "-c", "sleep 0.2; exit 0")
    assert wait_until(lambda: all(int(bb("inspect", "-f", "{{.RestartCount}}", n).out) >= 2
                                  for n in ("always", "unless-stopped")), 15)
    bb("stop", "-t", "0", "unless-stopped")
    n = bb("inspect", "-f", "{{.RestartCount}}", "unless-stopped").out
    time.sleep(1)
    assert bb("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "unless-stopped").out.split() == [n.strip(),
                                                                                                     "exited"]
    out = bb("run", "--rm", "--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs",
             "/proc/self/status").out
    assert out.split() == ["NoNewPrivs:", "1"]
    out = bb("run", "--rm", "--privileged", "busybox", "grep", "-E", "^(Seccomp|CapEff):", "/proc/self/status").out
    caps = dict(ln.split() for ln in out.strip().splitlines())
    assert caps["Seccomp:"] == "0" and int(caps["CapEff:"], 16) > 0xA80425FB
    bb("rm", "-f", "at", "st", "always", "unless-stopped")
    r = bb("rm", "-f", "nosuchctr", check=False)  # docker 28: the error is printed, the exit is 0
    assert r.rc == 0 and "No such container: nosuchctr" in r.err
    assert bb.fail("rm", "nosuchctr").rc == 1


def test_attach_after_stdin_ends_still_gets_output_and_code(bb, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """docker's attach/start -i: the end of the client's stdin closes the container's stdin only;
    the output and the exit code still come. Stdin may be /dev/null or a file (not pollable)."""
    import subprocess

    bb("run", "-d", "--name", "ai", "busybox", "sh", "-c", "sleep 1; echo bye; exit 4")
    r = subprocess.run(bb.argv("start", "-i", "ai"), env=bb.env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=20)
    assert (r.returncode, r.stdout) == (4, b"bye\n"), r
    f = tmp_path / "in"
    f.write_text("from-a-file\n")
    bb("run", "-d", "-i", "--name", "ai2", "busybox", "sh", "-c", "sleep 0.5; cat; echo end; exit 5")
    with open(f, "rb") as fin:
        r = subprocess.run(bb.argv("attach", "ai2"), env=bb.env, stdin=fin, capture_output=True, timeout=20)
    assert (r.returncode, r.stdout) == (5, b"from-a-file\nend\n"), r
    r = bb("start", "-ai", "ai2", input="piped\n", timeout=20, check=False)
    assert (r.rc, r.out) == (5, "piped\nend\n"), r
    bb("rm", "ai", "ai2")
