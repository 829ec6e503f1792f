"""Image references normalised as docker does (distribution/reference, normalize.go).

``busybox`` == ``docker.io/library/busybox:latest``; ``localhost:5000/a/b@sha256:...``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pallet.errors import InvalidArgument
from pallet.oci.digest import Digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
DEFAULT_TAG = "latest"
MAX_NAME = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    """A fully normalised reference. ``tag`` and ``digest`` may both be set (``name:tag@digest``)."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str, *, default_tag: bool = True) -> Reference:
        """Parse and normalise. With ``default_tag``, a reference with neither tag nor digest
        gets ``:latest`` as docker does."""
        if not text:
            raise InvalidArgument("invalid reference format: empty reference")
        if _HEX64.match(text):
            raise InvalidArgument(
                f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
            )
        rest = text
        digest = None
        if "@" in rest:
            rest, dig = rest.split("@", 1)
            try:
                digest = Digest.parse(dig)
            except InvalidArgument:
                raise InvalidArgument(f"invalid reference format: bad digest in {text!r}") from None
        tag = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not _TAG_RE.match(tag):
                raise InvalidArgument(f"invalid reference format: bad tag in {text!r}")
        domain, path = _split_domain(rest)
        if not domain or (domain != DEFAULT_DOMAIN and not _DOMAIN_RE.match(domain)):
            raise InvalidArgument(f"invalid reference format: bad registry in {text!r}")
        if not _PATH_RE.match(path):
            if path.lower() != path and _PATH_RE.match(path.lower()):
                raise InvalidArgument(
                    f"invalid reference format: repository name must be lowercase: {text!r}"
                )
            raise InvalidArgument(f"invalid reference format: {text!r}")
        if len(domain) + 1 + len(path) > MAX_NAME:
            raise InvalidArgument(f"invalid reference format: repository name too long: {text!r}")
        if tag is None and digest is None and default_tag:
            tag = DEFAULT_TAG
        return cls(domain, path, tag, digest)

    @property
    def name(self) -> str:
        """``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """``busybox`` for docker.io/library/busybox, as docker prints it."""
        if self.domain == DEFAULT_DOMAIN:
            if self.path.startswith("library/") and self.path.count("/") == 1:
                return self.path[len("library/") :]
            return self.path
        return self.name

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(self.domain, self.path, None, digest)

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    @property
    def familiar(self) -> str:
        """``busybox:latest``: the short form docker shows in ``images`` and ``RepoTags``."""
        s = self.familiar_name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    @property
    def registry_host(self) -> str:
        """The host to talk to: docker.io is served by registry-1.docker.io."""
        return "registry-1.docker.io" if self.domain == DEFAULT_DOMAIN else self.domain


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    if i == -1 or (
        not any(c in name[:i] for c in ".:") and name[:i] != "localhost" and name[:i].lower() == name[:i]
    ):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = name[:i], name[i + 1 :]
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    return domain, path


def validate_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise InvalidArgument(f"invalid tag {tag!r}")
    return tag


def validate_repository_path(path: str) -> str:
    """Validate a registry repository name (the ``<name>`` of the distribution spec)."""
    if not _PATH_RE.match(path) or len(path) > MAX_NAME:
        raise InvalidArgument(f"invalid repository name {path!r}")
    return path
