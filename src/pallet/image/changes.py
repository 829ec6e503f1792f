"""``--change`` instructions as ``docker import`` / ``docker commit`` accept them: the
Dockerfile instructions that only touch the image config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR), each in JSON (exec) or shell form.

``apply_changes(config, ["CMD [\"sh\"]", "ENV A=1"])`` returns a new container-config dict (the
``config`` member of an image config); the input is not modified. The builder may reuse
``split_words`` and ``parse_exec_or_shell``.
"""
from __future__ import annotations

import copy
import json
import posixpath
from collections.abc import Iterable
from typing import Any

from pallet.errors import InvalidArgument

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME",
           "WORKDIR")


def split_words(text: str) -> list[str]:
    """Split on unquoted whitespace; quotes group and are removed, backslash escapes (as the
    Dockerfile parser does for ENV/LABEL values)."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    in_word = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and quote != "'" and i + 1 < len(text):
            cur.append(text[i + 1])
            in_word = True
            i += 2
            continue
        if quote:
            if c == quote:
                quote = ""
            else:
                cur.append(c)
        elif c in "\"'":
            quote = c
            in_word = True
        elif c.isspace():
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        else:
            cur.append(c)
            in_word = True
        i += 1
    if quote:
        raise InvalidArgument(f"unmatched quote in {text!r}")
    if in_word:
        words.append("".join(cur))
    return words


def parse_json_array(text: str) -> list[str] | None:
    """The JSON form ``["a", "b"]``, or None when ``text`` is not a JSON array of strings."""
    t = text.strip()
    if not t.startswith("["):
        return None
    try:
        v = json.loads(t)
    except ValueError:
        return None
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    return None


def parse_exec_or_shell(args: str) -> tuple[list[str], bool]:
    """(argv, is_shell_form): the shell form runs under ``/bin/sh -c``."""
    v = parse_json_array(args)
    if v is not None:
        return v, False
    return ["/bin/sh", "-c", args.strip()], True


def _key_values(instr: str, args: str) -> list[tuple[str, str]]:
    """``K=V K2="v 2"`` or the legacy ``K V with spaces`` form (ENV, LABEL)."""
    words = split_words(args)
    if not words:
        raise InvalidArgument(f"{instr} requires at least one argument")
    if "=" not in words[0]:
        key, _, rest = args.strip().partition(" ")
        if not rest.strip():
            raise InvalidArgument(f"{instr} {key} must have a value")
        vals = split_words(rest)
        return [(key, " ".join(vals))]
    out = []
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise InvalidArgument(f"{instr}: {w!r} is not KEY=VALUE")
        out.append((k, v))
    return out


def parse_change(text: str) -> tuple[str, str]:
    instr, _, args = text.strip().partition(" ")
    if not instr:
        raise InvalidArgument("empty --change")
    up = instr.upper()
    if up not in ALLOWED:
        raise InvalidArgument(f"{instr} is not a valid change command (allowed: {', '.join(ALLOWED)})")
    return up, args.strip()


def apply_change(cfg: dict[str, Any], instr: str, args: str, cmd_set: bool = False) -> None:
    """Apply one parsed instruction to a container-config dict, in place. ``cmd_set``: a CMD
    came earlier in the same set of changes (then ENTRYPOINT keeps it, as docker's builder)."""
    if instr in ("CMD", "ENTRYPOINT"):
        if not args.strip():
            raise InvalidArgument(f"{instr} requires at least one argument")
        argv, _ = parse_exec_or_shell(args)
        cfg["Cmd" if instr == "CMD" else "Entrypoint"] = argv
        if instr == "ENTRYPOINT" and not cmd_set:
            cfg["Cmd"] = None  # as docker: a new ENTRYPOINT resets an inherited CMD
    elif instr == "ENV":
        env = list(cfg.get("Env") or [])
        for k, v in _key_values(instr, args):
            env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
        cfg["Env"] = env
    elif instr == "LABEL":
        labels = dict(cfg.get("Labels") or {})
        for k, v in _key_values(instr, args):
            labels[k] = v
        cfg["Labels"] = labels
    elif instr == "EXPOSE":
        ports = dict(cfg.get("ExposedPorts") or {})
        for p in split_words(args):
            ports[_port(p)] = {}
        cfg["ExposedPorts"] = ports
    elif instr == "VOLUME":
        vols = dict(cfg.get("Volumes") or {})
        paths = parse_json_array(args)
        for v in paths if paths is not None else split_words(args):
            if not v:
                raise InvalidArgument("VOLUME specified can not be an empty string")
            vols[v] = {}
        cfg["Volumes"] = vols
    elif instr == "ONBUILD":
        sub = args.split(None, 1)[0].upper() if args.strip() else ""
        if sub in ("ONBUILD", "FROM", "MAINTAINER", ""):
            raise InvalidArgument(f"{sub or 'empty'} isn't allowed as an ONBUILD trigger")
        cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [args]
    elif instr == "STOPSIGNAL":
        _one(instr, args)
        cfg["StopSignal"] = args.strip()
    elif instr == "USER":
        _one(instr, args)
        cfg["User"] = args.strip()
    elif instr == "WORKDIR":
        _one(instr, args)
        path = args.strip()
        cfg["WorkingDir"] = posixpath.normpath(posixpath.join(cfg.get("WorkingDir") or "/", path))
    else:  # pragma: no cover - parse_change filters
        raise InvalidArgument(f"unknown instruction {instr}")


def _one(instr: str, args: str) -> None:
    if len(split_words(args)) != 1:
        raise InvalidArgument(f"{instr} requires exactly one argument")


def _port(p: str) -> str:
    num, _, proto = p.partition("/")
    proto = (proto or "tcp").lower()
    lo, _, hi = num.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()) or proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid port {p!r} in EXPOSE")
    return f"{num}/{proto}"


def apply_changes(config: dict[str, Any] | None, changes: Iterable[str]) -> dict[str, Any]:
    """A new container-config with ``changes`` applied in order (bad ones raise InvalidArgument
    before anything is written anywhere)."""
    cfg = copy.deepcopy(config or {})
    cmd_set = False
    for c in changes:
        instr, args = parse_change(c)
        apply_change(cfg, instr, args, cmd_set)
        cmd_set = cmd_set or instr == "CMD"
    return cfg
