"""Repository names, tags and request paths (distribution spec "Pulling manifests": name and
tag grammar). Paths are parsed from the *raw* request path so that ``..``, ``%2e%2e`` and
``//`` never get normalised into another repository's name: they fail the grammar instead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from pallet.distribution.server.errors import RegistryError, digest_invalid
from pallet.errors import InvalidArgument
from pallet.oci.digest import Digest

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
UUID_RE = re.compile(r"^[a-f0-9]{32}$")
MAX_NAME = 255

# (kind, regex over the path after /v2/); order matters: uploads before blobs
_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("uploads", re.compile(r"^(?P<name>.+)/blobs/uploads/?$")),
    ("upload", re.compile(r"^(?P<name>.+)/blobs/uploads/(?P<ref>[^/]+)$")),
    ("blob", re.compile(r"^(?P<name>.+)/blobs/(?P<ref>[^/]+)$")),
    ("manifest", re.compile(r"^(?P<name>.+)/manifests/(?P<ref>[^/]+)$")),
    ("tags", re.compile(r"^(?P<name>.+)/tags/list$")),
    ("referrers", re.compile(r"^(?P<name>.+)/referrers/(?P<ref>[^/]+)$")),
)


@dataclass(frozen=True)
class Route:
    kind: str  # base | catalog | uploads | upload | blob | manifest | tags | referrers
    name: str = ""
    ref: str = ""


def check_name(name: str) -> str:
    if len(name) > MAX_NAME or not NAME_RE.match(name):
        raise RegistryError("NAME_INVALID", "invalid repository name", detail={"name": name[:300]})
    return name


def parse_digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except InvalidArgument as e:
        raise digest_invalid(str(e)) from None


def is_tag(ref: str) -> bool:
    return bool(TAG_RE.match(ref))


def route(raw_path: str) -> Route | None:
    """Classify a raw request path (query already stripped). None: not a registry path."""
    if not raw_path.startswith("/v2"):
        return None
    if raw_path in ("/v2", "/v2/"):
        return Route("base")
    if raw_path == "/v2/_catalog":
        return Route("catalog")
    rest = raw_path[len("/v2/"):]
    if "%" in rest:
        rest = unquote(rest)
    for kind, rx in _ROUTES:
        m = rx.match(rest)
        if m:
            ref = m.groupdict().get("ref") or ""
            return Route(kind, check_name(m.group("name")), ref)
    return None
