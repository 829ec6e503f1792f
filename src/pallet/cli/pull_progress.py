"""Per-layer progress for pull and push, as docker shows it: a live table (rich) on a terminal,
plain status lines otherwise (no byte counters in logs), nothing with ``-q``."""
from __future__ import annotations

import sys
import threading
from typing import Any, TextIO


class PlainProgress:
    """One line per state change: ``abc123def456: Pull complete``."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def status(self, pid: str, text: str) -> None:
        self._line(f"{pid}: {text}")

    def start(self, pid: str, total: int, action: str) -> None:
        self._line(f"{pid}: {action} {_size(total)}")

    def advance(self, pid: str, nbytes: int) -> None:
        pass

    def done(self, pid: str, text: str) -> None:
        self._line(f"{pid}: {text}")

    def message(self, text: str) -> None:
        self._line(text)

    def close(self) -> None:
        pass


class RichProgress:
    """A rich live display: one row per layer with a bar while bytes flow."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        self.console = Console(file=sys.stdout)
        self.p = Progress(TextColumn("{task.fields[pid]}: {task.description:<18}"), BarColumn(),
                          DownloadColumn(), console=self.console, transient=False)
        self.tasks: dict[str, Any] = {}
        self.totals: dict[str, int] = {}
        self._lock = threading.Lock()
        self.p.start()

    def _task(self, pid: str, text: str, total: int | None = None) -> Any:
        with self._lock:
            t = self.tasks.get(pid)
            if t is None:
                t = self.tasks[pid] = self.p.add_task(text, pid=pid, total=total, start=total is not None)
            return t

    def status(self, pid: str, text: str) -> None:
        self.p.update(self._task(pid, text), description=text)

    def start(self, pid: str, total: int, action: str) -> None:
        self.totals[pid] = total
        t = self._task(pid, action, total)
        self.p.reset(t, total=total, description=action)
        self.p.start_task(t)

    def advance(self, pid: str, nbytes: int) -> None:
        t = self.tasks.get(pid)
        if t is not None:
            self.p.advance(t, nbytes)

    def done(self, pid: str, text: str) -> None:
        t = self._task(pid, text)
        total = self.totals.get(pid) or 1
        self.p.update(t, description=text, total=total, completed=total)

    def message(self, text: str) -> None:
        self.p.console.print(text, highlight=False, markup=False, soft_wrap=True)  # no hard wrap of digests

    def close(self) -> None:
        self.p.stop()


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{n}B"
        n /= 1000  # type: ignore[assignment]
    return f"{n}B"


def make_progress(quiet: bool) -> Any:
    from pallet.distribution.client.progress import NullProgress

    if quiet:
        return NullProgress()
    if sys.stdout.isatty():
        return RichProgress()
    return PlainProgress()
