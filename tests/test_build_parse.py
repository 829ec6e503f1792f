"""The Dockerfile parser: directives, continuations, comments, forms, here-documents, flags,
typed instructions with line numbers, and one-line ``Dockerfile:LINE: message`` errors."""
from __future__ import annotations

import pytest

from pallet.build import instructions as ins
from pallet.build.parser import DockerfileError, parse
from pallet.build.stages import load, meta_arg_values, plan
from pallet.errors import NotFound


def cmds(text: str) -> list[ins.Instruction]:
    df = load(text)
    out: list[ins.Instruction] = []
    for st in df.stages:
        out.append(st.from_)
        out.extend(st.commands)
    return out


def test_directives_escape_and_syntax() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\nRUN a `\n b\n")
    assert df.escape == "`" and df.syntax == "docker/dockerfile:1"
    assert df.nodes[1].args == "a  b"


def test_directive_case_and_spacing() -> None:
    assert parse("#  ESCAPE =  `\nFROM x\n").escape == "`"


def test_directive_only_at_top() -> None:
    # after a comment, a blank line or an instruction, "# escape=" is just a comment
    assert parse("# hello\n# escape=`\nFROM x\n").escape == "\\"
    assert parse("\n# escape=`\nFROM x\n").escape == "\\"
    assert parse("FROM x\n# escape=`\n").escape == "\\"
    # an unknown directive ends the directive block
    assert parse("# foo=bar\n# escape=`\nFROM x\n").escape == "\\"


def test_directive_errors() -> None:
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: only one escape parser directive"):
        parse("# escape=`\n# escape=\\\nFROM x\n")
    with pytest.raises(DockerfileError, match="invalid escape token"):
        parse("# escape=x\nFROM x\n")


def test_continuations_comments_and_blank_lines() -> None:
    text = "FROM x\nRUN echo a \\\n  # inner comment\n\n  b \\\n    c\nRUN   next\n"
    nodes = parse(text).nodes
    assert [n.cmd for n in nodes] == ["from", "run", "run"]
    assert nodes[1].args == "echo a   b     c"
    assert (nodes[1].line, nodes[1].end_line) == (2, 6)
    assert nodes[2].line == 7 and nodes[2].args == "next"


def test_continuation_trailing_whitespace_and_crlf() -> None:
    nodes = parse("FROM x\r\nRUN a \\  \r\n b\r\n").nodes
    assert nodes[1].args == "a  b"


def test_leading_whitespace_and_case() -> None:
    c = cmds("  from x\n\trun echo hi\n")
    assert isinstance(c[1], ins.Run) and c[1].args == ["echo hi"]


def test_comment_not_at_line_start_is_an_argument() -> None:
    c = cmds("FROM x\nRUN echo hi # not a comment\n")
    assert c[1].args == ["echo hi # not a comment"]


def test_exec_and_shell_forms() -> None:
    c = cmds('FROM x\nRUN ["echo", "a b"]\nRUN echo "a b"\nCMD [ "sh" ]\nENTRYPOINT [bad json\n'
             'CMD []\n')
    assert c[1].args == ["echo", "a b"] and not c[1].prepend_shell
    assert c[2].args == ['echo "a b"'] and c[2].prepend_shell
    assert c[3].args == ["sh"] and not c[3].prepend_shell
    assert c[4].args == ["[bad json"] and c[4].prepend_shell
    assert c[5].args == [] and not c[5].prepend_shell


def test_json_must_be_strings() -> None:
    with pytest.raises(DockerfileError, match="^Dockerfile:2: when using JSON array syntax"):
        load("FROM x\nRUN [1, 2]\n")


def test_heredocs() -> None:
    text = ("FROM x\nRUN <<EOF\necho one\necho two\nEOF\n"
            "RUN cat <<A <<-'B' > /f\nA line\nA\n\tB line\n\tB\n"
            "COPY <<EOF /dest\nhello $X\nEOF\nRUN after\n")
    c = cmds(text)
    assert c[1].heredocs[0].name == "EOF" and c[1].heredocs[0].content == "echo one\necho two\n"
    assert (c[1].line, c[1].end_line) == (2, 5)
    h = c[2].heredocs
    assert [x.name for x in h] == ["A", "B"] and h[0].expand and not h[1].expand and h[1].chomp
    assert h[1].content == "\tB line\n"
    cp = c[3]
    assert isinstance(cp, ins.Copy) and cp.sources == [] and cp.dest == "/dest"
    assert cp.contents == [("EOF", "hello $X\n", True)]
    assert c[4].args == ["after"] and c[4].line == 14


def test_heredoc_chomp_copy_and_quoted() -> None:
    c = cmds('FROM x\nCOPY <<-"EOT" /d\n\t\tindented\n\tEOT\n')
    assert c[1].contents == [("EOT", "indented\n", False)]


def test_heredoc_unterminated() -> None:
    with pytest.raises(DockerfileError, match="^Dockerfile:2: unterminated heredoc"):
        parse("FROM x\nRUN <<EOF\necho\n")


def test_heredoc_ignored_in_exec_form_and_other_instructions() -> None:
    c = cmds('FROM x\nRUN ["echo", "<<EOF"]\nENV A=<<EOF\n')
    assert c[1].args == ["echo", "<<EOF"] and not c[1].heredocs
    assert c[2].pairs == [("A", "<<EOF")]


def test_flags() -> None:
    c = cmds("FROM --platform=linux/amd64 x AS b\nCOPY --from=b --chown=1:2 --chmod=644 a b /d/\n"
             "ADD --chown='u g' s d\nCOPY --link a b\n")
    assert c[0].flags == {"platform": "linux/amd64"} and c[0].stage_name == "b"
    assert c[1].flags == {"from": "b", "chown": "1:2", "chmod": "644"}
    assert c[1].sources == ["a", "b"] and c[1].dest == "/d/"
    assert c[2].flags == {"chown": "u g"} and c[2].is_add
    assert c[3].flags == {"link": None}


@pytest.mark.parametrize("text,msg", [
    ("FROM x\nCOPY --foo=1 a b\n", "Dockerfile:2: Unknown flag: foo"),
    ("FROM x\nCOPY --from a b\n", "Dockerfile:2: Missing a value on flag: from"),
    ("FROM x\nCOPY --from=a --from=b a b\n", "Dockerfile:2: Duplicate flag specified: from"),
    ("FROM x\nENV --x=1 a=b\n", "Dockerfile:2: Unknown flag: x"),
    ("FROM x\nFOO bar\n", "Dockerfile:2: unknown instruction: FOO"),
    ("FROM x\nfoo bar\n", "Dockerfile:2: unknown instruction: FOO"),
    ("RUN x\n", "Dockerfile:1: no build stage in current context"),
    ("", "file with no instructions"),
    ("# only a comment\n", "file with no instructions"),
    ("ARG A\n", "no build stage in current context"),
    ("FROM\n", "Dockerfile:1: FROM requires either one or three arguments"),
    ("FROM a b\n", "FROM requires either one or three arguments"),
    ("FROM a AS 1x\n", "invalid name for build stage"),
    ("FROM x\nCOPY a\n", "Dockerfile:2: COPY requires at least two arguments"),
    ("FROM x\nADD a\n", "ADD requires at least two arguments"),
    ("FROM x\nCOPY <<EOF\nx\nEOF\n", "COPY requires at least two arguments"),
    ("FROM x\nRUN\n", "RUN requires at least one argument"),
    ("FROM x\nENV\n", "ENV requires at least one argument"),
    ("FROM x\nENV A\n", "ENV must have two arguments"),
    ("FROM x\nENV A=1 B\n", "can't find = in 'B'"),
    ("FROM x\nENV =1\n", "ENV names can not be blank"),
    ("FROM x\nLABEL\n", "LABEL requires at least one argument"),
    ("FROM x\nARG\n", "ARG requires at least one argument"),
    ("FROM x\nARG =x\n", "ARG names can not be blank"),
    ("FROM x\nWORKDIR\n", "WORKDIR requires exactly one argument"),
    ("FROM x\nUSER\n", "USER requires exactly one argument"),
    ("FROM x\nSTOPSIGNAL\n", "STOPSIGNAL requires exactly one argument"),
    ("FROM x\nEXPOSE\n", "EXPOSE requires at least one argument"),
    ("FROM x\nVOLUME\n", "VOLUME requires at least one argument"),
    ('FROM x\nVOLUME [""]\n', "VOLUME specified can not be an empty string"),
    ("FROM x\nSHELL /bin/sh\n", "SHELL requires the arguments to be in JSON form"),
    ("FROM x\nONBUILD\n", "ONBUILD requires at least one argument"),
    ("FROM x\nONBUILD ONBUILD RUN x\n", "Chaining ONBUILD"),
    ("FROM x\nONBUILD FROM y\n", "FROM isn't allowed as an ONBUILD trigger"),
    ("FROM x\nONBUILD MAINTAINER y\n", "MAINTAINER isn't allowed as an ONBUILD trigger"),
    ("FROM x\nHEALTHCHECK FOO x\n", 'Unknown type "FOO" in HEALTHCHECK'),
    ("FROM x\nHEALTHCHECK NONE x\n", "HEALTHCHECK NONE takes no arguments"),
    ("FROM x\nHEALTHCHECK --interval=1 CMD x\n", "invalid duration"),
    ("FROM x\nHEALTHCHECK --retries=-1 CMD x\n", "--retries cannot be negative"),
    ("FROM x\nHEALTHCHECK --interval=10us CMD x\n", "cannot be less than 1ms"),
    ("FROM x\nHEALTHCHECK CMD\n", "Missing command after HEALTHCHECK CMD"),
    ("FROM x\nCOPY a <<EOF\nx\nEOF\n", "cannot accept a heredoc as a destination"),
])
def test_errors_one_line_with_line_number(text: str, msg: str) -> None:
    with pytest.raises(DockerfileError) as ei:
        load(text)
    assert msg in str(ei.value)
    assert "\n" not in str(ei.value)
    assert str(ei.value).startswith("Dockerfile:")


def test_env_forms() -> None:
    c = cmds('FROM x\nENV A 1 2  3\nENV B=1 C="two words" D=a\\ b E=\'$x\'\nENV F=\n')
    assert c[1].pairs == [("A", "1 2  3")]
    assert c[2].pairs == [("B", "1"), ("C", '"two words"'), ("D", "a\\ b"), ("E", "'$x'")]
    assert c[3].pairs == [("F", "")]


def test_label_and_arg_forms() -> None:
    c = cmds('FROM x\nLABEL "a b"="c d" e=f\nARG A B=2 C=\n')
    assert c[1].pairs == [('"a b"', '"c d"'), ("e", "f")]
    assert c[2].pairs == [("A", None), ("B", "2"), ("C", "")]


def test_healthcheck() -> None:
    c = cmds('FROM x\nHEALTHCHECK --interval=1m30s --timeout=3s --start-period=1.5s --retries=4 '
             'CMD curl -f http://x/ || exit 1\nHEALTHCHECK CMD ["true"]\nHEALTHCHECK NONE\n')
    h = c[1]
    assert isinstance(h, ins.Healthcheck)
    assert h.test == ["CMD-SHELL", "curl -f http://x/ || exit 1"]
    assert (h.interval, h.timeout, h.start_period, h.retries) == (90 * 10**9, 3 * 10**9, 15 * 10**8, 4)
    assert c[2].test == ["CMD", "true"] and c[3].test == ["NONE"]


def test_onbuild_keeps_expression() -> None:
    c = cmds("FROM x\nONBUILD   COPY --chown=1 $A /b\n")
    assert c[1].expression == "COPY --chown=1 $A /b"


def test_expand_only_what_docker_expands() -> None:
    env = {"A": "1"}
    from pallet.build.shell_lex import ShellLex

    fn = lambda w: ShellLex().process_word(w, env)  # noqa: E731
    c = cmds("FROM x\nRUN echo $A\nCMD echo $A\nWORKDIR /$A\nCOPY --chown=$A $A /$A/\n"
             "ENV B=$A\nLABEL l=$A\nEXPOSE $A\nVOLUME /$A\nUSER $A\nSTOPSIGNAL $A\nMAINTAINER $A\n")
    ex = [x.expand(fn) for x in c]
    assert ex[1].args == ["echo $A"] and ex[2].args == ["echo $A"]
    assert ex[3].value == "/1"
    assert ex[4].sources == ["1"] and ex[4].dest == "/1/" and ex[4].flags["chown"] == "1"
    assert ex[5].pairs == [("B", "1")] and ex[6].pairs == [("l", "1")]
    assert ex[7].values == ["1"] and ex[8].values == ["/1"]
    assert ex[9].value == "1" and ex[10].value == "1" and ex[11].value == "$A"


def test_stage_plan_only_needed_stages() -> None:
    df = load("ARG V=1\nFROM busybox AS base\nFROM base AS a\nRUN a\nFROM busybox AS unused\n"
              "FROM busybox AS b\nCOPY --from=a / /\nCOPY --from=0 / /\nCOPY --from=alpine / /\n")
    meta = meta_arg_values(df, {})
    assert [s.label for s in plan(df, None, meta)] == ["base", "a", "b"]
    assert [s.label for s in plan(df, "a", meta)] == ["base", "a"]
    assert [s.label for s in plan(df, "UNUSED", meta)] == ["unused"]
    with pytest.raises(NotFound, match="failed to reach build target nope"):
        plan(df, "nope", meta)


def test_stage_self_reference_and_cycle() -> None:
    df = load("FROM busybox AS a\nCOPY --from=a /x /y\n")
    with pytest.raises(DockerfileError, match="Dockerfile:2: invalid from flag value a: refers to current build stage"):
        plan(df, None, {})
    df = load("FROM busybox AS a\nCOPY --from=b /x /y\nFROM busybox AS b\nCOPY --from=a /x /y\n")
    with pytest.raises(DockerfileError, match="circular dependency"):
        plan(df, None, {})
    with pytest.raises(DockerfileError, match="Dockerfile:3: b stage name already used"):  # docker's words
        load("FROM busybox AS b\nFROM b AS c\nFROM c AS B\n")
    # FROM x AS x names the image x, not itself
    df = load("FROM busybox AS busybox\nRUN true\n")
    assert len(plan(df, None, {})) == 1


def test_meta_args() -> None:
    df = load("ARG A=1\nARG B=${A}2\nARG C\nFROM img:$B\n")
    assert meta_arg_values(df, {}) == {"A": "1", "B": "12"}
    assert meta_arg_values(df, {"A": "9", "C": "c"}) == {"A": "9", "B": "92", "C": "c"}


def test_from_uses_meta_args() -> None:
    from pallet.build.stages import resolve_from

    df = load("ARG TAG=latest\nFROM busybox:${TAG} AS a\nFROM a\n")
    meta = meta_arg_values(df, {})
    assert resolve_from(df, df.stages[0], meta) == ("busybox:latest", None)
    assert resolve_from(df, df.stages[1], meta)[1] is df.stages[0]
