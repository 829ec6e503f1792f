"""The fast argv path of run/create/exec (pallet.cli.fastargs) gives argparse's namespace, or defers."""
from __future__ import annotations

import pytest

from pallet.cli import container_cmd, exec_cmd, fastargs, main

SAME = [
    ["run", "--rm", "busybox", "true"],
    ["run", "--rm", "--network", "none", "busybox", "true"],
    ["run", "--rm", "--network=none", "busybox", "true"],
    ["run", "--net", "host", "busybox"],
    ["run", "-it", "busybox", "sh"],
    ["run", "-dit", "--name", "x", "busybox", "sleep", "1"],
    ["run", "-ite", "A=1", "busybox", "env"],
    ["run", "-iteA=1", "-tie", "B=2", "busybox", "env"],
    ["run", "-eA=1", "-e", "B=2", "--env=C=3", "busybox", "env"],
    ["run", "-v", "/a:/b:ro", "-v", "/c:/d", "-p", "8080:80", "-P", "busybox"],
    ["run", "--pull", "never", "--pull=always", "busybox"],
    ["run", "-h", "host1", "-u", "0:0", "-w", "/tmp", "-m", "64m", "-c", "512", "busybox", "id"],
    ["run", "--rm", "busybox", "--rm", "-e", "X", "ls"],
    ["run", "-p8080:80", "-Pit", "busybox", "sh", "-c", "echo -e x"],
    ["run", "-c512", "--name", "n", "--name", "m", "-ti", "--entrypoint", "", "busybox"],
    ["run", "--name=", "busybox", ""],
    ["run", "busybox"],
    ["run", "-", "x"],
    ["--root", "/tmp/r", "--runroot=/tmp/rr", "run", "busybox"],
    ["--log-level", "warning", "run", "busybox"],
    ["create", "--name", "c1", "--init", "--read-only", "--tmpfs", "/t", "busybox", "true"],
    ["exec", "c1", "true"],
    ["exec", "-it", "-u", "root", "-w", "/", "-e", "A=1", "--env-file", "/f", "c1", "sh", "-c", "x"],
    ["exec", "-d", "--privileged", "c1", "sleep", "1"],
    ["exec", "c1"],
    ["run", "busybox", "ls", "--color", "--network", "--net=x", "--help", "--env-", "-x", "--env"],
]

DEFER = [
    ["run", "--help"], ["exec", "-h", "c"], ["exec", "--help"], ["run"], ["exec"], ["run", "--rm"],
    ["run", "--netw", "none", "busybox"], ["run", "--bogus", "busybox"], ["run", "-e", "-x", "busybox"],
    ["run", "-e=A", "busybox"], ["run", "--rm=1", "busybox"], ["run", "--pull", "sometimes", "busybox"],
    ["run", "--", "busybox"], ["run", "-iz", "busybox"], ["run", "-it=x", "busybox"], ["-v"], ["--log-level", "loud", "run", "busybox"],
    ["--bogus", "run", "busybox"], ["run", "--name"], ["ps"],
    ["run", "busybox", "sh", "--netw"], ["exec", "c1", "x", "--e=1"],
    ["exec", "c1", "--", "ls"], ["run", "busybox", "--", "x"], ["run", "--rm", "busybox", "--rm", "--", "ls"],
]


def _argparse_ns(argv: list[str]) -> dict[str, object]:
    ns = main.build_parser(main._find_verb(argv)).parse_args(argv)
    return vars(ns)


@pytest.mark.parametrize("argv", SAME, ids=" ".join)
def test_fast_path_matches_argparse(argv: list[str]) -> None:
    fast = fastargs.parse(argv)
    assert fast is not None
    assert vars(fast) == _argparse_ns(argv)


@pytest.mark.parametrize("argv", DEFER, ids=" ".join)
def test_fast_path_defers_the_rest(argv: list[str]) -> None:
    assert fastargs.parse(argv) is None


def test_tables_match_the_parsers() -> None:
    """Every option of the argparse parsers of run/create/exec is in the fast tables, same kind."""
    for verb, table in (("run", container_cmd.RUN_FLAGS), ("create", container_cmd.CREATE_FLAGS),
                        ("exec", exec_cmd.EXEC_FLAGS)):
        p = main.build_parser(verb)
        sub = next(a for a in p._actions if a.dest == "verb").choices[verb]
        got = {}
        for a in sub._actions:
            if a.option_strings and a.dest != "help":
                kind = {"_StoreTrueAction": "flag", "_AppendAction": "many", "_StoreAction": "one"}[type(a).__name__]
                got[tuple(a.option_strings)] = (kind, a.dest)
        want = {names: (kind, fastargs.dest_of(names)) for names, kind, _d, _c in table}
        assert got == want, verb
