"""Content digests (OCI image spec, descriptor.md "Digests")."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pallet.errors import InvalidArgument

_ALGOS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


@dataclass(frozen=True, order=True)
class Digest:
    """``algorithm:encoded``. Only sha256 and sha512 are accepted (both registered by the spec)."""

    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        m = _DIGEST_RE.match(text)
        if not m:
            raise InvalidArgument(f"invalid digest {text!r}")
        algo, enc = m.group(1), m.group(2)
        want = _ALGOS.get(algo)
        if want is None:
            raise InvalidArgument(f"unsupported digest algorithm {algo!r} in {text!r}")
        if len(enc) != want or not re.fullmatch(r"[a-f0-9]+", enc):
            raise InvalidArgument(f"invalid {algo} digest {text!r}")
        return cls(algo, enc)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    @property
    def hex(self) -> str:
        return self.encoded

    @property
    def short(self) -> str:
        """The 12-character ID docker prints."""
        return self.encoded[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


def is_hex_id(text: str) -> bool:
    """True when ``text`` looks like a (possibly short) hex image/container ID."""
    return bool(re.fullmatch(r"[a-f0-9]{1,64}", text))
