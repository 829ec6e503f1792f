"""What every request handler shares: the storage driver, the config, the authorizer, the
counters and a small cache of manifest bytes (content-addressed, hence never stale)."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pallet.distribution.server.auth import Authorizer
from pallet.distribution.server.config import Config
from pallet.distribution.server.metrics import Metrics
from pallet.distribution.server.storage.base import StorageDriver
from pallet.oci.digest import Digest

_CACHE_BYTES = 32 * 1024 * 1024


@dataclass
class State:
    driver: StorageDriver
    config: Config
    auth: Authorizer
    metrics: Metrics
    _cache: OrderedDict[Digest, tuple[bytes, str]] = field(default_factory=OrderedDict)
    _cached: int = 0
    in_flight: int = 0

    def cache_get(self, d: Digest) -> tuple[bytes, str] | None:
        v = self._cache.get(d)
        if v is not None:
            self._cache.move_to_end(d)
        return v

    def cache_put(self, d: Digest, body: bytes, media_type: str) -> None:
        if d in self._cache or len(body) > _CACHE_BYTES // 8:
            return
        self._cache[d] = (body, media_type)
        self._cached += len(body)
        while self._cached > _CACHE_BYTES and self._cache:
            _, (b, _t) = self._cache.popitem(last=False)
            self._cached -= len(b)


STATE_KEY = web.AppKey("pallet_registry_state", State)


def state_of(request: Any) -> State:
    return request.app[STATE_KEY]


def attach(app: Any, state: State) -> None:
    app[STATE_KEY] = state
