"""A fast path for ``pallet run``/``create``/``exec`` argv: no argparse on the common case.

Importing argparse (re, enum, gettext, locale, shutil) and building the global parser plus
``run``'s ~45 flags was the largest single cost of ``pallet run`` (~20-30 ms of CPU). The verbs'
flags are declared once, as tables (``container_cmd.CREATE_FLAGS``, ``exec_cmd.EXEC_FLAGS``);
argparse is built from the same tables, so the two cannot drift, and ``tests/test_cli_fastargs.py``
checks that both produce the same namespace for a set of command lines.

``parse(argv)`` returns the namespace argparse would, or ``None`` for anything outside the
plain grammar (``--help``, an error, an abbreviation, any ``--``, a value that starts with ``-``,
``-e=X``...): the caller then runs argparse, so every message and exit code stays argparse's.

Grammar accepted (docker's): global ``--root/--runroot/--log-level [=]VALUE`` before the verb;
then options until the first positional (the image or container), everything after it is the
command; ``--flag``, ``--flag VALUE``, ``--flag=VALUE``, ``-x VALUE``, ``-xVALUE``, clusters of
boolean short flags optionally ending with one that takes a value (``-it``, ``-itu root``);
repeated flags (append, or the last value wins).
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing imports re, collections, functools: not on the run path
    from typing import Any

# a flag table entry: (option strings, kind, default, choices); kind is
#   "flag"  store_true (default False)
#   "one"   store (default ``default``, None if not given)
#   "many"  append (default [])
Flag = tuple  # (tuple[str, ...], str, Any, tuple[str, ...] | None)

LOG_LEVELS = ("debug", "info", "warning", "error")
_GLOBAL_VALUE = {"--root": "root", "--runroot": "runroot", "--log-level": "log_level"}


class Namespace:
    """argparse.Namespace's duck (attributes; equality by attributes) without importing argparse."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def __getattr__(self, name: str) -> Any:  # only for what is not set: as argparse's, an error
        raise AttributeError(name)

    def __eq__(self, other: object) -> bool:
        return vars(self) == vars(other)

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def __repr__(self) -> str:
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in sorted(self.__dict__.items()))})"


def dest_of(names: tuple[str, ...]) -> str:
    """argparse's dest: the first long option string, without dashes, ``-`` -> ``_``."""
    for n in names:
        if n.startswith("--"):
            return n[2:].replace("-", "_")
    return names[0][1:].replace("-", "_")


def global_defaults() -> dict[str, Any]:
    env = os.environ
    return {"root": env.get("PALLET_ROOT", "/var/lib/pallet"),
            "runroot": env.get("PALLET_RUNROOT", "/run/pallet"),
            "log_level": env.get("PALLET_LOG_LEVEL", "warning"), "version": False}


def _verb_table(verb: str) -> tuple[tuple[Flag, ...], str, Any] | None:
    """(flags, name of the first positional, func) of a verb with a fast path."""
    if verb in ("run", "create"):
        from pallet.cli import container_cmd as m

        return (m.RUN_FLAGS if verb == "run" else m.CREATE_FLAGS), "image", m.func_of(verb)
    if verb == "exec":
        from pallet.cli import exec_cmd as e

        return e.EXEC_FLAGS, "container", e.func_of(verb)
    return None


def parse(argv: list[str]) -> Namespace | None:
    out = global_defaults()
    i, n = 0, len(argv)
    while i < n:  # global options, then the verb
        a = argv[i]
        if not a.startswith("-"):
            break
        name, eq, val = a.partition("=")
        dest = _GLOBAL_VALUE.get(name)
        if dest is None:
            return None
        if not eq:
            if i + 1 >= n or argv[i + 1].startswith("-"):
                return None
            i += 1
            val = argv[i]
        if dest == "log_level" and val not in LOG_LEVELS:
            return None
        out[dest] = val
        i += 1
    if i >= n:
        return None
    verb = argv[i]
    table = _verb_table(verb)
    if table is None:
        return None
    flags, first, func = table
    out["verb"] = verb
    if "--" in argv:  # argparse drops some "--" even after the image (version-dependent): let it decide
        return None
    if not _parse_verb(argv[i + 1:], flags, first, out):
        return None
    out["func"] = func
    return Namespace(**out)


def _parse_verb(args: list[str], flags: tuple[Flag, ...], first: str, out: dict[str, Any]) -> bool:
    by_name: dict[str, tuple[str, str, Any]] = {}
    for names, kind, default, choices in flags:
        dest = dest_of(names)
        out[dest] = False if kind == "flag" else ([] if kind == "many" else default)
        for nm in names:
            by_name[nm] = (dest, kind, choices)
    i, n = 0, len(args)

    def put(spec: tuple[str, str, Any], val: str) -> bool:
        dest, kind, choices = spec
        if choices is not None and val not in choices:
            return False
        if kind == "many":
            out[dest] = [*out[dest], val]
        else:
            out[dest] = val
        return True

    longs = [nm for nm in by_name if nm.startswith("--")] + ["--help"]
    while i < n:
        a = args[i]
        if not a.startswith("-") or a == "-":
            out[first] = a
            out["command"] = args[i + 1:]
            # argparse classifies every word, the command's too: an ambiguous abbreviation of two
            # of the verb's long flags (``--netw``) is its error even there
            return not any(_ambiguous(w, longs) for w in args[i + 1:] if w.startswith("--"))
        if a.startswith("--"):
            name, eq, val = a.partition("=")
            spec = by_name.get(name)
            if spec is None or a == "--":
                return False  # --help, an abbreviation, an unknown flag, "--": argparse decides
            if spec[1] == "flag":
                if eq:
                    return False
                out[spec[0]] = True
            else:
                if not eq:
                    if i + 1 >= n or args[i + 1].startswith("-"):
                        return False
                    i += 1
                    val = args[i]
                if not put(spec, val):
                    return False
            i += 1
            continue
        # a cluster of short options: -i, -it, -e X, -eX, -eA=1, -itu root
        if a[2:3] == "=":  # -e=X: argparse's own reading
            return False
        j = 1
        while j < len(a):
            spec = by_name.get("-" + a[j])
            if spec is None:
                return False
            if spec[1] == "flag":
                out[spec[0]] = True
                j += 1
                continue
            val = a[j + 1:]
            if not val:
                if i + 1 >= n or args[i + 1].startswith("-"):
                    return False
                i += 1
                val = args[i]
            if not put(spec, val):
                return False
            break
        i += 1
    return False  # no image/container: argparse's error


def _ambiguous(word: str, longs: list[str]) -> bool:
    prefix = word.partition("=")[0]
    if prefix in longs:
        return False
    return sum(1 for nm in longs if nm.startswith(prefix)) > 1
