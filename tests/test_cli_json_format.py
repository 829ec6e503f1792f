"""``{{json ...}}`` in ``--format``/``-f`` templates prints JSON as docker's CLI does (Go's
encoding/json: compact, UTF-8 as is, U+2028/U+2029 escaped; ``<>&`` escaped only in a list
verb's whole row, which docker marshals with ``json.Marshal``), and plain ``{{.X}}`` of a list or
a map as Go's fmt (``[a b]``, ``map[k:v]``). Checked against the session's private dockerd."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from engine_helpers import bb_fixture  # noqa: F401  (bb_fixture registers the 'bb' fixture)

from pallet.cli.fmt import go_json, go_text, render, template
from pallet.errors import InvalidArgument

ODD = ["<a&b>", 'tab\tq"', "\b\f\x01", "é", "x\u2028y"]  # what docker escapes differently from Python


def test_go_json_compact_and_escaped_like_go() -> None:
    assert go_json(["echo", *ODD]) == '["echo","<a&b>","tab\\tq\\"","\\b\\f\\u0001","é","x\\u2028y"]'
    assert go_json({"a": "<x>&", "b": None, "c": True, "d": 3, "e": [], "f": {}}, escape_html=True) == \
        '{"a":"\\u003cx\\u003e\\u0026","b":null,"c":true,"d":3,"e":[],"f":{}}'
    assert go_json("\u2029") == '"\\u2029"'
    assert go_json(["\udcff"]) == '["\ufffd"]' and go_text(["\udcff"]) == "[\ufffd]"  # a non-UTF-8 argument
    # floats in Go's shortest form
    assert [go_json(f) for f in (2.0, 0.5, 1e-7, 1.5e-7, 1e21, 1e20, 1e-6)] == \
        ["2", "0.5", "1e-7", "1.5e-7", "1e+21", "100000000000000000000", "0.000001"]
    obj = {"k": ODD, "n": {"x": [1, 2.5]}}
    assert json.loads(go_json(obj)) == obj and json.loads(go_json(obj, escape_html=True)) == obj


def test_go_text_and_template() -> None:
    assert go_text(["echo", "a b"]) == "[echo a b]"
    assert go_text({"b": "2", "a": ["x", None, False]}) == "map[a:[x <nil> false] b:2]"
    assert go_text(None) == "<no value>" and go_text(True) == "true" and go_text(3.0) == "3"
    obj = {"Config": {"Cmd": ["echo", "<a>"], "Labels": {"k": "v"}}, "State": {"Running": False, "Pid": 0}}
    assert template("{{json .Config.Cmd}}|{{.Config.Cmd}}|{{.State.Running}}|{{ .State.Pid }}", obj) == \
        '["echo","<a>"]|[echo <a>]|false|0'
    assert template("{{json .Config.Labels}} {{.Config.Labels}} {{.Nope}}\\t{{json .Nope}}", obj) == \
        '{"k":"v"} map[k:v] <no value>\tnull'
    assert template("{{json .}}", obj) == go_json(obj)
    with pytest.raises(InvalidArgument):
        template("{{range .Config.Cmd}}", obj)


def test_render_rows_like_docker_formatter() -> None:
    rows = [{"Names": "n", "Command": '"echo <a&b>…"', "ID": "abc"}]
    # a whole row is a map to docker (sorted keys, json.Marshal's HTML escaping); a field is not
    assert render("{{json .}}", rows) == '{"Command":"\\"echo \\u003ca\\u0026b\\u003e…\\"","ID":"abc","Names":"n"}'
    assert render("json", rows) == render("{{json .}}", rows)
    assert render("{{json .Command}}", rows) == '"\\"echo <a&b>…\\""'
    assert render("{{.ID}}:{{.Names}}", rows) == "abc:n"


def test_version_and_info_format(pallet) -> None:  # type: ignore[no-untyped-def]
    v = pallet("version", "--format", "json").out.strip()
    assert v == go_json(json.loads(v)) and ", " not in v
    assert pallet("version", "--format", "{{.Os}}").out == "linux\n"
    assert pallet("info", "--format", "{{json .OSType}}").out == '"linux"\n'


# -- the same container config through pallet and the private dockerd -----------------------------

def _create_args(name: str) -> list[str]:
    return ["--network", "none", "--name", name, "-e", "A=<x>&y", "-l", "k=é€ \u2028", "-v", f"{name}:/data",
            "busybox", "echo", *ODD, "\udcff"]  # the last: the byte 0xff (not UTF-8)


def _docker(env: dict[str, str], *args: str) -> str:
    p = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout.rstrip("\n")


@pytest.mark.privileged
def test_inspect_and_ps_json_like_docker(bb, dockerd) -> None:  # type: ignore[no-untyped-def]
    name = f"pjf{os.getpid()}"
    pid = bb("create", *_create_args(name)).out.strip()
    did = _docker(dockerd, "create", "--pull", "never", *_create_args(name))
    try:
        def both(*args: str) -> tuple[str, str]:
            return bb(*args).out.rstrip("\n"), _docker(dockerd, *args)

        for f in ("{{json .Config.Cmd}}", "{{json .Config.Env}}", "{{json .Config.Labels}}", "{{json .State}}",
                  "{{.Config.Cmd}} {{.State.Running}} {{.Config.Labels}} {{.HostConfig.Memory}}",
                  "{{json .Config.Entrypoint}} {{json .Config.Image}} {{json .Config.Tty}}"):
            ours, theirs = both("inspect", "-f", f, name)
            assert ours == theirs, (f, ours, theirs)
        ours, theirs = both("inspect", "-f", "{{json .Config}}", name)
        # the text as Go writes it (docker's own output goes through go_json unchanged), the same values
        assert go_json(json.loads(theirs)) == theirs and go_json(json.loads(ours)) == ours, (ours, theirs)
        mine, docker = json.loads(ours), json.loads(theirs)
        for k in ("Cmd", "Env", "Labels", "Image", "Entrypoint", "Tty", "OpenStdin", "User", "WorkingDir",
                  "AttachStdin", "AttachStdout", "AttachStderr", "Domainname", "OnBuild", "Volumes"):
            assert mine[k] == docker[k], (k, mine[k], docker[k])
        # ps: a field keeps <>&, the whole row (a map marshalled by docker) escapes them, keys sorted
        ours, theirs = both("ps", "-a", "--filter", f"name={name}", "--format", "{{json .Command}} {{.Labels}}")
        assert ours == theirs, (ours, theirs)
        ours, theirs = both("ps", "-a", "--filter", f"name={name}", "--format", "{{json .}}")
        mine, docker = json.loads(ours), json.loads(theirs)
        assert go_json(docker, escape_html=True) == theirs and go_json(mine, escape_html=True) == ours
        assert list(mine) == sorted(mine) and "\\u003ca\\u0026b\\u003e" in ours
        for k in ("Command", "Image", "Labels", "Names", "State", "Status", "Networks", "Mounts", "Ports",
                  "LocalVolumes"):
            assert mine[k] == docker[k], (k, mine[k], docker[k])
        assert set(docker) - set(mine) <= {"Platform"}, (mine, docker)  # Platform: null with dockerd 20.10
        assert bb("ps", "-a", "--filter", f"name={name}", "--format", "json").out == ours + "\n"
        # images: the same keys, <none> escaped in both
        ours, theirs = both("images", "busybox", "--format", "{{json .}}")
        assert list(json.loads(ours)) == list(json.loads(theirs)) and '"Digest":"\\u003cnone\\u003e"' in ours, \
            (ours, theirs)
        # inspect --format json: the array, compact, on one line (docker >= 23); without a format
        # indented, UTF-8 as is, the non-UTF-8 byte as U+FFFD (docker's)
        one = bb("inspect", "--format", "json", name).out
        pretty = bb("inspect", name).out
        assert one.count("\n") == 1 and json.loads(one) == json.loads(pretty)
        assert one.rstrip("\n") == go_json(json.loads(one))
        assert '\n        "Args": [\n            "<a&b>",' in pretty and '"é",\n            "x\\u2028y",' in pretty
        assert '"\ufffd"\n' in pretty and '"\ufffd"\n' in _docker(dockerd, "inspect", name)
        # network and volume inspect: the same template code
        for verb, ref in (("network", "none"), ("volume", name)):
            one = bb(verb, "inspect", "--format", "json", ref).out
            assert one.count("\n") == 1 and json.loads(one) == json.loads(bb(verb, "inspect", ref).out), one
        ours, theirs = both("volume", "inspect", "-f", "{{.Name}} {{json .Driver}} {{.Scope}}", name)
        assert ours == theirs, (ours, theirs)
        img = bb("image", "inspect", "-f", "{{json .RootFS.Type}} {{.Os}}|{{json .Config.Cmd}}", "busybox").out
        assert img.strip() == _docker(dockerd, "image", "inspect", "-f",
                                      "{{json .RootFS.Type}} {{.Os}}|{{json .Config.Cmd}}", "busybox")
    finally:
        bb("rm", "-f", "-v", pid, check=False)
        bb("volume", "rm", name, check=False)
        subprocess.run(["docker", "rm", "-f", "-v", did], env=dockerd, capture_output=True, timeout=60)
        subprocess.run(["docker", "volume", "rm", name], env=dockerd, capture_output=True, timeout=60)
