"""Nodes -> typed instructions: per-instruction argument rules and errors
(buildkit ``frontend/dockerfile/instructions/parse.go`` and the parser's per-command splitters:
parseMaybeJSON, parseNameVal, parseWords, parseHealthConfig, ...). The classes are in
instructions.py; ``from_node`` is the entry point.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable

from pallet.build.instructions import (
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    ShellDependent,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from pallet.build.parser import DockerfileError, Node
from pallet.build.shell_lex import ShellLex

_FLAGS: dict[str, set[str]] = {
    "from": {"platform"},
    "run": {"mount", "network", "security"},
    "copy": {"from", "chown", "chmod", "link", "parents", "exclude"},
    "add": {"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"},
    "healthcheck": {"interval", "timeout", "start-period", "start-interval", "retries"},
}
_BOOL_FLAGS = {"link", "parents", "keep-git-dir"}
_HEREDOC_WORD = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")


class _Err(Exception):
    pass


# --- helpers -----------------------------------------------------------------------------

def _parse_flags(node: Node) -> dict[str, str | None]:
    allowed = _FLAGS.get(node.cmd, set())
    out: dict[str, str | None] = {}
    for word in node.flags:
        if not word.startswith("--"):
            raise _Err(f"Arg should start with -- : {word}")
        name, eq, value = word[2:].partition("=")
        if name not in allowed:
            raise _Err(f"Unknown flag: {name}")
        if name in out and name != "exclude":
            raise _Err(f"Duplicate flag specified: {name}")
        if not eq and name not in _BOOL_FLAGS:
            raise _Err(f"Missing a value on flag: {name}")
        out[name] = value if eq else None
    return out


def _maybe_json(rest: str) -> list[str] | None:
    """The exec (JSON) form, or None for the shell form."""
    s = rest.lstrip()
    if not s.startswith("["):
        return None
    try:
        val = json.loads(s)
    except ValueError:
        return None
    if not isinstance(val, list):
        return None
    if not all(isinstance(v, str) for v in val):
        raise _Err("when using JSON array syntax, arrays must be comprised of strings only")
    return val


def parse_words(rest: str, escape: str) -> list[str]:
    """Whitespace-split keeping quotes and escape characters in the words (ENV, LABEL, ARG)."""
    words: list[str] = []
    word, quote, in_word, blank_ok = "", "", False, False
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if not in_word:
            if ch.isspace():
                i += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    i += 1
                    continue
                word += ch
                i += 1
                ch = rest[i]
            word += ch
            i += 1
            continue
        if ch.isspace():
            if blank_ok or word:
                words.append(word)
            word, in_word, blank_ok = "", False, False
            i += 1
            continue
        if ch in "'\"":
            quote, blank_ok = ch, True
        if ch == escape:
            if i + 1 == n:
                i += 1
                continue
            word += ch
            i += 1
            ch = rest[i]
        word += ch
        i += 1
    if in_word and (blank_ok or word):
        words.append(word)
    return words


def _name_vals(rest: str, key: str, escape: str) -> list[tuple[str, str]]:
    words = parse_words(rest, escape)
    if not words:
        raise _Err(f"{key} requires at least one argument")
    if "=" not in words[0]:
        parts = rest.split(None, 1)
        if len(parts) < 2:
            raise _Err(f"{key} must have two arguments")
        return [(parts[0], parts[1])]
    out = []
    for w in words:
        if "=" not in w:
            raise _Err(f"Syntax error - can't find = in {w!r}. Must be of the form: name=value")
        k, v = w.split("=", 1)
        if not k:
            raise _Err(f"{key} names can not be blank")
        out.append((k, v))
    return out


_DUR = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT = {"ns": 1, "us": 1000, "µs": 1000, "μs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
         "h": 3600 * 10**9}


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds."""
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise _Err(f"time: invalid duration {text!r}")
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DUR.match(s, pos)
        if not m:
            raise _Err(f"time: invalid duration {text!r}")
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    return sign * int(round(total))


def _duration_flag(flags: dict[str, str | None], name: str) -> int:
    v = flags.get(name)
    if not v:
        return 0
    d = parse_duration(v)
    if d == 0:
        return 0
    if d < 10**6:
        raise _Err(f"Interval {name} cannot be less than 1ms")
    return d


# --- node -> instruction -----------------------------------------------------------------

def from_node(node: Node, escape: str = "\\", filename: str = "Dockerfile") -> Instruction:
    try:
        return _convert(node, escape)
    except _Err as e:
        raise DockerfileError(str(e), node.line, filename) from None


def _convert(node: Node, escape: str) -> Instruction:
    c = node.cmd
    base = {"line": node.line, "end_line": node.end_line, "original": node.original}
    if c not in _BUILDERS:
        raise _Err(f"unknown instruction: {node.original.split(None, 1)[0].upper()}")
    flags = _parse_flags(node)
    return _BUILDERS[c](node, escape, dict(base, flags=flags))


def _from(node: Node, escape: str, b: dict) -> Instruction:
    words = node.args.split()
    if len(words) not in (1, 3):
        raise _Err("FROM requires either one or three arguments")
    name = ""
    if len(words) == 3:
        if words[1].lower() != "as":
            raise _Err("FROM requires either one or three arguments")
        name = words[2].lower()
        if not _STAGE_NAME.match(name):
            raise _Err(f"invalid name for build stage: {words[2]!r}, name can't start with a number or contain symbols")
    return From(**b, base=words[0], stage_name=name)


def _shell_dep(cls: type[ShellDependent]) -> Callable[[Node, str, dict], Instruction]:
    def build(node: Node, escape: str, b: dict) -> Instruction:
        if cls is Run and not node.args.strip():
            raise _Err("RUN requires at least one argument")
        js = _maybe_json(node.args)
        if js is not None:
            return cls(**b, args=js, prepend_shell=False)
        return cls(**b, args=[node.args] if node.args else [], prepend_shell=bool(node.args),
                   heredocs=list(node.heredocs))
    return build


def _shell(node: Node, escape: str, b: dict) -> Instruction:
    js = _maybe_json(node.args)
    if js is None:
        raise _Err("SHELL requires the arguments to be in JSON form")
    if not js:
        raise _Err("SHELL requires at least one argument")
    return Shell(**b, shell=js)


def _env(node: Node, escape: str, b: dict) -> Instruction:
    return Env(**b, pairs=_name_vals(node.args, "ENV", escape))


def _label(node: Node, escape: str, b: dict) -> Instruction:
    return Label(**b, pairs=_name_vals(node.args, "LABEL", escape))


def _arg(node: Node, escape: str, b: dict) -> Instruction:
    words = parse_words(node.args, escape)
    if not words:
        raise _Err("ARG requires at least one argument")
    pairs: list[tuple[str, str | None]] = []
    for w in words:
        if "=" in w:
            k, v = w.split("=", 1)
            if not k:
                raise _Err("ARG names can not be blank")
            pairs.append((k, v))
        else:
            pairs.append((w, None))
    return Arg(**b, pairs=pairs)


def _copy(is_add: bool) -> Callable[[Node, str, dict], Instruction]:
    def build(node: Node, escape: str, b: dict) -> Instruction:
        name = "ADD" if is_add else "COPY"
        js = _maybe_json(node.args)
        args = js if js is not None else node.args.split()
        if len(args) < 2 and not (node.heredocs and len(args) >= 1):
            raise _Err(f"{name} requires at least two arguments, but only {len(args)} provided")
        if len(args) < 2:
            raise _Err(f"{name} requires at least two arguments")
        dest = args[-1]
        if _HEREDOC_WORD.match(dest):
            raise _Err(f"{name} cannot accept a heredoc as a destination")
        docs = {h.name: h for h in node.heredocs}
        sources, contents = [], []
        for src in args[:-1]:
            m = _HEREDOC_WORD.match(src)
            if m and js is None and m.group(3):
                hname = ShellLex().process_word(m.group(3), {})
                h = docs.get(hname)
                if h is not None:
                    data = h.content
                    if h.chomp:
                        data = re.sub(r"(?m)^\t+", "", data)
                    contents.append((h.name, data, h.expand))
                    continue
            sources.append(src)
        return Copy(**b, sources=sources, dest=dest, contents=contents, is_add=is_add)
    return build


def _single(cls: type[Instruction], label: str) -> Callable[[Node, str, dict], Instruction]:
    def build(node: Node, escape: str, b: dict) -> Instruction:
        if not node.args:
            raise _Err(f"{label} requires exactly one argument")
        return cls(**b, value=node.args)  # type: ignore[call-arg]
    return build


def _expose(node: Node, escape: str, b: dict) -> Instruction:
    words = node.args.split()
    if not words:
        raise _Err("EXPOSE requires at least one argument")
    return Expose(**b, values=words)


def _volume(node: Node, escape: str, b: dict) -> Instruction:
    js = _maybe_json(node.args)
    words = js if js is not None else node.args.split()
    if not words:
        raise _Err("VOLUME requires at least one argument")
    for w in words:
        if not w.strip():
            raise _Err("VOLUME specified can not be an empty string")
    return Volume(**b, values=words)


def _healthcheck(node: Node, escape: str, b: dict) -> Instruction:
    parts = node.args.split(None, 1)
    if not parts:
        raise _Err("HEALTHCHECK requires at least one argument")
    typ = parts[0].upper()
    rest = parts[1] if len(parts) > 1 else ""
    flags = b["flags"]
    if typ == "NONE":
        if rest.strip() or flags:
            raise _Err("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(**b, test=["NONE"])
    if typ != "CMD":
        raise _Err(f'Unknown type "{parts[0]}" in HEALTHCHECK (try CMD)')
    js = _maybe_json(rest)
    if js is not None:
        test = ["CMD", *js]
    else:
        if not rest.strip():
            raise _Err("Missing command after HEALTHCHECK CMD")
        test = ["CMD-SHELL", rest]
    retries = 0
    if flags.get("retries"):
        try:
            retries = int(flags["retries"])
        except ValueError:
            raise _Err(f"strconv.ParseInt: parsing {flags['retries']!r}: invalid syntax") from None
        if retries < 0:
            raise _Err(f"--retries cannot be negative ({retries})")
    return Healthcheck(**b, test=test, interval=_duration_flag(flags, "interval"),
                       timeout=_duration_flag(flags, "timeout"),
                       start_period=_duration_flag(flags, "start-period"),
                       start_interval=_duration_flag(flags, "start-interval"), retries=retries)


def _onbuild(node: Node, escape: str, b: dict) -> Instruction:
    if not node.args.strip():
        raise _Err("ONBUILD requires at least one argument")
    trigger = node.args.split(None, 1)[0].upper()
    if trigger == "ONBUILD":
        raise _Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise _Err(f"{trigger} isn't allowed as an ONBUILD trigger")
    expr = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original)
    return Onbuild(**b, expression=expr)


def _maintainer(node: Node, escape: str, b: dict) -> Instruction:
    if not node.args:
        raise _Err("MAINTAINER requires exactly one argument")
    return Maintainer(**b, value=node.args)


_BUILDERS: dict[str, Callable[[Node, str, dict], Instruction]] = {
    "from": _from, "run": _shell_dep(Run), "cmd": _shell_dep(Cmd), "entrypoint": _shell_dep(Entrypoint),
    "shell": _shell, "env": _env, "label": _label, "arg": _arg, "copy": _copy(False), "add": _copy(True),
    "workdir": _single(Workdir, "WORKDIR"), "user": _single(User, "USER"),
    "stopsignal": _single(StopSignal, "STOPSIGNAL"), "maintainer": _maintainer, "expose": _expose,
    "volume": _volume, "healthcheck": _healthcheck, "onbuild": _onbuild,
}
