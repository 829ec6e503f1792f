"""Entry point of ``pallet``. Global options, the verb table, and the one place where
exceptions become exit codes and one-line messages.

Each verb lives in ``pallet.cli.<module>`` and exposes ``add_parser(subparsers)`` (which
registers the verb, or a group of verbs, and sets ``func`` on the namespace). Only the
module of the verb being run is imported, so ``pallet run`` stays light.
"""
from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # argparse and typing are imported only when argparse parses (not on run/exec's fast path)
    import argparse
    from collections.abc import Callable
    from typing import Any

# verb -> module under pallet.cli. Several verbs may share a module. Aliases that docker
# has (``image ls`` == ``images``) are handled by the group modules.
VERBS: dict[str, str] = {
    # images (issue 2)
    "images": "image", "image": "image", "import": "image", "load": "image", "save": "image",
    "tag": "image", "rmi": "image", "history": "image", "inspect": "inspect",
    "system": "system", "info": "system", "version": "system",
    "network": "network_cmd",
    "registry": "registry_cmd",
    "pull": "registry_client_cmd", "push": "registry_client_cmd", "login": "registry_client_cmd",
    "logout": "registry_client_cmd",
    # containers and volumes (issue 3, issue 7 item 4)
    "create": "container_cmd", "run": "container_cmd", "start": "container_cmd",
    "stop": "container_ops", "kill": "container_ops", "restart": "container_ops", "rm": "container_ops",
    "pause": "container_ops", "unpause": "container_ops", "wait": "container_ops", "rename": "container_ops",
    "top": "container_ops", "stats": "container_ops", "export": "container_ops", "cp": "container_ops",
    "port": "container_ops",
    "ps": "ps_cmd", "logs": "logs_cmd", "exec": "exec_cmd", "attach": "exec_cmd",
    "container": "container_group", "volume": "volume_cmd",
    # builds, commit, diff (issue 4)
    "build": "build_cmd", "commit": "commit_cmd", "diff": "commit_cmd",
}


FAST_VERBS = ("run", "create", "exec")
_fast_done = False


class Globals:
    """Options every verb sees (podman's names): where the store and the run state live."""

    def __init__(self, ns: Any) -> None:
        self.root: str = ns.root
        self.runroot: str = ns.runroot
        self.log_level: str = ns.log_level


def _global_parser() -> argparse.ArgumentParser:
    import argparse

    from pallet.cli.fastargs import LOG_LEVELS, global_defaults

    d = global_defaults()
    p = argparse.ArgumentParser(prog="pallet", description="pallet: containers, images, registries",
                                allow_abbrev=False)
    p.add_argument("--root", default=d["root"],
                   help="storage root (env PALLET_ROOT, default /var/lib/pallet)")
    p.add_argument("--runroot", default=d["runroot"],
                   help="run-state root (env PALLET_RUNROOT, default /run/pallet)")
    p.add_argument("--log-level", default=d["log_level"],
                   choices=list(LOG_LEVELS), help="log verbosity")
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    return p


def _parser_class() -> type:
    import argparse

    class _Parser(argparse.ArgumentParser):
        """argparse exits 2 on bad usage; docker exits 125. Keep the message on one line."""

        def error(self, message: str) -> Any:  # type: ignore[override]
            sys.stderr.write(f"pallet: {message}\nSee '{self.prog} --help'.\n")
            raise SystemExit(125)

    return _Parser


def build_parser(verb: str | None) -> argparse.ArgumentParser:
    p = _global_parser()
    parser_class = _parser_class()
    p.__class__ = parser_class
    sub: Any = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=parser_class)
    if verb is not None and verb in VERBS:
        _load(VERBS[verb]).add_parser(sub)
    else:
        for mod in dict.fromkeys(VERBS.values()):
            _load(mod).add_parser(sub)
    return p


def _load(module: str) -> Any:
    import importlib

    return importlib.import_module(f"pallet.cli.{module}")


def _find_verb(argv: list[str]) -> str | None:
    """The first non-option word after global options (cheap pre-scan for lazy loading)."""
    takes_value = {"--root", "--runroot", "--log-level"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in takes_value:
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        return a
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = _find_verb(argv)
    if verb in FAST_VERBS:  # no argparse for the common forms of run/create/exec (pallet.cli.fastargs)
        if verb != "create":
            from pallet.engine import served

            served.prewarm()  # overlaps the cgroup v1 attach wait with everything that follows
        from pallet.cli.fastargs import parse

        fast = parse(argv)
        if fast is not None and fast.log_level == "warning":
            import gc

            global _fast_done
            # no cyclic GC pass during start-up (~6k tracked allocations on run's path; the default
            # threshold of 700 made it run several times), yet still some in a long foreground run/exec
            gc.set_threshold(100_000)
            _fast_done = True
            return run_func(fast.func, Globals(fast), fast)
    parser = build_parser(verb)
    ns = parser.parse_args(argv)
    if ns.version:
        from pallet import __version__

        print(f"pallet version {__version__}")
        return 0
    func: Callable[[Globals, argparse.Namespace], int | None] | None = getattr(ns, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 125
    if ns.log_level != "warning":
        import logging

        logging.basicConfig(level=ns.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return run_func(func, Globals(ns), ns)


def run_func(func: Callable[[Globals, argparse.Namespace], int | None], g: Globals,
             ns: Any) -> int:
    """Run a verb; map pallet's errors to docker's exit codes and one line on stderr."""
    from pallet.errors import PalletError

    try:
        rc = func(g, ns)
        return 0 if rc is None else int(rc)
    except PalletError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        # an OS error that escaped translation: still one line, still 125
        print(f"Error: {e}", file=sys.stderr)
        return 125


def entry() -> None:
    rc = main()
    if _fast_done:  # a fast-path run/exec: skip the interpreter's tear-down (nothing left to do)
        import os

        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (BrokenPipeError, OSError):
            pass
        os._exit(rc & 0xFF)
    sys.exit(rc)


if __name__ == "__main__":
    entry()
