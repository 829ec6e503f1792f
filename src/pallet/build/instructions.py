"""Typed Dockerfile instructions (buildkit ``frontend/dockerfile/instructions/commands.go``);
``from_node`` (built in instruction_parse.py) turns a parsed node into one.

Each instruction keeps its raw (unexpanded) arguments and line numbers. ``expand(fn)`` returns
a copy with the words Docker substitutes run through ``fn`` (``shell_lex.ShellLex.process_word``
bound to the current environment): ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR
ARG. RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER and ONBUILD are never expanded by the
builder (the shell in the container does it).
"""
from __future__ import annotations

from collections.abc import Callable

from pallet.build.parser import Heredoc, Node
from pallet.build.records import field, record, replace

Expander = Callable[[str], str]

@record
class Instruction:
    line: int
    end_line: int
    original: str
    flags: dict[str, str | None] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return type(self).__name__.upper()

    def expand(self, fn: Expander) -> Instruction:
        return self


@record
class From(Instruction):
    base: str = ""
    stage_name: str = ""

    def expand(self, fn: Expander) -> From:
        return replace(self, base=fn(self.base))


@record
class ShellDependent(Instruction):
    """RUN, CMD, ENTRYPOINT: ``args`` is the exec-form list, or ``[cmdline]`` with prepend_shell."""

    args: list[str] = field(default_factory=list)
    prepend_shell: bool = False
    heredocs: list[Heredoc] = field(default_factory=list)


class Run(ShellDependent):
    pass


class Cmd(ShellDependent):
    pass


class Entrypoint(ShellDependent):
    pass


@record
class Shell(Instruction):
    shell: list[str] = field(default_factory=list)


@record
class KeyValues(Instruction):
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def expand(self, fn: Expander) -> KeyValues:
        return replace(self, pairs=[(fn(k), fn(v)) for k, v in self.pairs])


class Env(KeyValues):
    pass


class Label(KeyValues):
    pass


@record
class Arg(Instruction):
    pairs: list[tuple[str, str | None]] = field(default_factory=list)

    def expand(self, fn: Expander) -> Arg:
        return replace(self, pairs=[(fn(k), None if v is None else fn(v)) for k, v in self.pairs])


@record
class Copy(Instruction):
    """COPY and ADD (``is_add``). ``sources`` are context/stage paths (or URLs for ADD);
    ``contents`` are here-documents: (name, data, expand)."""

    sources: list[str] = field(default_factory=list)
    dest: str = ""
    contents: list[tuple[str, str, bool]] = field(default_factory=list)
    is_add: bool = False

    @property
    def name(self) -> str:
        return "ADD" if self.is_add else "COPY"

    def expand(self, fn: Expander) -> Copy:
        flags = {k: (fn(v) if v is not None and k in ("from", "chown", "chmod") else v)
                 for k, v in self.flags.items()}
        return replace(self, sources=[fn(s) for s in self.sources], dest=fn(self.dest), flags=flags)


@record
class Single(Instruction):
    value: str = ""

    def expand(self, fn: Expander) -> Single:
        return replace(self, value=fn(self.value))


class Workdir(Single):
    pass


class User(Single):
    pass


class StopSignal(Single):
    pass


@record
class Maintainer(Instruction):
    value: str = ""


@record
class Words(Instruction):
    values: list[str] = field(default_factory=list)

    def expand(self, fn: Expander) -> Words:
        return replace(self, values=[fn(v) for v in self.values])


class Expose(Words):
    pass


class Volume(Words):
    pass


@record
class Healthcheck(Instruction):
    """``test`` is Docker's Healthcheck.Test: ["NONE"], ["CMD", ...] or ["CMD-SHELL", cmd].
    Durations are nanoseconds (0 = inherit the default)."""

    test: list[str] = field(default_factory=list)
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@record
class Onbuild(Instruction):
    expression: str = ""




def from_node(node: Node, escape: str = "\\", filename: str = "Dockerfile") -> Instruction:
    """The typed instruction of a parsed node (DockerfileError with the line on bad input)."""
    from pallet.build.instruction_parse import from_node as convert

    return convert(node, escape, filename)
