"""Descriptors, manifests and indexes (OCI image spec: descriptor.md, manifest.md,
image-index.md; Docker manifest v2 schema 2 and manifest list share the same shapes)."""
from __future__ import annotations

import json
import platform as _platform
from dataclasses import dataclass, field
from typing import Any

from pallet.errors import InvalidArgument
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest

MAX_MANIFEST_SIZE = 4 * 1024 * 1024  # distribution spec: registries may reject > 4 MiB; so do we


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes for content pallet writes (the digest is of these exact bytes)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def loads_capped(data: bytes, what: str, cap: int = MAX_MANIFEST_SIZE) -> Any:
    if len(data) > cap:
        raise InvalidArgument(f"{what} is {len(data)} bytes, over the {cap}-byte limit")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{what} is not valid JSON: {e}") from None


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidArgument(f"invalid platform {text!r}: want os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def host(cls) -> Platform:
        m = _platform.machine()
        arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)
        return cls("linux", arch, "v7" if m == "armv7l" else "")

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Platform:
        return cls(d.get("os", ""), d.get("architecture", ""), d.get("variant", "") or "",
                   d.get("os.version", "") or "")

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        if self.os_version:
            d["os.version"] = self.os_version
        return d

    def matches(self, other: Platform) -> bool:
        """``self`` is what the user wants; an empty variant matches any."""
        if self.os != other.os or self.architecture != other.architecture:
            return False
        return not self.variant or not other.variant or self.variant == other.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str = ""

    @classmethod
    def from_json(cls, d: Any) -> Descriptor:
        if not isinstance(d, dict):
            raise InvalidArgument("descriptor is not a JSON object")
        try:
            size = d["size"]
            if not isinstance(size, int) or size < 0:
                raise InvalidArgument(f"descriptor has invalid size {size!r}")
            return cls(
                media_type=str(d.get("mediaType", "")),
                digest=Digest.parse(str(d["digest"])),
                size=size,
                annotations=dict(d.get("annotations") or {}),
                platform=Platform.from_json(d["platform"]) if d.get("platform") else None,
                urls=tuple(d.get("urls") or ()),
                artifact_type=str(d.get("artifactType", "") or ""),
            )
        except KeyError as e:
            raise InvalidArgument(f"descriptor lacks {e.args[0]!r}") from None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            d["urls"] = list(self.urls)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform:
            d["platform"] = self.platform.to_json()
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker schema 2)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    subject: Descriptor | None = None
    artifact_type: str = ""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type,
                             "config": self.config.to_json(),
                             "layers": [x.to_json() for x in self.layers]}
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        if self.subject:
            d["subject"] = self.subject.to_json()
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    def to_bytes(self) -> bytes:
        return dumps(self.to_json())


@dataclass(frozen=True)
class Index:
    """An image index (OCI) or manifest list (Docker)."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    subject: Descriptor | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type,
                             "manifests": [x.to_json() for x in self.manifests]}
        if self.subject:
            d["subject"] = self.subject.to_json()
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    def to_bytes(self) -> bytes:
        return dumps(self.to_json())

    def select(self, want: Platform) -> Descriptor:
        from pallet.errors import NotFound

        for d in self.manifests:
            if d.platform and want.matches(d.platform):
                return d
        have = ", ".join(str(d.platform) for d in self.manifests if d.platform) or "none"
        raise NotFound(f"no image for platform {want} in the index (it has: {have})")


def parse(data: bytes, media_type: str = "") -> Manifest | Index:
    """Parse a manifest or index. ``media_type`` (e.g. a Content-Type) is used when the body
    has none; an unknown or unsupported one raises InvalidArgument."""
    obj = loads_capped(data, "manifest")
    if not isinstance(obj, dict):
        raise InvalidArgument("manifest is not a JSON object")
    body_mt = obj.get("mediaType")
    if body_mt is not None and not isinstance(body_mt, str):
        raise InvalidArgument("manifest mediaType is not a string")
    kind = body_mt or media_type
    if not kind:
        # OCI allows omitting mediaType; infer from shape
        kind = mt.OCI_INDEX if "manifests" in obj else mt.OCI_MANIFEST
    if kind in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED) or obj.get("schemaVersion") == 1:
        raise InvalidArgument("unsupported manifest: Docker schema 1 is deprecated")
    if obj.get("schemaVersion") != 2:
        raise InvalidArgument(f"unsupported manifest schemaVersion {obj.get('schemaVersion')!r}")
    subject = Descriptor.from_json(obj["subject"]) if obj.get("subject") else None
    if kind in mt.MANIFESTS:
        if not isinstance(obj.get("config"), dict) or not isinstance(obj.get("layers", []), list):
            raise InvalidArgument("manifest lacks a config or has invalid layers")
        return Manifest(kind, Descriptor.from_json(obj["config"]),
                        tuple(Descriptor.from_json(x) for x in obj.get("layers") or []),
                        dict(obj.get("annotations") or {}), subject,
                        str(obj.get("artifactType", "") or ""))
    if kind in mt.INDEXES:
        if not isinstance(obj.get("manifests"), list):
            raise InvalidArgument("index lacks a manifests list")
        return Index(kind, tuple(Descriptor.from_json(x) for x in obj["manifests"]),
                     dict(obj.get("annotations") or {}), subject)
    raise InvalidArgument(f"unsupported manifest media type {kind!r}")
