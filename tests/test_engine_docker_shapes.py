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
