"""The registry's storage interface: what the HTTP layer needs, nothing more.

Contract shared by every driver:
- blobs are content-addressed and shared by all repositories; a repository sees a blob only
  through a *link* (layers, manifest revisions), like distribution's ``paths.go`` layout;
- an upload is staged apart and becomes a blob only in ``upload_commit`` after the digest
  check, atomically: a crash never exposes a partial blob;
- ``blob_path`` may return None (an object store); the server then streams ``blob_chunks``.
Small metadata calls are synchronous (local, cheap); bulk data calls are async.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from pallet.oci.digest import Digest


class UploadWriter(Protocol):
    """Appends to one upload session. ``offset`` is the session size before this writer."""

    offset: int

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> int:
        """Flush and release; returns the new session size."""

    async def abort(self) -> None:
        """Drop what this writer appended (client went away) and release."""


class StorageDriver(Protocol):
    # blobs (global, content-addressed)
    def blob_size(self, digest: Digest) -> int | None: ...

    def blob_touch(self, digest: Digest) -> bool: ...

    def blob_path(self, digest: Digest) -> str | None: ...

    def blob_chunks(self, digest: Digest, start: int, end: int) -> AsyncIterator[bytes]: ...

    def blob_read(self, digest: Digest, cap: int) -> bytes | None: ...

    def blob_put(self, digest: Digest, data: bytes) -> None: ...

    def blob_remove(self, digest: Digest) -> None: ...

    def blobs(self) -> list[tuple[Digest, float]]:
        """Every stored blob with its modification time (for GC)."""

    # repository links
    def repo_exists(self, repo: str) -> bool: ...

    def repositories(self) -> list[str]: ...

    def layer_link(self, repo: str, digest: Digest) -> None: ...

    def layer_linked(self, repo: str, digest: Digest) -> bool: ...

    def layer_unlink(self, repo: str, digest: Digest) -> bool: ...

    def layer_links(self, repo: str) -> list[Digest]: ...

    def manifest_link(self, repo: str, digest: Digest) -> None: ...

    def manifest_linked(self, repo: str, digest: Digest) -> bool: ...

    def manifest_unlink(self, repo: str, digest: Digest) -> bool: ...

    def manifest_links(self, repo: str) -> list[Digest]: ...

    def tag_get(self, repo: str, tag: str) -> Digest | None: ...

    def tag_set(self, repo: str, tag: str, digest: Digest) -> None: ...

    def tag_remove(self, repo: str, tag: str) -> bool: ...

    def tags(self, repo: str) -> list[str]: ...

    # referrers: descriptors of manifests whose ``subject`` is a digest
    def referrer_add(self, repo: str, subject: Digest, digest: Digest, descriptor: bytes) -> None: ...

    def referrer_remove(self, repo: str, subject: Digest, digest: Digest) -> None: ...

    def referrers(self, repo: str, subject: Digest) -> list[bytes]: ...

    # uploads
    def upload_create(self, repo: str) -> str: ...

    def upload_size(self, repo: str, uuid: str) -> int | None: ...

    def upload_writer(self, repo: str, uuid: str) -> UploadWriter: ...

    async def upload_commit(self, repo: str, uuid: str, digest: Digest) -> int:
        """Verify the staged content against ``digest``, publish it as a blob, link it into
        ``repo`` and drop the session. Raises DIGEST_INVALID (session dropped) on mismatch."""

    def upload_cancel(self, repo: str, uuid: str) -> bool: ...

    def uploads(self) -> list[tuple[str, float]]:
        """Every upload session (uuid, last modification time) for GC."""

    def upload_remove(self, uuid: str) -> None: ...
