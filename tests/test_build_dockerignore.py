""".dockerignore matching (moby/patternmatcher semantics: Go filepath.Match, ``**``, ``!``
exceptions where the last match wins, parent directories excluding their contents)."""
from __future__ import annotations

import pytest

from pallet.build.dockerignore import PatternMatcher, clean, read_patterns
from pallet.errors import InvalidArgument


def m(patterns: list[str], path: str) -> bool:
    return PatternMatcher(patterns).matches(path)


def test_read_patterns_cleaning_and_comments() -> None:
    text = "\ufeff# comment\n  \n/abs\n./rel/\na/../b\n!  /keep\n  spaced  \n #notcomment\n"
    assert read_patterns(text) == ["abs", "rel", "b", "!keep", "spaced", "#notcomment"]


def test_clean_like_go() -> None:
    assert clean("a//b/./c/..") == "a/b" and clean("") == "." and clean("/..") == "/"
    assert clean("../a") == "../a"


@pytest.mark.parametrize("patterns,path,want", [
    (["*.md"], "README.md", True),
    (["*.md"], "docs/README.md", False),          # * never crosses /
    (["*/*.md"], "docs/README.md", True),
    (["**/*.md"], "docs/a/README.md", True),
    (["**/*.md"], "README.md", True),             # ** matches zero directories
    (["**"], "anything/at/all", True),
    (["docs/**"], "docs/a/b", True),
    (["docs/**"], "docs", False),
    (["a/**/b"], "a/b", True),
    (["a/**/b"], "a/x/y/b", True),
    (["temp?"], "temp1", True),
    (["temp?"], "temp12", False),
    (["temp?"], "temp/", False),
    (["[a-c]x"], "bx", True),
    (["[^a-c]x"], "dx", True),
    (["[^a-c]x"], "ax", False),
    (["\\*x"], "*x", True),
    (["\\*x"], "ax", False),
    (["a.b"], "axb", False),                      # regex specials are literal
    (["a+b"], "a+b", True),
    (["(x)"], "(x)", True),
    (["dir"], "dir/sub/file", True),              # a matching parent excludes its contents
    (["dir/sub"], "dir/sub/file", True),
    (["dir/*"], "dir/sub/file", True),
    (["*", "!keep"], "keep", False),
    (["*", "!keep"], "other", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README.md", False),
    (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
    (["dir", "!dir/keep"], "dir/keep", False),
    (["dir", "!dir/keep"], "dir/other", True),
    (["./a"], "a", True),
    (["a/"], "a", True),
    (["Dockerfile"], "dockerfile", False),        # case sensitive
])
def test_match(patterns: list[str], path: str, want: bool) -> None:
    assert m(read_patterns("\n".join(patterns)), path) is want


def test_bad_patterns() -> None:
    with pytest.raises(InvalidArgument, match="illegal exclusion pattern"):
        PatternMatcher(["!"])
    with pytest.raises(InvalidArgument, match="syntax error in pattern"):
        PatternMatcher(["[a-"])
    with pytest.raises(InvalidArgument, match="syntax error in pattern"):
        PatternMatcher(["a\\"])


def test_dir_may_hold_exception() -> None:
    pm = PatternMatcher(["node_modules", "!node_modules/keep"])
    assert pm.dir_may_hold_exception("node_modules")
    assert not PatternMatcher(["build", "!src/x"]).dir_may_hold_exception("build")
    assert PatternMatcher(["build", "!**/x"]).dir_may_hold_exception("build")
