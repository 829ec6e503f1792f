"""Dockerfile lines -> nodes (buildkit ``frontend/dockerfile/parser``).

What happens here, in order: parser directives at the top (``# escape=``, ``# syntax=``,
``# check=``; only before the first comment, blank line or instruction), comments, line
continuations with the escape token (comment lines and blank lines inside a continuation are
skipped), the instruction word and its ``--flags``, and here-documents (``<<EOF``, ``<<-EOF``,
several per line) for RUN, COPY and ADD. Arguments stay raw text; ``instructions.py`` gives
them meaning per instruction.
"""
from __future__ import annotations

import re

from pallet.build.records import field, record
from pallet.build.shell_lex import ShellLex
from pallet.errors import InvalidArgument

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_ALLOWED_DIRECTIVES = {"syntax", "escape", "check"}
_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_HEREDOC_CMDS = {"run", "copy", "add"}


class DockerfileError(InvalidArgument):
    """A syntax error, reported as ``Dockerfile:LINE: message`` on one line."""

    def __init__(self, message: str, line: int = 0, filename: str = "Dockerfile") -> None:
        self.line = line
        self.message = message
        where = f"{filename}:{line}: " if line else f"{filename}: "
        super().__init__(where + message)


@record
class Heredoc:
    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    fd: int = 0


@record
class Node:
    cmd: str                      # lower-case instruction word
    args: str                     # the text after the instruction word and its flags
    flags: list[str]              # raw ``--name=value`` words
    original: str                 # the whole logical line, continuations joined
    line: int                     # first line (1-based)
    end_line: int
    heredocs: list[Heredoc] = field(default_factory=list)


@record
class Dockerfile:
    nodes: list[Node]
    escape: str = "\\"
    syntax: str = ""


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _split_command(line: str) -> tuple[str, list[str], str]:
    parts = line.strip().split(None, 1)
    cmd = parts[0]
    if len(parts) == 1:
        return cmd, [], ""
    rest, flags = extract_flags(parts[1])
    return cmd, flags, rest.strip()


def extract_flags(line: str) -> tuple[str, list[str]]:
    """Leading ``--flag[=value]`` words (quotes and escapes honoured), and the rest of the line."""
    words: list[str] = []
    pos, n = 0, len(line)
    while True:
        while pos < n and line[pos].isspace():
            pos += 1
        if pos >= n:
            return "", words
        if not line.startswith("--", pos):
            return line[pos:], words
        word, blank_ok, quote = "", False, ""
        while pos < n:
            ch = line[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == "\\" and pos + 1 < n:
                    pos += 1
                    word += line[pos]
                elif ch != "\\":
                    word += ch
                pos += 1
                continue
            if ch.isspace():
                break
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == "\\":
                if pos + 1 < n:
                    pos += 1
                    word += line[pos]
            else:
                word += ch
            pos += 1
        if word == "--":
            return line[pos:], words
        if blank_ok or word:
            words.append(word)


def heredocs_from_line(line: str) -> list[tuple[str, bool, bool, int]]:
    """The here-document words of a line: (name, expand, chomp, fd)."""
    out = []
    for word in _raw_words(line):
        m = _HEREDOC.match(word)
        if not m or not m.group(3):
            continue
        rest = m.group(3)
        try:
            plain = ShellLex().process_words(rest, {})
        except InvalidArgument:
            continue
        if len(plain) != 1:
            continue
        raw_quotes = rest.count("'") + rest.count('"')
        expand = raw_quotes == 0
        out.append((plain[0], expand, m.group(2) == "-", int(m.group(1) or 0)))
    return out


def _raw_words(line: str) -> list[str]:
    """Whitespace-split keeping quotes and escapes (heredoc words are looked for in these)."""
    words: list[str] = []
    cur, quote, i = "", "", 0
    while i < len(line):
        ch = line[i]
        if quote:
            cur += ch
            if ch == quote:
                quote = ""
        elif ch.isspace():
            if cur:
                words.append(cur)
            cur = ""
        else:
            if ch in "'\"":
                quote = ch
            elif ch == "\\" and i + 1 < len(line):
                cur += ch
                i += 1
                ch = line[i]
            cur += ch
        i += 1
    if cur:
        words.append(cur)
    return words


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    escape, syntax = "\\", ""
    seen: set[str] = set()
    i = 0
    # parser directives: only at the very top
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if i == 0 and lines[0].startswith("#!"):
            i += 1
            continue
        if not m or m.group(1).lower() not in _ALLOWED_DIRECTIVES:
            break
        key, value = m.group(1).lower(), m.group(2)
        if key in seen:
            raise DockerfileError(f"only one {key} parser directive can be used", i + 1, filename)
        seen.add(key)
        if key == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(f"invalid escape token '{value}' does not match ` or \\", i + 1, filename)
            escape = value
        elif key == "syntax":
            syntax = value
        i += 1
    cont = re.compile(re.escape(escape) + r"[ \t]*$")

    def trim_cont(s: str) -> tuple[str, bool]:
        m = cont.search(s)
        if m:
            return s[: m.start()], False
        return s, True

    nodes: list[Node] = []
    n = len(lines)
    while i < n:
        raw = lines[i]
        i += 1
        start = i
        if _is_comment(raw) or not raw.strip():
            continue
        line, end = trim_cont(raw.lstrip())
        while not end and i < n:
            nxt = lines[i]
            i += 1
            if _is_comment(nxt) or not nxt.strip():
                continue
            part, end = trim_cont(nxt)
            line += part
        if not line.strip():
            continue
        cmd, flags, args = _split_command(line)
        node = Node(cmd.lower(), args, flags, line.strip(), start, i)
        if node.cmd in _HEREDOC_CMDS and "<<" in line and not args.lstrip().startswith("["):
            for name, expand, chomp, fd in heredocs_from_line(args):
                body: list[str] = []
                done = False
                while i < n:
                    cand = lines[i]
                    i += 1
                    if (cand.lstrip("\t") if chomp else cand) == name:
                        done = True
                        break
                    body.append(cand + "\n")
                if not done:
                    raise DockerfileError(f"unterminated heredoc {name}", start, filename)
                node.heredocs.append(Heredoc(name, "".join(body), expand, chomp, fd))
            node.end_line = i
        nodes.append(node)
    return Dockerfile(nodes, escape, syntax)
