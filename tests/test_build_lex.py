"""Variable substitution and quote removal, as the Dockerfile reference ("Environment
replacement") and buildkit's shell lexer define them."""
from __future__ import annotations

import pytest

from pallet.build.shell_lex import ShellLex
from pallet.errors import InvalidArgument

ENV = {"A": "a", "E": "", "SP": "x y", "PATH": "/bin"}


@pytest.mark.parametrize("word,want", [
    ("$A", "a"), ("${A}", "a"), ("pre${A}post", "preapost"), ("$A/b", "a/b"),
    ("$A_b", ""),                      # the name is A_b, which is unset
    ("${A}_b", "a_b"),
    ('"$A"', "a"), ("'$A'", "$A"), ("\\$A", "$A"), ('"\\$A"', "$A"),
    ("${A:-w}", "a"), ("${U:-w}", "w"), ("${E:-w}", "w"),
    ("${A-w}", "a"), ("${U-w}", "w"), ("${E-w}", ""),
    ("${A:+w}", "w"), ("${U:+w}", ""), ("${E:+w}", ""),
    ("${A+w}", "w"), ("${U+w}", ""), ("${E+w}", "w"),
    ("${U:-$A}", "a"), ("${U:-${A}x}", "ax"), ('${U:-"q w"}', "q w"),
    ("$U", ""), ("${U}", ""),
    ("$", "$"), ("a$", "a$"), ("$ a", "$ a"), ("$1", ""), ("$$", ""),
    ("a\\ b", "a b"), ("\\\\", "\\"), ("a\\", "a"),
    ('"a\\"b"', 'a"b'), ('"a\\b"', "a\\b"), ('"a\\\\b"', "a\\b"),
    ("'a\\b'", "a\\b"), ("'a\"b'", 'a"b'), ('"a\'b"', "a'b"),
    ('a"b c"d', "ab cd"), ("", ""),
    ("${A:?}", "a"), ("${A?}", "a"),
])
def test_process_word(word: str, want: str) -> None:
    assert ShellLex().process_word(word, ENV) == want


@pytest.mark.parametrize("word,msg", [
    ("'abc", "single-quote"), ('"abc', "double-quote"), ("${A", "missing '}'"),
    ("${}", "bad substitution"), ("${:-x}", "bad substitution"), ("${A:%x}", "unsupported modifier"),
    ("${U?must be set}", "U: must be set"), ("${U:?}", "U: is not allowed to be unset"),
    ("${E:?}", "E: is not allowed to be empty"), ("${U:-abc", "missing '}'"),
])
def test_process_word_errors(word: str, msg: str) -> None:
    with pytest.raises(InvalidArgument, match=msg):
        ShellLex().process_word(word, ENV)


def test_backtick_escape() -> None:
    lex = ShellLex("`")
    assert lex.process_word("`$A", ENV) == "$A"
    assert lex.process_word("c:\\path", ENV) == "c:\\path"
    assert lex.process_word('"a`"b"', ENV) == 'a"b'


def test_process_words_splits_unquoted_whitespace_only() -> None:
    lex = ShellLex()
    assert lex.process_words('a "b c" $SP', ENV) == ["a", "b c", "x", "y"]
    assert lex.process_words('"$SP"', ENV) == ["x y"]
    assert lex.process_words("a\\ b  c", ENV) == ["a b", "c"]
    assert lex.process_words('""', ENV) == [""]


def test_heredoc_expansion_keeps_quotes() -> None:
    lex = ShellLex()
    assert lex.process_heredoc("say '$A' \"${A}\" \\$A\n", ENV) == "say 'a' \"a\" $A\n"
