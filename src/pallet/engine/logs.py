"""docker's json-file log driver: one JSON object per line,
``{"log":"text\\n","stream":"stdout","time":"2026-11-28T05:40:00.123456789Z"}``.

``LogWriter`` splits a stream into lines (a partial line is kept until its newline, or written
when it reaches 16 KiB or the stream ends, as docker does). ``read`` implements ``logs``
(``--tail``, ``--since``, ``-t``, ``-f`` via polling the file while the container runs).
"""
from __future__ import annotations

import os
import time

from pallet.engine.containers import now
from pallet.errors import PalletError
from pallet.runtime import jsonlite as json  # not `json`: it imports re and enum (~3 ms)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    from collections.abc import Callable, Iterator

MAX_PARTIAL = 16 * 1024
# moby's jsonlog escaping: \" \\ \n \r short; other control characters, <, >, & and U+2028/9 as \uXXXX
_GO_ESC = {c: f"\\u{c:04x}" for c in [*range(0x20), 0x3c, 0x3e, 0x26, 0x2028, 0x2029]}
_GO_ESC.update({0x22: '\\"', 0x5c: "\\\\", 0x0a: "\\n", 0x0d: "\\r"})


class LogWriter:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.fd = -1  # opened on the first line: a silent container costs no file
        self.partial: dict[str, bytes] = {}

    def _write(self, data: bytes) -> None:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        os.write(self.fd, data)

    def write(self, stream: str, data: bytes) -> None:
        buf = self.partial.pop(stream, b"") + data
        lines = buf.split(b"\n")
        rest = lines.pop()
        out = [self._entry(stream, ln + b"\n") for ln in lines]
        while len(rest) >= MAX_PARTIAL:
            out.append(self._entry(stream, rest[:MAX_PARTIAL]))
            rest = rest[MAX_PARTIAL:]
        if rest:
            self.partial[stream] = rest
        if out:
            self._write(b"".join(out))

    def flush(self) -> None:
        out = [self._entry(s, b) for s, b in self.partial.items() if b]
        self.partial.clear()
        if out:
            self._write(b"".join(out))

    def close(self) -> None:
        self.flush()
        self.close_fd()

    def close_fd(self) -> None:
        """Close the file, keeping a line not yet ended (the next write reopens it)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @staticmethod
    def _entry(stream: str, line: bytes) -> bytes:
        # byte for byte docker's json-file line: compact, UTF-8 kept, escaped as Go does
        text = line.decode("utf-8", "replace").translate(_GO_ESC)
        return f'{{"log":"{text}","stream":"{stream}","time":"{now()}"}}\n'.encode()


def parse_since(value: str | None) -> str | None:
    """``--since``: RFC 3339, a unix timestamp, or a duration like ``10m`` (relative to now)."""
    if not value:
        return None
    import re

    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", value)
    if m:
        mult = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        ts = time.time() - float(m.group(1)) * mult
        return _fmt(ts)
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return _fmt(float(value))
    from pallet.errors import InvalidArgument

    if not re.fullmatch(r"\d{4}-\d\d-\d\d(T[\d:.]+(Z|[+-]\d\d:\d\d)?)?", value):
        raise InvalidArgument(f"invalid value for \"since\": {value!r}")
    return value if "T" in value else value + "T00:00:00Z"


def _fmt(ts: float) -> str:
    ns = int(ts * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def _entries(path: str | os.PathLike[str]) -> Iterator[dict[str, str]]:
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    yield json.loads(line)
                except (ValueError, PalletError):
                    continue
    except FileNotFoundError:
        return


def read(path: str | os.PathLike[str], *, tail: int | None = None, since: str | None = None,
         follow: bool = False, running: Callable[[], bool] | None = None,
         poll: float = 0.1) -> Iterator[tuple[str, str, str]]:
    """(stream, text, time) entries. With ``follow``, keep reading while ``running()`` is true."""
    entries = [e for e in _entries(path) if not since or e.get("time", "") >= since]
    if tail is not None and tail >= 0:
        entries = entries[len(entries) - tail:] if tail else []
    for e in entries:
        yield e.get("stream", "stdout"), e.get("log", ""), e.get("time", "")
    if not follow:
        return
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        f.seek(0, os.SEEK_END)
        buf = b""
        idle_after_stop = 0
        while True:
            chunk = f.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    try:
                        e = json.loads(line)
                    except (ValueError, PalletError):
                        continue
                    yield e.get("stream", "stdout"), e.get("log", ""), e.get("time", "")
                continue
            if running is not None and not running():
                idle_after_stop += 1
                if idle_after_stop > 1:  # one more read after the stop: the waiter may still flush
                    return
            time.sleep(poll)
