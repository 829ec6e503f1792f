"""``pallet commit --change`` as docker's commit applies it (BuildFromConfig): each instruction
goes through the builder's parser, is expanded (``$V``, ``${V:-w}``...) with the Env the earlier
changes left, and is applied by the builder's dispatch, so ``ENV A=1 B=$A`` and
``WORKDIR $HOME`` mean what they mean in a Dockerfile."""
from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from pallet.errors import InvalidArgument
from pallet.image.changes import ALLOWED


def apply_changes(cfg: dict[str, Any], changes: Iterable[str]) -> dict[str, Any]:
    """A new container-config dict with ``changes`` applied (the input is not modified)."""
    from pallet.build import dispatch
    from pallet.build import instructions as ins
    from pallet.build.parser import parse
    from pallet.build.shell_lex import ShellLex

    out = copy.deepcopy(cfg)
    lex = ShellLex()
    cmd_set = False
    for text in changes:
        df = parse(text + "\n", "change")
        if not df.nodes:
            raise InvalidArgument(f"empty change: {text!r}")
        for node in df.nodes:
            if node.cmd.upper() not in ALLOWED:
                raise InvalidArgument(f"{node.cmd.upper()} is not a valid change command "
                                      f"(allowed: {', '.join(ALLOWED)})")
            inst = ins.from_node(node, df.escape, "change")
            env = dict(e.split("=", 1) for e in out.get("Env") or [] if "=" in e)
            try:
                inst = inst.expand(lambda w, env=env: lex.process_word(w, env))  # type: ignore[misc]
            except InvalidArgument as e:
                raise InvalidArgument(f"change {text!r}: {e}") from None
            if isinstance(inst, ins.Workdir):
                dispatch.workdir(out, inst.value)
                continue
            dispatch.apply(out, inst, cmd_set=cmd_set)
            if isinstance(inst, ins.Cmd):
                cmd_set = True
    return out
