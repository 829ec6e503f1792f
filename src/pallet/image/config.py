"""Build and mutate image configs (OCI image-spec config.md; docker's image JSON adds
``container_config``, ``docker_version``, ``comment``). Functions return new dicts; inputs are
never modified.
"""
from __future__ import annotations

import copy
import datetime as _dt
from collections.abc import Iterable
from typing import Any

from pallet.oci.digest import Digest
from pallet.oci.manifest import Platform

from .changes import apply_changes

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def now() -> str:
    """RFC 3339 UTC with nanosecond-style precision, as docker writes ``created``."""
    t = _dt.datetime.now(_dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def base_config(platform: Platform | None = None) -> dict[str, Any]:
    p = platform or Platform.host()
    cfg: dict[str, Any] = {"architecture": p.architecture, "os": p.os}
    if p.variant:
        cfg["variant"] = p.variant
    cfg["config"] = {}
    cfg["rootfs"] = {"type": "layers", "diff_ids": []}
    cfg["history"] = []
    return cfg


def with_layer(config: dict[str, Any], diff_id: Digest | None, *, created_by: str = "",
               comment: str = "", author: str = "", created: str | None = None) -> dict[str, Any]:
    """A new config with a history entry appended and, unless ``diff_id`` is None (an
    ``empty_layer`` step such as ENV), the layer's diff-id appended to ``rootfs.diff_ids``."""
    c = copy.deepcopy(config)
    ts = created or now()
    c["created"] = ts
    h: dict[str, Any] = {"created": ts}
    if created_by:
        h["created_by"] = created_by
    if author:
        h["author"] = author
        c["author"] = author
    if comment:
        h["comment"] = comment
    rootfs = c.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    if diff_id is None:
        h["empty_layer"] = True
    else:
        rootfs.setdefault("diff_ids", []).append(str(diff_id))
    c.setdefault("history", []).append(h)
    return c


def with_container_config(config: dict[str, Any], changes: Iterable[str]) -> dict[str, Any]:
    c = copy.deepcopy(config)
    c["config"] = apply_changes(c.get("config") or {}, changes)
    return c


def import_config(diff_id: Digest, *, changes: Iterable[str] = (), message: str = "",
                  source: str = "-", platform: Platform | None = None) -> dict[str, Any]:
    """The config ``docker import`` makes: one layer, comment "Imported from SOURCE" unless a
    message is given, the container config from ``--change``."""
    comment = message or f"Imported from {source}"
    c = with_container_config(base_config(platform), changes)
    c = with_layer(c, diff_id, comment=comment)
    c["comment"] = comment
    return c
