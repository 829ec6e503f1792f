"""The Dockerfile word lexer: quote removal and variable substitution.

Follows buildkit's ``frontend/dockerfile/shell/lex.go`` (what the Dockerfile reference calls
"environment replacement"): ``$V``, ``${V}``, ``${V:-w}``, ``${V:+w}``, ``${V-w}``, ``${V+w}``,
``${V?msg}``, ``${V:?msg}``; single quotes are literal, double quotes expand ``$`` and let the
escape character escape only ``"``, ``$`` and itself; outside quotes the escape character makes
the next character literal (and is dropped at the end of a word). Unset variables expand to ""
(the builder never fails on an unset ``$V``).
"""
from __future__ import annotations

from collections.abc import Mapping

from pallet.errors import InvalidArgument

_SPECIAL = set("@*#?-$!0")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        if self.pos >= len(self.text):
            return ""
        ch = self.text[self.pos]
        self.pos += 1
        return ch


class _Words:
    """Word splitting state (ProcessWords): quoted and expanded text never splits a word
    except unquoted whitespace coming from the source or from a ``$`` expansion."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.cur = ""
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace() and self.in_word:
            self.words.append(self.cur)
            self.cur = ""
            self.in_word = False
        elif not ch.isspace():
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.cur += ch
        self.in_word = True

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def add_raw_string(self, s: str) -> None:
        self.cur += s
        self.in_word = True

    def get(self) -> list[str]:
        if self.in_word:
            self.words.append(self.cur)
            self.cur = ""
            self.in_word = False
        return self.words


class ShellLex:
    """``escape`` is the Dockerfile's escape token (``\\`` or a backtick)."""

    def __init__(self, escape: str = "\\") -> None:
        self.escape = escape

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Quote removal + substitution of one word (what ADD/COPY/ENV/... see)."""
        return _Run(self.escape, env, word).stop_on("")[0]

    def process_words(self, text: str, env: Mapping[str, str]) -> list[str]:
        """Like process_word, then split on unquoted whitespace."""
        return _Run(self.escape, env, text).stop_on("")[1]

    def process_heredoc(self, text: str, env: Mapping[str, str]) -> str:
        """Here-document body expansion (as a shell does for an unquoted terminator): only
        ``$`` substitutions; quotes are literal; the escape char escapes ``$`` and itself."""
        out: list[str] = []
        run = _Run(self.escape, env, text)
        sc = run.sc
        while sc.peek() != "":
            ch = sc.peek()
            if ch == "$":
                out.append(run.dollar())
                continue
            sc.next()
            if ch == self.escape and sc.peek() in ("$", self.escape) and sc.peek() != "":
                out.append(sc.next())
                continue
            out.append(ch)
        return "".join(out)


class _Run:
    def __init__(self, escape: str, env: Mapping[str, str], text: str) -> None:
        self.escape = escape
        self.env = env
        self.sc = _Scanner(text)

    def stop_on(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        sc = self.sc
        while sc.peek() != "":
            ch = sc.peek()
            if stop and ch == stop:
                sc.next()
                return "".join(result), words.get()
            if ch == "'":
                tmp = self.single_quote()
                result.append(tmp)
                words.add_raw_string(tmp)
            elif ch == '"':
                tmp = self.double_quote()
                result.append(tmp)
                words.add_raw_string(tmp)
            elif ch == "$":
                tmp = self.dollar()
                result.append(tmp)
                words.add_string(tmp)
            else:
                ch = sc.next()
                if ch == self.escape:
                    ch = sc.next()
                    if ch == "":
                        break
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop:
            raise InvalidArgument(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.get()

    def single_quote(self) -> str:
        sc = self.sc
        sc.next()
        out: list[str] = []
        while True:
            ch = sc.next()
            if ch == "":
                raise InvalidArgument("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        sc = self.sc
        sc.next()
        out: list[str] = []
        while True:
            ch = sc.peek()
            if ch == "":
                raise InvalidArgument("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                sc.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = sc.next()
            if ch == self.escape:
                nxt = sc.peek()
                if nxt == "":
                    continue
                if nxt in ('"', "$", self.escape):
                    ch = sc.next()
            out.append(ch)

    def name(self) -> str:
        sc = self.sc
        name = ""
        while sc.peek() != "":
            ch = sc.peek()
            if not name and ch.isdigit():
                while sc.peek() != "" and sc.peek().isdigit():
                    name += sc.next()
                return name
            if not name and ch in _SPECIAL:
                return sc.next()
            if not (ch.isalnum() or ch == "_"):
                break
            name += sc.next()
        return name

    def lookup(self, name: str) -> str | None:
        return self.env.get(name)

    def dollar(self) -> str:
        sc = self.sc
        sc.next()
        if sc.peek() != "{":
            name = self.name()
            if name == "":
                return "$"
            return self.lookup(name) or ""
        sc.next()
        if sc.peek() == "":
            raise InvalidArgument("syntax error: missing '}'")
        if sc.peek() in "{}:":
            raise InvalidArgument("syntax error: bad substitution")
        name = self.name()
        ch = sc.next()
        if ch == "}":
            return self.lookup(name) or ""
        if ch in ("?", "-", "+"):
            word = self.operand()
            value = self.lookup(name)
            if ch == "?":
                if value is None:
                    raise InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
                return value
            if ch == "-":
                return word if value is None else value
            return word if value is not None else ""
        if ch == ":":
            mod = sc.next()
            word = self.operand()
            value = self.lookup(name)
            if mod == "+":
                return word if value else ""
            if mod == "-":
                return value if value else word
            if mod == "?":
                if value is None:
                    raise InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
                if value == "":
                    raise InvalidArgument(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            raise InvalidArgument(f"unsupported modifier ({mod}) in substitution")
        if ch == "":
            raise InvalidArgument("syntax error: missing '}'")
        raise InvalidArgument(f"unsupported modifier ({ch}) in substitution")

    def operand(self) -> str:
        try:
            return self.stop_on("}")[0]
        except InvalidArgument:
            if self.sc.peek() == "":
                raise InvalidArgument("syntax error: missing '}'") from None
            raise


_DEFAULT = ShellLex()


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    return (_DEFAULT if escape == "\\" else ShellLex(escape)).process_word(word, env)
