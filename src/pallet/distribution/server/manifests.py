"""Manifest acceptance and selection (distribution spec "Pushing Manifests", "Pulling
manifests"; image spec manifest.md, image-index.md).

A manifest is accepted only when it is JSON, of a supported media type that agrees with the
request's Content-Type, under 4 MiB, and every blob (config, layers) and, for an index, every
child manifest it names is already in the repository. ``subject`` may point anywhere (the
spec lets referrers be pushed before their subject).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pallet.distribution.server.errors import RegistryError
from pallet.errors import InvalidArgument
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest
from pallet.oci.manifest import MAX_MANIFEST_SIZE, Index, Manifest, parse

ACCEPTED_TYPES = mt.ALL_MANIFESTS


@dataclass(frozen=True)
class Parsed:
    media_type: str
    doc: Manifest | Index
    raw: dict[str, Any]

    @property
    def subject(self) -> Digest | None:
        return self.doc.subject.digest if self.doc.subject else None

    def children(self) -> list[Digest]:
        return [d.digest for d in self.doc.manifests] if isinstance(self.doc, Index) else []

    def blobs(self) -> list[Digest]:
        """Blobs the repository must hold: config and layers without external ``urls``."""
        if not isinstance(self.doc, Manifest):
            return []
        out = [self.doc.config.digest]
        out += [x.digest for x in self.doc.layers if not x.urls]
        return out

    def artifact_type(self) -> str:
        at = self.raw.get("artifactType")
        if isinstance(at, str) and at:
            return at
        if isinstance(self.doc, Manifest):
            return self.doc.config.media_type
        return ""


def _base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def check(body: bytes, content_type: str) -> Parsed:
    """Parse and validate a pushed manifest body; raises MANIFEST_INVALID or a 413."""
    if len(body) > MAX_MANIFEST_SIZE:
        raise RegistryError("MANIFEST_INVALID", f"manifest is over {MAX_MANIFEST_SIZE} bytes", status=413)
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RegistryError("MANIFEST_INVALID", f"manifest is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise RegistryError("MANIFEST_INVALID", "manifest is not a JSON object")
    ctype = _base_type(content_type)
    body_type = obj.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise RegistryError("MANIFEST_INVALID", "manifest mediaType is not a string")
    if body_type and ctype and ctype != body_type:
        raise RegistryError("MANIFEST_INVALID",
                            f"Content-Type {ctype!r} does not match the manifest mediaType {body_type!r}")
    kind = body_type or (ctype if ctype in ACCEPTED_TYPES else "")
    if not kind:
        if ctype and ctype not in ("application/json", "application/octet-stream"):
            raise RegistryError("MANIFEST_INVALID", f"unsupported manifest media type {ctype!r}")
        kind = mt.OCI_INDEX if "manifests" in obj else mt.OCI_MANIFEST
    if kind not in ACCEPTED_TYPES:
        raise RegistryError("MANIFEST_INVALID", f"unsupported manifest media type {kind!r}")
    try:
        doc = parse(body, kind)
    except InvalidArgument as e:
        raise RegistryError("MANIFEST_INVALID", str(e)) from None
    except (ValueError, TypeError, AttributeError, KeyError) as e:  # odd shapes inside descriptors
        raise RegistryError("MANIFEST_INVALID", f"malformed manifest: {e}") from None
    if doc.media_type != kind:
        raise RegistryError("MANIFEST_INVALID", f"manifest shape does not match media type {kind!r}")
    return Parsed(kind, doc, obj)


def media_type_of(body: bytes) -> str:
    """The media type of stored (already validated) manifest bytes."""
    try:
        obj = json.loads(body)
    except ValueError:
        return mt.OCI_MANIFEST
    t = obj.get("mediaType") if isinstance(obj, dict) else None
    if isinstance(t, str) and t:
        return t
    return mt.OCI_INDEX if isinstance(obj, dict) and "manifests" in obj else mt.OCI_MANIFEST


def referrer_descriptor(p: Parsed, digest: Digest, size: int) -> bytes:
    """The descriptor the referrers API lists for a manifest with a subject."""
    d: dict[str, Any] = {"mediaType": p.media_type, "digest": str(digest), "size": size}
    at = p.artifact_type()
    if at:
        d["artifactType"] = at
    ann = p.raw.get("annotations")
    if isinstance(ann, dict) and ann:
        d["annotations"] = ann
    return json.dumps(d, separators=(",", ":")).encode()


def accepts(accept_headers: list[str]) -> set[str] | None:
    """Media types a client accepts; None means anything (no Accept, or a wildcard)."""
    out: set[str] = set()
    for h in accept_headers:
        for part in h.split(","):
            t = _base_type(part)
            if t in ("*/*", "application/*"):
                return None
            if t:
                out.add(t)
    return out or None


def platform_child(body: bytes, platform: tuple[str, str]) -> Digest | None:
    """For a client that does not accept indexes: the index entry for ``platform``."""
    try:
        obj = json.loads(body)
        for m in obj.get("manifests") or []:
            p = m.get("platform") or {}
            if (p.get("os"), p.get("architecture")) == platform:
                return Digest.parse(m["digest"])
    except (ValueError, KeyError, AttributeError, TypeError, InvalidArgument):
        return None
    return None
