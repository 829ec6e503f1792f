"""Config effects and docker's history texts of metadata instructions (pure functions)."""
from __future__ import annotations

import pytest

from pallet.build import dispatch
from pallet.build.stages import load
from pallet.errors import InvalidArgument


def inst(line: str):  # type: ignore[no-untyped-def]
    return load("FROM x\n" + line + "\n").stages[0].commands[0]


@pytest.mark.parametrize("ns,text", [
    (0, "0s"), (5 * 10**9, "5s"), (90 * 10**9, "1m30s"), (3600 * 10**9, "1h0m0s"), (1500 * 10**6, "1.5s"),
    (300 * 10**6, "300ms"), (10**3, "1µs"), (7, "7ns"), (3723 * 10**9, "1h2m3s"),
])
def test_go_duration(ns: int, text: str) -> None:
    assert dispatch.go_duration(ns) == text


def test_env_replaces_in_place_and_old_value_rule() -> None:
    cfg = {"Env": ["PATH=/bin", "A=1", "B=2"]}
    dispatch.apply(cfg, inst("ENV A=3 C=4"), cmd_set=False)
    assert cfg["Env"] == ["PATH=/bin", "A=3", "B=2", "C=4"]


def test_expose_ranges_and_protocols() -> None:
    cfg: dict = {}
    by = dispatch.apply(cfg, inst("EXPOSE 80 8000-8002/udp 53/UDP"), cmd_set=False)
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "8000/udp", "8001/udp", "8002/udp", "53/udp"}
    assert by == "/bin/sh -c #(nop)  EXPOSE 53/UDP 80 8000-8002/udp"   # docker sorts them
    with pytest.raises(InvalidArgument):
        dispatch.apply({}, inst("EXPOSE abc"), cmd_set=False)


@pytest.mark.parametrize("sig,ok", [("SIGTERM", True), ("TERM", True), ("9", True), ("SIGRTMIN+3", True),
                                    ("NOPE", False), ("0", False)])
def test_stopsignal(sig: str, ok: bool) -> None:
    if ok:
        cfg: dict = {}
        dispatch.apply(cfg, inst(f"STOPSIGNAL {sig}"), cmd_set=False)
        assert cfg["StopSignal"] == sig
    else:
        with pytest.raises(InvalidArgument, match="Invalid signal"):
            dispatch.apply({}, inst(f"STOPSIGNAL {sig}"), cmd_set=False)


def test_cmd_entrypoint_shell_and_history_texts() -> None:
    cfg: dict = {"Cmd": ["old"]}
    assert dispatch.apply(cfg, inst('SHELL ["/bin/bash", "-c"]'), cmd_set=False) == \
        "/bin/bash -c #(nop)  SHELL [/bin/bash -c]"
    assert dispatch.apply(cfg, inst("ENTRYPOINT run me"), cmd_set=False) == \
        '/bin/bash -c #(nop)  ENTRYPOINT ["/bin/bash" "-c" "run me"]'
    assert "Cmd" not in cfg
    dispatch.apply(cfg, inst("CMD x y"), cmd_set=False)
    assert cfg["Cmd"] == ["/bin/bash", "-c", "x y"]
    dispatch.apply(cfg, inst('ENTRYPOINT ["e"]'), cmd_set=True)
    assert cfg["Cmd"] == ["/bin/bash", "-c", "x y"] and cfg["Entrypoint"] == ["e"]


def test_workdir_and_run_texts() -> None:
    cfg: dict = {"WorkingDir": "/a"}
    assert dispatch.workdir(cfg, "b/../c") == ("/a/c", "/bin/sh -c #(nop) WORKDIR /a/c")
    assert dispatch.workdir(cfg, "/abs") == ("/abs", "/bin/sh -c #(nop) WORKDIR /abs")
    assert dispatch.run_created_by(["/bin/sh", "-c", "x"], {"B": "2", "A": "1"}) == "|2 A=1 B=2 /bin/sh -c x"
    assert dispatch.run_created_by(["echo", "x"], {}) == "echo x"


def test_begin_stage_default_path() -> None:
    assert dispatch.begin_stage(None)["Env"] == ["PATH=" + dispatch.DEFAULT_PATH]
    assert dispatch.begin_stage({"Env": ["PATH=/x"], "OpenStdin": True}) == {"Env": ["PATH=/x"]}
