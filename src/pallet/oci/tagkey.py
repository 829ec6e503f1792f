"""The tags table's key of a plain image name, without ``re`` (it imports enum: ~5 ms on the
run path): ``busybox`` -> ``docker.io/library/busybox:latest``. For ``[domain/]path[:tag]``
names only; anything else (digests, IDs, odd names) gives None and is left to
``pallet.oci.reference.Reference``, the grammar's one authority. Used by the light store views
of ``run`` (engine.lightstore) and ``build`` (build.quickstore)."""
from __future__ import annotations

# docker's reference grammar, checked by hand for ASCII:
#   path component  [a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*      tag  [\w][\w.-]{0,127}
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_TAGCH = _WORD | {".", "-"}


def _component_ok(p: str) -> bool:
    if not p or p[0] not in _ALNUM or p[-1] not in _ALNUM:
        return False
    i, n = 0, len(p)
    while i < n:
        if p[i] in _ALNUM:
            i += 1
            continue
        j = i
        while j < n and p[j] not in _ALNUM:
            j += 1
        sep = p[i:j]
        if sep not in (".", "_", "__") and sep.strip("-"):
            return False
        i = j
    return True


def _tag_ok(t: str) -> bool:
    if not t.isascii():  # \w is Unicode-aware: let re decide
        import re

        return re.fullmatch(r"[\w][\w.-]{0,127}", t) is not None
    return 0 < len(t) <= 128 and t[0] in _WORD and all(ch in _TAGCH for ch in t)


def tag_key(text: str) -> str | None:
    """The tags table's key for a plain ``[domain/]path[:tag]`` name; None for anything else."""
    if "@" in text or text.startswith("sha256:") or not text or len(text) > 255:
        return None
    name, tag = text, "latest"
    slash, colon = text.rfind("/"), text.rfind(":")
    if colon > slash:
        name, tag = text[:colon], text[colon + 1:]
        if not _tag_ok(tag):
            return None
    parts = name.split("/")
    domain = "docker.io"
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        domain = parts.pop(0)
    if domain == "index.docker.io":
        domain = "docker.io"
    if not parts or not all(_component_ok(p) for p in parts):
        return None
    if domain == "docker.io" and len(parts) == 1:
        parts.insert(0, "library")
    return f"{domain}/{'/'.join(parts)}:{tag}"
