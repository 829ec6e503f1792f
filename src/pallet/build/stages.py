"""A Dockerfile as stages, and the stage graph.

``load(text)`` parses and types every instruction, splits meta ARGs (before the first FROM)
from stages, and ``plan(df, target, meta)`` returns the stages the target needs, in an order
where dependencies come first (BuildKit's behaviour: stages the target does not need are
neither built nor checked beyond syntax). A stage names another by ``FROM <earlier stage>`` or
``COPY --from=<name|index>``; a cycle (including a stage naming itself) is an error.
"""
from __future__ import annotations

from collections.abc import Mapping

from pallet.build import instructions as ins
from pallet.build.parser import DockerfileError, parse
from pallet.build.records import field, record
from pallet.build.shell_lex import ShellLex
from pallet.errors import InvalidArgument, NotFound


@record
class Stage:
    index: int
    name: str                     # lower-case AS name, or ""
    from_: ins.From
    commands: list[ins.Instruction] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name or str(self.index)


@record
class Dockerfile:
    meta_args: list[ins.Arg]
    stages: list[Stage]
    escape: str = "\\"
    filename: str = "Dockerfile"

    def stage_by_name(self, name: str) -> Stage | None:
        name = name.lower()
        for st in self.stages:
            if st.name == name:
                return st
        return None


def load(text: str, filename: str = "Dockerfile") -> Dockerfile:
    parsed = parse(text, filename)
    meta: list[ins.Arg] = []
    stages: list[Stage] = []
    if not parsed.nodes:
        raise DockerfileError("file with no instructions", 0, filename)
    for node in parsed.nodes:
        inst = ins.from_node(node, parsed.escape, filename)
        if isinstance(inst, ins.From):
            if inst.stage_name and any(st.name == inst.stage_name for st in stages):
                raise DockerfileError(f"{inst.stage_name} stage name already used", node.line, filename)
            stages.append(Stage(len(stages), inst.stage_name, inst))
        elif not stages:
            if not isinstance(inst, ins.Arg):
                raise DockerfileError("no build stage in current context", node.line, filename)
            meta.append(inst)
        else:
            stages[-1].commands.append(inst)
    if not stages:
        raise DockerfileError("no build stage in current context", parsed.nodes[-1].line, filename)
    return Dockerfile(meta, stages, parsed.escape, filename)


def meta_arg_values(df: Dockerfile, build_args: Mapping[str, str | None]) -> dict[str, str]:
    """Values of the ARGs declared before the first FROM (defaults, overridden by --build-arg);
    each default may use the earlier ones."""
    lex = ShellLex(df.escape)
    values: dict[str, str] = {}
    for a in df.meta_args:
        for k, v in a.pairs:
            try:
                k = lex.process_word(k, values)
                v = None if v is None else lex.process_word(v, values)
            except InvalidArgument as e:
                raise DockerfileError(str(e), a.line, df.filename) from None
            given = build_args.get(k)
            if given is not None:
                values[k] = given
            elif v is not None:
                values[k] = v
            else:
                values.pop(k, None)
    return values


def resolve_from(df: Dockerfile, stage: Stage, meta: Mapping[str, str]) -> tuple[str, Stage | None]:
    """The expanded base name of ``stage`` and the earlier stage it names, if any."""
    try:
        base = ShellLex(df.escape).process_word(stage.from_.base, meta)
    except InvalidArgument as e:
        raise DockerfileError(str(e), stage.from_.line, df.filename) from None
    if not base:
        raise DockerfileError("base name (" + stage.from_.base + ") should not be blank",
                              stage.from_.line, df.filename)
    for st in df.stages[: stage.index]:
        if st.name and st.name == base.lower():
            return base, st
    return base, None


def copy_from_stage(df: Dockerfile, stage: Stage, ref: str, line: int) -> Stage | None:
    """The stage ``COPY --from=ref`` names (by index or name), or None for an image."""
    if ref.isdigit():
        idx = int(ref)
        if idx >= len(df.stages):
            raise DockerfileError(f"invalid from flag value {ref}: stage index out of range", line, df.filename)
        target = df.stages[idx]
    else:
        found = df.stage_by_name(ref)
        if found is None:
            return None
        target = found
    if target.index == stage.index:
        raise DockerfileError(f"invalid from flag value {ref}: refers to current build stage", line, df.filename)
    return target


def deps(df: Dockerfile, stage: Stage, meta: Mapping[str, str]) -> list[Stage]:
    out: list[Stage] = []
    _base, parent = resolve_from(df, stage, meta)
    if parent is not None:
        out.append(parent)
    lex = ShellLex(df.escape)
    for c in stage.commands:
        if isinstance(c, ins.Copy) and c.flags.get("from"):
            ref = lex.process_word(c.flags["from"] or "", meta)
            st = copy_from_stage(df, stage, ref, c.line)
            if st is not None and st not in out:
                out.append(st)
    return out


def plan(df: Dockerfile, target: str | None, meta: Mapping[str, str]) -> list[Stage]:
    """Stages to build, dependencies first, the target last."""
    if target:
        tgt = df.stage_by_name(target)
        if tgt is None:
            raise NotFound(f"failed to reach build target {target} in Dockerfile")
    else:
        tgt = df.stages[-1]
    order: list[Stage] = []
    state: dict[int, int] = {}  # 1 visiting, 2 done

    def visit(st: Stage, line: int) -> None:
        if state.get(st.index) == 2:
            return
        if state.get(st.index) == 1:
            raise DockerfileError(f"circular dependency detected on stage: {st.label}", line, df.filename)
        state[st.index] = 1
        for d in deps(df, st, meta):
            visit(d, st.from_.line)
        state[st.index] = 2
        order.append(st)

    visit(tgt, tgt.from_.line)
    return order
