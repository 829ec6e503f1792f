"""The progress protocol pull and push report to (the CLI renders it; -q passes NullProgress).

Ids are short digests as docker prints them. Methods may be called from worker threads.
"""
from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def status(self, pid: str, text: str) -> None:
        """A state without byte counts: Waiting, Preparing, Verifying, Extracting..."""

    def start(self, pid: str, total: int, action: str) -> None:
        """Bytes will flow for ``pid`` (``action``: Downloading, Pushing)."""

    def advance(self, pid: str, nbytes: int) -> None: ...

    def done(self, pid: str, text: str) -> None:
        """Final state: Pull complete, Already exists, Pushed, Layer already exists..."""

    def message(self, text: str) -> None:
        """A line outside the per-layer table (Digest: ..., Status: ...)."""


class NullProgress:
    def status(self, pid: str, text: str) -> None:
        pass

    def start(self, pid: str, total: int, action: str) -> None:
        pass

    def advance(self, pid: str, nbytes: int) -> None:
        pass

    def done(self, pid: str, text: str) -> None:
        pass

    def message(self, text: str) -> None:
        pass
