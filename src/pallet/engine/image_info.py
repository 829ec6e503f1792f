"""Read-only views of stored images: the ``images`` listing with docker's filters, ``history``,
docker-shaped ``inspect`` and ``system df`` figures. Pure functions of the store's records.
"""
from __future__ import annotations

import datetime as _dt
import fnmatch
from dataclasses import dataclass
from typing import Any

from pallet.errors import InvalidArgument
from pallet.oci.digest import Digest
from pallet.oci.reference import Reference
from pallet.store import ImageRecord, Store

from .images import image_in_use, layer_sizes

FILTERS = ("dangling", "reference", "label", "before", "since")


def parse_time(text: str) -> float:
    """RFC 3339 (nanoseconds allowed) -> epoch seconds; 0 when absent or unreadable."""
    if not text:
        return 0.0
    t = text.strip().replace("Z", "+00:00")
    if "." in t:
        head, rest = t.split(".", 1)
        frac = "".join(c for c in rest if c.isdigit())
        tz = rest[len(frac):]
        t = f"{head}.{frac[:6]}{tz}"
    try:
        return _dt.datetime.fromisoformat(t).timestamp()
    except ValueError:
        return 0.0


@dataclass
class Row:
    rec: ImageRecord
    repository: str
    tag: str
    digest: str

    @property
    def created(self) -> float:
        return parse_time(self.rec.created)


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not eq:
            raise InvalidArgument(f"bad format of filter (expected name=value): {it!r}")
        k = k.strip().lower()
        if k not in FILTERS:
            raise InvalidArgument(f"invalid filter '{k}' (images accept: {', '.join(FILTERS)})")
        if k == "dangling" and v.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={v}'")
        out.setdefault(k, []).append(v)
    return out


def _labels(rec: ImageRecord) -> dict[str, str]:
    return dict((rec.config.get("config") or {}).get("Labels") or {})


def _match_label(rec: ImageRecord, want: str) -> bool:
    labels = _labels(rec)
    k, eq, v = want.partition("=")
    if not eq:
        return k in labels
    return labels.get(k) == v


def _match_reference(ref: Reference, pattern: str) -> bool:
    names = [ref.familiar_name, ref.name]
    full = [f"{n}:{ref.tag}" for n in names] if ref.tag else []
    return any(fnmatch.fnmatchcase(x, pattern) for x in names + full)


def list_rows(st: Store, filters: dict[str, list[str]] | None = None, all_images: bool = False) -> list[Row]:
    """One row per (image, tag), newest first; an untagged image is one ``<none>`` row."""
    f = filters or {}
    recs = st.list_images()
    bounds: dict[str, float] = {}
    for key in ("before", "since"):
        for v in f.get(key, []):
            bounds[key] = parse_time(st.resolve_image(v).created)
    rows: list[Row] = []
    for rec in recs:
        if "dangling" in f:
            want = f["dangling"][-1].lower() in ("true", "1")
            if want != (not rec.repo_tags):
                continue
        if any(not _match_label(rec, x) for x in f.get("label", [])):
            continue
        created = parse_time(rec.created)
        if "before" in bounds and not created < bounds["before"]:
            continue
        if "since" in bounds and not created > bounds["since"]:
            continue
        digests = {(d.name): str(d.digest) for d in rec.repo_digests if d.digest}
        tags = list(rec.repo_tags)
        if "reference" in f:
            tags = [t for t in tags if any(_match_reference(t, p) for p in f["reference"])]
            if not tags:
                continue
        if not tags:
            dg = next(iter(digests.values()), "<none>")
            rows.append(Row(rec, "<none>", "<none>", dg))
        for t in tags:
            rows.append(Row(rec, t.familiar_name, t.tag or "<none>", digests.get(t.name, "<none>")))
    rows.sort(key=lambda r: (-r.created, r.repository, r.tag))
    return rows


def history(st: Store, name: str) -> list[dict[str, Any]]:
    """Newest first, as ``docker history``: the top entry carries the image ID, older ones
    ``<missing>``; SIZE is the layer's size for entries that made one."""
    rec = st.resolve_image(name)
    sizes = layer_sizes(st)
    hist = list(rec.config.get("history") or [])
    if not hist:
        hist = [{"created": rec.created} for _ in rec.diff_ids]
    layers = iter(rec.diff_ids)
    out = []
    for h in hist:
        size = 0
        if not h.get("empty_layer"):
            d = next(layers, None)
            size = sizes.get(d, 0) if d is not None else 0
        out.append({"Id": "<missing>", "Created": h.get("created", ""), "CreatedBy": h.get("created_by", ""),
                    "Size": size, "Comment": h.get("comment", ""), "Tags": None})
    out.reverse()
    if out:
        out[0]["Id"] = str(rec.id)
        out[0]["Tags"] = [t.familiar for t in rec.repo_tags] or None
    return out


def inspect(st: Store, rec: ImageRecord) -> dict[str, Any]:
    """The docker Engine API's ImageInspect shape (v1.41), filled from the config and store."""
    cfg = rec.config
    dirs = [str(p) for p in st.lowerdirs(rec)]  # top first
    data: dict[str, str] = {}
    if dirs:
        data["UpperDir"] = dirs[0]
        if len(dirs) > 1:
            data["LowerDir"] = ":".join(dirs[1:])
    out: dict[str, Any] = {
        "Id": str(rec.id),
        "RepoTags": [t.familiar for t in rec.repo_tags],
        "RepoDigests": [f"{d.familiar_name}@{d.digest}" for d in rec.repo_digests if d.digest],
        "Parent": str(cfg.get("parent") or ""),
        "Comment": cfg.get("comment", ""),
        "Created": rec.created,
        "Container": cfg.get("container", ""),
        "ContainerConfig": cfg.get("container_config") or {},
        "DockerVersion": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Config": cfg.get("config") or {},
        "Architecture": cfg.get("architecture", ""),
        "Os": cfg.get("os", ""),
        "Size": rec.size,
        "VirtualSize": rec.size,
        "GraphDriver": {"Name": "overlay", "Data": data},
        "RootFS": {"Type": "layers", "Layers": [str(d) for d in rec.diff_ids]},
        "History": cfg.get("history") or [],
        "Metadata": {"LastTagTime": ""},
        "Digest": str(rec.manifest_digest),
    }
    if cfg.get("variant"):
        out["Variant"] = cfg["variant"]
    return out


@dataclass
class DiskUsage:
    images: int
    active: int
    size: int
    reclaimable: int


def disk_usage(st: Store) -> DiskUsage:
    recs = st.list_images()
    sizes = layer_sizes(st)
    used: set[Digest] = set()
    active = 0
    for rec in recs:
        if image_in_use(st, rec.id):
            active += 1
            used.update(rec.diff_ids)
    total = sum(sizes.values())
    return DiskUsage(len(recs), active, total, sum(v for d, v in sizes.items() if d not in used))
