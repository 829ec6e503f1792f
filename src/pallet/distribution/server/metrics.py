"""Prometheus counters (text exposition format 0.0.4) and the JSON access log.

Counters live in an anonymous shared mapping made before worker processes fork: each worker
writes only its own row (no locks), ``/metrics`` sums the rows, so any worker answers for all.
"""
from __future__ import annotations

import json
import mmap
import sys
import time
from typing import IO, Any

from pallet.distribution.server.errors import CODES

METHODS = ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "OTHER")
_STATUSES = 500  # 100..599
_BYTES_IN = len(METHODS) * _STATUSES
_BYTES_OUT = _BYTES_IN + 1
_ERRORS = _BYTES_OUT + 1
_SLOTS = _ERRORS + len(CODES)


class Metrics:
    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        self._mm = mmap.mmap(-1, self.workers * _SLOTS * 8)
        self._all = memoryview(self._mm).cast("Q")
        self._base = 0

    def set_worker(self, index: int) -> None:
        self._base = index * _SLOTS

    def _add(self, slot: int, n: int) -> None:
        i = self._base + slot
        self._all[i] = (self._all[i] + n) & 0xFFFFFFFFFFFFFFFF

    def request(self, method: str, status: int, bytes_in: int, bytes_out: int) -> None:
        try:
            m = METHODS.index(method)
        except ValueError:
            m = len(METHODS) - 1
        if 100 <= status < 600:
            self._add(m * _STATUSES + status - 100, 1)
        if bytes_in > 0:
            self._add(_BYTES_IN, bytes_in)
        if bytes_out > 0:
            self._add(_BYTES_OUT, bytes_out)

    def error(self, code: str) -> None:
        try:
            self._add(_ERRORS + CODES.index(code), 1)
        except ValueError:
            self._add(_ERRORS + CODES.index("UNKNOWN"), 1)

    def _sum(self, slot: int) -> int:
        return sum(self._all[w * _SLOTS + slot] for w in range(self.workers))

    def render(self) -> str:
        out = ["# HELP pallet_registry_http_requests_total HTTP requests by method and status.",
               "# TYPE pallet_registry_http_requests_total counter"]
        for mi, m in enumerate(METHODS):
            for s in range(_STATUSES):
                n = self._sum(mi * _STATUSES + s)
                if n:
                    out.append(f'pallet_registry_http_requests_total{{method="{m}",status="{s + 100}"}} {n}')
        out += ["# HELP pallet_registry_http_received_bytes_total Request body bytes received.",
                "# TYPE pallet_registry_http_received_bytes_total counter",
                f"pallet_registry_http_received_bytes_total {self._sum(_BYTES_IN)}",
                "# HELP pallet_registry_http_sent_bytes_total Response body bytes sent.",
                "# TYPE pallet_registry_http_sent_bytes_total counter",
                f"pallet_registry_http_sent_bytes_total {self._sum(_BYTES_OUT)}",
                "# HELP pallet_registry_errors_total Error responses by registry error code.",
                "# TYPE pallet_registry_errors_total counter"]
        for ci, c in enumerate(CODES):
            out.append(f'pallet_registry_errors_total{{code="{c}"}} {self._sum(_ERRORS + ci)}')
        return "\n".join(out) + "\n"


def access_logger_class(metrics: Metrics, sink: IO[str] | None) -> type:
    """An aiohttp access logger that counts every request and writes one JSON line for it
    (``sink`` None: counting only)."""
    from aiohttp.abc import AbstractAccessLogger

    from pallet.distribution.server import keys

    class AccessLog(AbstractAccessLogger):
        def log(self, request: Any, response: Any, duration: float) -> None:
            bytes_in = request.get(keys.BYTES_IN, 0) or (request.content_length or 0)
            bytes_out = response.body_length + request.get(keys.BYTES_SENT, 0)
            metrics.request(request.method, response.status, bytes_in, bytes_out)
            if sink is None:
                return
            rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
                   "remote": request.remote, "method": request.method, "path": request.raw_path,
                   "status": response.status, "bytes_in": bytes_in, "bytes_out": bytes_out,
                   "duration_ms": round(duration * 1000, 3), "user": request.get(keys.USER, ""),
                   "user_agent": request.headers.get("User-Agent", "")}
            if request.get(keys.ERROR_CODE):
                rec["error"] = request[keys.ERROR_CODE]
            try:
                sink.write(json.dumps(rec) + "\n")
                sink.flush()
            except (OSError, ValueError):
                pass

        @property
        def enabled(self) -> bool:
            return True

    return AccessLog


def open_sink(where: str) -> IO[str] | None:
    """``-``: stderr; ``off``: none; else a file appended to."""
    if where in ("off", "none", ""):
        return None
    if where == "-":
        return sys.stderr
    return open(where, "a", buffering=1, encoding="utf-8")
