"""The network store: one JSON file per network under ``ROOT/networks/`` (configuration,
durable) and one allocation file per network under ``RUNROOT/networks/`` (run state: who is
attached with which address), written atomically (temp file in the same directory, rename;
configs are fsync'ed first).

Layout::

    ROOT/networks/.lock                   flock: every mutation (create, rm, IPAM, firewall)
    ROOT/networks/NAME.json               NetworkConfig (immutable after create)
    RUNROOT/networks/NAME.endpoints.json  {"next": IP, "endpoints": {CONTAINER_ID: Endpoint}}

Endpoints are run state, as podman keeps its IPAM database under /run: they describe veths
and namespaces that do not survive a reboot, so they live where a reboot clears them, and
are not fsync'ed (fsync + rename cost ~13 ms on this machine's disk per start; the rename
alone keeps a reader from ever seeing half a file).

Readers (ls, inspect, port) take no lock: a rename is atomic, so they see a whole old or a
whole new file. Writers hold ``.lock`` for the short read-modify-write only (IPAM, records,
firewall), never while doing netlink work on a container, so concurrent starts serialise on
microseconds, not milliseconds. One lock for the store (not one per network) because the
firewall and subnet-overlap checks read every network anyway.
"""
from __future__ import annotations

import fcntl
import os

from pallet.errors import InvalidArgument, NotFound
from pallet.network.model import PSEUDO_NETWORKS, Endpoint, NetworkConfig

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing/contextlib/json/re cost ~10-15 ms of a bridged `pallet run`: not imported here
    from typing import Any

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")


class _JsonCtx:  # what json.decoder.JSONDecoder gives the C scanner
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict = {}


_scan = None
_enc = None


def _no_default(o: object) -> object:
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _dumps(data: Any) -> str:
    """One-line, key-sorted JSON through the C accelerator ``_json`` (as ``pallet.runtime.jsonlite``
    does; ``network`` may not import ``runtime``): ``import json`` pulls in ``re``."""
    global _enc
    if _enc is None:
        import _json

        _enc = _json.make_encoder(None, _no_default, _json.encode_basestring_ascii, None, ": ", ", ",
                                  True, False, True)
    return "".join(_enc(data, 0))


def _loads(text: str) -> Any:
    """Parse one JSON document; ValueError (as json's) when malformed."""
    global _scan
    if _scan is None:
        import _json

        _scan = _json.make_scanner(_JsonCtx())  # type: ignore[arg-type]
    i = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        obj, end = _scan(text, i)
    except (StopIteration, ValueError, SystemError):
        import json  # the accelerator builds its error from json.decoder: let json say what is wrong

        return json.loads(text)
    if text[end:].strip(" \t\n\r"):
        import json

        return json.loads(text)  # raises "Extra data"
    return obj


def _valid_name(name: str) -> bool:
    """``^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`` checked by hand (no ``re`` on the run path)."""
    return (0 < len(name) <= 128 and name[0] in _ALNUM
            and all(ch in _NAME_CHARS for ch in name))


def validate_name(name: str) -> None:
    if not _valid_name(name):
        raise InvalidArgument(f"invalid network name {name!r}: use letters, digits, '_', '.', '-'")


def atomic_write_json(path: str, data: Any, durable: bool = True) -> None:
    """Configs (DURABLE, written at ``network create``) as indented JSON through :mod:`json`;
    the run-state allocation files through ``_json`` (one line, sorted keys), which keeps
    ``json`` (and its ``re``) off a container start."""
    d, name = os.path.split(path)
    tmp = os.path.join(d, f".{name}.{os.getpid()}.tmp")
    if durable:
        import json

        text = json.dumps(data, indent=1, sort_keys=True)
    else:
        text = _dumps(data)
    with open(tmp, "w") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return _loads(f.read())


class _Locked:
    """``NetworkStore.locked()``: the store lock as a context manager (not contextlib's: that
    module is not otherwise imported on the run path)."""

    __slots__ = ("dir", "fd")

    def __init__(self, d: str) -> None:
        self.dir, self.fd = d, -1

    def __enter__(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        fd = os.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def __exit__(self, *exc: object) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class NetworkStore:
    # plain strings and os.path, not pathlib: pathlib (with urllib.parse) is not otherwise
    # imported on the engine's run path
    def __init__(self, root: str | os.PathLike[str], runroot: str | os.PathLike[str] | None = None) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.dir = os.path.join(self.root, "networks")
        self.rundir = os.path.join(os.fspath(runroot), "networks") if runroot is not None else self.dir

    def locked(self) -> _Locked:
        """The store-wide exclusive lock (blocks; holders keep it for short updates only).
        A fresh object per call: nested ``with store.locked()`` blocks each hold their own fd."""
        return _Locked(self.dir)

    def _cfg(self, name: str) -> str:
        return os.path.join(self.dir, f"{name}.json")

    def _eps(self, name: str) -> str:
        return os.path.join(self.rundir, f"{name}.endpoints.json")

    # configs ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        try:
            files = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(f[:-5] for f in files if f.endswith(".json") and not f.endswith(".endpoints.json")
                      and not f.startswith("."))

    def all(self) -> list[NetworkConfig]:
        out = []
        for n in self.names():
            try:
                out.append(NetworkConfig.from_json(_read_json(self._cfg(n))))
            except FileNotFoundError:
                continue  # removed while listing
        return out

    def get(self, name_or_id: str) -> NetworkConfig:
        """By exact name, then by full id or a unique id prefix (as docker resolves)."""
        if name_or_id in PSEUDO_NETWORKS:
            raise NotFound(f"network {name_or_id} has no configuration (it is a pseudo network)")
        if _valid_name(name_or_id):
            try:
                return NetworkConfig.from_json(_read_json(self._cfg(name_or_id)))
            except FileNotFoundError:
                pass
        if name_or_id:
            hits = [n for n in self.all() if n.id.startswith(name_or_id)]
            if len(hits) == 1:
                return hits[0]
        raise NotFound(f"network {name_or_id} not found")

    def exists(self, name: str) -> bool:
        return os.path.exists(self._cfg(name))

    def put(self, net: NetworkConfig) -> None:
        atomic_write_json(self._cfg(net.name), net.to_json())

    def delete(self, name: str) -> None:
        for p in (self._eps(name), self._cfg(name)):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    # endpoints (the allocation file) ----------------------------------------------------
    def alloc_state(self, name: str) -> dict[str, Any]:
        try:
            return dict(_read_json(self._eps(name)))
        except FileNotFoundError:
            return {"next": "", "endpoints": {}}

    def put_alloc_state(self, name: str, state: dict[str, Any]) -> None:
        os.makedirs(self.rundir, exist_ok=True)
        atomic_write_json(self._eps(name), state, durable=False)

    def endpoints(self, name: str) -> dict[str, Endpoint]:
        return {cid: Endpoint.from_json(d) for cid, d in self.alloc_state(name).get("endpoints", {}).items()}

    def endpoints_of(self, container_id: str) -> list[tuple[NetworkConfig, Endpoint]]:
        """Every (network, endpoint) of one container, in network-name order."""
        out = []
        for net in self.all():
            ep = self.endpoints(net.name).get(container_id)
            if ep is not None:
                out.append((net, ep))
        return out
