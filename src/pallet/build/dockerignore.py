"""``.dockerignore`` (moby/patternmatcher): Go ``filepath.Match`` semantics plus ``**``,
``!`` exceptions (the last matching pattern wins), and a file is excluded when it or one of its
parent directories matches.

Reading (``read_patterns``): lines starting with ``#`` are comments, whitespace is trimmed,
patterns are cleaned (``filepath.Clean``) and a leading ``/`` is dropped, so ``/a``, ``./a``
and ``a`` are the same pattern.
"""
from __future__ import annotations

import posixpath
import re

from pallet.build.records import record
from pallet.errors import InvalidArgument

_ESCAPE = set(".+()|{}$^")


def clean(path: str) -> str:
    """Go's path.Clean."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out = posixpath.normpath(path)
    if out.startswith("//"):
        out = "/" + out.lstrip("/")
    if rooted and not out.startswith("/"):
        out = "/" + out
    return out


def read_patterns(text: str) -> list[str]:
    if text.startswith("\ufeff"):
        text = text[1:]
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        p = line.strip()
        if not p:
            continue
        invert = p[0] == "!"
        if invert:
            p = p[1:].strip()
        if p:
            p = clean(p)
            if len(p) > 1 and p[0] == "/":
                p = p[1:]
        out.append("!" + p if invert else p)
    return out


def _check_go_pattern(p: str) -> None:
    """filepath.Match(p, ".") fails with ErrBadPattern on malformed classes or a trailing escape."""
    i, n = 0, len(p)
    while i < n:
        ch = p[i]
        if ch == "\\":
            if i + 1 >= n:
                raise InvalidArgument(f"syntax error in pattern {p!r}")
            i += 2
            continue
        if ch == "[":
            j = i + 1
            if j < n and p[j] == "^":
                j += 1
            if j < n and p[j] == "]":
                raise InvalidArgument(f"syntax error in pattern {p!r}")
            while j < n and p[j] != "]":
                if p[j] == "\\":
                    j += 1
                j += 1
            if j >= n:
                raise InvalidArgument(f"syntax error in pattern {p!r}")
            i = j + 1
            continue
        i += 1


@record
class _Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]


def _compile(p: str) -> re.Pattern[str]:
    out = "^"
    i, n = 0, len(p)
    while i < n:
        ch = p[i]
        i += 1
        if ch == "*":
            if i < n and p[i] == "*":
                i += 1
                if i < n and p[i] == "/":
                    i += 1
                if i >= n:
                    out += ".*"
                else:
                    out += "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch in _ESCAPE:
            out += "\\" + ch
        elif ch == "\\":
            if i < n:
                out += re.escape(p[i])
                i += 1
            else:
                out += "\\\\"
        elif ch == "[":
            # a character class: copy through, Go's [^...] is the same in Python
            j = i
            cls = "["
            if j < n and p[j] == "^":
                cls += "^"
                j += 1
            while j < n and p[j] != "]":
                c = p[j]
                if c == "\\" and j + 1 < n:
                    cls += re.escape(p[j + 1])
                    j += 2
                    continue
                cls += "\\" + c if c in "[&~|" else c
                j += 1
            out += cls + "]"
            i = j + 1
        else:
            out += re.escape(ch) if ch not in "/" else ch
    return re.compile(out + "$", re.S)


class PatternMatcher:
    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            p = raw.strip()
            if not p:
                continue
            p = clean(p)
            exclusion = False
            if p[0] == "!":
                if len(p) == 1:
                    raise InvalidArgument('illegal exclusion pattern: "!"')
                exclusion = True
                p = p[1:]
            _check_go_pattern(p)
            self.patterns.append(_Pattern(p, exclusion, _compile(p)))

    @property
    def has_exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        """True when ``path`` (relative, ``/``-separated) is ignored."""
        path = clean(path)
        matched = False
        parent = posixpath.dirname(path) or "."
        parents = parent.split("/")
        for pat in self.patterns:
            if pat.exclusion != matched:
                continue
            hit = bool(pat.regex.match(path))
            if not hit and parent != ".":
                for i in range(len(parents)):
                    if pat.regex.match("/".join(parents[: i + 1])):
                        hit = True
                        break
            if hit:
                matched = not pat.exclusion
        return matched

    def dir_may_hold_exception(self, path: str) -> bool:
        """Could an exclusion pattern re-include something under the ignored dir ``path``?
        (So a walker may skip an ignored directory when this is False.)"""
        for pat in self.patterns:
            if not pat.exclusion:
                continue
            if "**" in pat.text or pat.text.startswith(path + "/") or pat.text == path:
                return True
            # a wildcard in a leading component may match this dir
            comps = pat.text.split("/")
            pcomps = path.split("/")
            if len(comps) > len(pcomps) and all(
                    re.match(_compile(c).pattern, pc) for c, pc in zip(comps, pcomps, strict=False)):
                return True
        return False
