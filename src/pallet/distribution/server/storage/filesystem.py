"""Filesystem storage driver. The one on-disk layout (after distribution's ``paths.go``)::

    <root>/blobs/<alg>/<hh>/<hex>/data                       content, shared by all repositories
    <root>/repositories/<name>/_layers/<alg>/<hex>/link       a blob this repository may serve
    <root>/repositories/<name>/_manifests/revisions/<alg>/<hex>/link
    <root>/repositories/<name>/_manifests/tags/<tag>/current/link   (holds the digest)
    <root>/repositories/<name>/_referrers/<alg>/<subject-hex>/<alg>-<hex>   (descriptor JSON)
    <root>/uploads/<uuid>/data, <uuid>/repo                   staged uploads

Every write is temp-file-in-the-same-directory + ``os.replace``; an upload becomes a blob by
one ``rename`` after its digest was checked and its data fsynced, so a crash (even SIGKILL)
leaves either no blob or the whole blob. Name components never start with ``_`` (grammar),
so the ``_layers``/``_manifests`` directories cannot collide with a nested repository.
"""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import uuid as _uuid
from collections.abc import AsyncIterator
from typing import Any

from pallet.distribution.server.errors import RegistryError, digest_invalid, upload_unknown
from pallet.distribution.server.names import UUID_RE
from pallet.oci.digest import Digest

_CHUNK = 1 << 20


def _atomic_write(path: str, data: bytes, fsync: bool = False) -> None:
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".tmp-{_uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_file(path: str, algorithm: str) -> tuple[str, int]:
    h = hashlib.new(algorithm)
    n = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(_CHUNK)
            if not b:
                break
            h.update(b)
            n += len(b)
    return h.hexdigest(), n


class _FsUploadWriter:
    """Appends to ``uploads/<uuid>/data`` under an exclusive flock; hashes as it goes when the
    running hash of this process is in step with the file (else the commit re-hashes)."""

    def __init__(self, drv: FilesystemDriver, uuid: str, path: str) -> None:
        self._drv = drv
        self._uuid = uuid
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise RegistryError("BLOB_UPLOAD_INVALID", "another request is writing this upload") from None
        self.offset = os.fstat(self._fd).st_size
        state = drv._hashers.get(uuid)
        self._hasher: Any = state[0].copy() if state and state[1] == self.offset else None
        self._size = self.offset
        self._buf: list[bytes] = []
        self._buffered = 0

    def _flush_sync(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if self._hasher is not None:
            self._hasher.update(data)

    async def _flush(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf) if len(self._buf) > 1 else self._buf[0]
        self._buf, self._buffered = [], 0
        if len(data) >= 256 * 1024:
            await asyncio.to_thread(self._flush_sync, data)
        else:
            self._flush_sync(data)
        self._size += len(data)

    async def write(self, data: bytes) -> None:
        self._buf.append(data)
        self._buffered += len(data)
        if self._buffered >= _CHUNK:
            await self._flush()

    async def close(self) -> int:
        try:
            await self._flush()
            if self._hasher is not None:
                self._drv._hashers[self._uuid] = (self._hasher, self._size)
            else:
                self._drv._hashers.pop(self._uuid, None)
            return self._size
        finally:
            self._release()

    async def abort(self) -> None:
        try:
            self._buf = []
            os.ftruncate(self._fd, self.offset)
        except OSError:
            pass
        finally:
            self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


class FilesystemDriver:
    def __init__(self, rootdirectory: str) -> None:
        self.root = os.path.abspath(rootdirectory)
        for d in ("blobs", "repositories", "uploads"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        # uuid -> (running hash, size it covers): saves re-reading an upload at commit
        self._hashers: dict[str, tuple[Any, int]] = {}

    # -- paths ---------------------------------------------------------------------------
    def _blob_dir(self, d: Digest) -> str:
        return os.path.join(self.root, "blobs", d.algorithm, d.encoded[:2], d.encoded)

    def _repo(self, repo: str, *parts: str) -> str:
        return os.path.join(self.root, "repositories", repo, *parts)

    def _layer(self, repo: str, d: Digest) -> str:
        return self._repo(repo, "_layers", d.algorithm, d.encoded, "link")

    def _revision(self, repo: str, d: Digest) -> str:
        return self._repo(repo, "_manifests", "revisions", d.algorithm, d.encoded, "link")

    def _tag(self, repo: str, tag: str) -> str:
        return self._repo(repo, "_manifests", "tags", tag, "current", "link")

    def _upload(self, uuid: str, *parts: str) -> str:
        if not UUID_RE.match(uuid):
            raise upload_unknown(uuid)
        return os.path.join(self.root, "uploads", uuid, *parts)

    # -- blobs ---------------------------------------------------------------------------
    def blob_size(self, digest: Digest) -> int | None:
        try:
            return os.stat(os.path.join(self._blob_dir(digest), "data")).st_size
        except FileNotFoundError:
            return None

    def blob_touch(self, digest: Digest) -> bool:
        """Mark a blob as just used (GC's grace period counts from here); False if absent."""
        try:
            os.utime(os.path.join(self._blob_dir(digest), "data"))
            return True
        except FileNotFoundError:
            return False

    def blob_path(self, digest: Digest) -> str | None:
        return os.path.join(self._blob_dir(digest), "data")

    async def blob_chunks(self, digest: Digest, start: int, end: int) -> AsyncIterator[bytes]:
        with open(os.path.join(self._blob_dir(digest), "data"), "rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                b = await asyncio.to_thread(f.read, min(left, _CHUNK))
                if not b:
                    break
                left -= len(b)
                yield b

    def blob_read(self, digest: Digest, cap: int) -> bytes | None:
        try:
            with open(os.path.join(self._blob_dir(digest), "data"), "rb") as f:
                return f.read(cap + 1)[:cap + 1]
        except FileNotFoundError:
            return None

    def blob_put(self, digest: Digest, data: bytes) -> None:
        path = os.path.join(self._blob_dir(digest), "data")
        if not os.path.exists(path):
            _atomic_write(path, data, fsync=True)

    def blob_remove(self, digest: Digest) -> None:
        d = self._blob_dir(digest)
        for name in os.listdir(d) if os.path.isdir(d) else ():
            os.unlink(os.path.join(d, name))
        try:
            os.rmdir(d)
        except OSError:
            pass

    def blobs(self) -> list[tuple[Digest, float]]:
        out = []
        base = os.path.join(self.root, "blobs")
        for alg in os.listdir(base):
            for hh in os.listdir(os.path.join(base, alg)):
                for enc in os.listdir(os.path.join(base, alg, hh)):
                    try:
                        st = os.stat(os.path.join(base, alg, hh, enc, "data"))
                        out.append((Digest(alg, enc), st.st_mtime))
                    except FileNotFoundError:
                        continue
        return out

    # -- repositories --------------------------------------------------------------------
    def repo_exists(self, repo: str) -> bool:
        return os.path.isdir(self._repo(repo, "_manifests")) or os.path.isdir(self._repo(repo, "_layers"))

    def repositories(self) -> list[str]:
        base = os.path.join(self.root, "repositories")
        out = []
        for dirpath, dirnames, _files in os.walk(base):
            if "_manifests" in dirnames or "_layers" in dirnames:
                out.append(os.path.relpath(dirpath, base))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(out)

    def _link(self, path: str, digest: Digest) -> None:
        if not os.path.exists(path):
            _atomic_write(path, str(digest).encode())

    def _unlink(self, path: str) -> bool:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        for _ in range(2):  # drop the now-empty <hex> directory (and a tag's 'current')
            path = os.path.dirname(path)
            try:
                os.rmdir(path)
            except OSError:
                break
        return True

    def _links(self, base: str) -> list[Digest]:
        out: list[Digest] = []
        if not os.path.isdir(base):
            return out
        for alg in os.listdir(base):
            for enc in os.listdir(os.path.join(base, alg)):
                if os.path.exists(os.path.join(base, alg, enc, "link")):
                    out.append(Digest(alg, enc))
        return out

    def layer_link(self, repo: str, digest: Digest) -> None:
        self._link(self._layer(repo, digest), digest)

    def layer_linked(self, repo: str, digest: Digest) -> bool:
        return os.path.exists(self._layer(repo, digest))

    def layer_unlink(self, repo: str, digest: Digest) -> bool:
        return self._unlink(self._layer(repo, digest))

    def layer_links(self, repo: str) -> list[Digest]:
        return self._links(self._repo(repo, "_layers"))

    def manifest_link(self, repo: str, digest: Digest) -> None:
        self._link(self._revision(repo, digest), digest)

    def manifest_linked(self, repo: str, digest: Digest) -> bool:
        return os.path.exists(self._revision(repo, digest))

    def manifest_unlink(self, repo: str, digest: Digest) -> bool:
        return self._unlink(self._revision(repo, digest))

    def manifest_links(self, repo: str) -> list[Digest]:
        return self._links(self._repo(repo, "_manifests", "revisions"))

    def tag_get(self, repo: str, tag: str) -> Digest | None:
        try:
            with open(self._tag(repo, tag), "rb") as f:
                return Digest.parse(f.read().decode().strip())
        except (FileNotFoundError, NotADirectoryError):
            return None

    def tag_set(self, repo: str, tag: str, digest: Digest) -> None:
        _atomic_write(self._tag(repo, tag), str(digest).encode())

    def tag_remove(self, repo: str, tag: str) -> bool:
        return self._unlink(self._tag(repo, tag))

    def tags(self, repo: str) -> list[str]:
        base = self._repo(repo, "_manifests", "tags")
        try:
            names = os.listdir(base)
        except FileNotFoundError:
            return []
        return sorted(t for t in names if os.path.exists(os.path.join(base, t, "current", "link")))

    # -- referrers -----------------------------------------------------------------------
    def _referrer_dir(self, repo: str, subject: Digest) -> str:
        return self._repo(repo, "_referrers", subject.algorithm, subject.encoded)

    def referrer_add(self, repo: str, subject: Digest, digest: Digest, descriptor: bytes) -> None:
        name = f"{digest.algorithm}-{digest.encoded}"
        _atomic_write(os.path.join(self._referrer_dir(repo, subject), name), descriptor)

    def referrer_remove(self, repo: str, subject: Digest, digest: Digest) -> None:
        d = self._referrer_dir(repo, subject)
        try:
            os.unlink(os.path.join(d, f"{digest.algorithm}-{digest.encoded}"))
            os.rmdir(d)
        except OSError:
            pass

    def referrers(self, repo: str, subject: Digest) -> list[bytes]:
        d = self._referrer_dir(repo, subject)
        try:
            names = sorted(n for n in os.listdir(d) if not n.startswith("."))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            try:
                with open(os.path.join(d, n), "rb") as f:
                    out.append(f.read())
            except FileNotFoundError:
                continue
        return out

    # -- uploads -------------------------------------------------------------------------
    def upload_create(self, repo: str) -> str:
        uuid = _uuid.uuid4().hex
        d = self._upload(uuid)
        os.makedirs(d)
        _atomic_write(os.path.join(d, "repo"), repo.encode())
        open(os.path.join(d, "data"), "wb").close()
        self._hashers[uuid] = (hashlib.sha256(), 0)
        return uuid

    def _session(self, repo: str, uuid: str) -> str:
        """The data path of ``uuid`` if it belongs to ``repo``; else BLOB_UPLOAD_UNKNOWN."""
        try:
            with open(self._upload(uuid, "repo"), "rb") as f:
                owner = f.read().decode()
        except (FileNotFoundError, NotADirectoryError):
            raise upload_unknown(uuid) from None
        if owner != repo:
            raise upload_unknown(uuid)
        return self._upload(uuid, "data")

    def upload_size(self, repo: str, uuid: str) -> int | None:
        try:
            return os.stat(self._session(repo, uuid)).st_size
        except RegistryError:
            return None
        except FileNotFoundError:
            return None

    def upload_writer(self, repo: str, uuid: str) -> _FsUploadWriter:
        try:
            return _FsUploadWriter(self, uuid, self._session(repo, uuid))
        except FileNotFoundError:  # cancelled or collected meanwhile
            raise upload_unknown(uuid) from None

    async def upload_commit(self, repo: str, uuid: str, digest: Digest) -> int:
        data = self._session(repo, uuid)
        try:
            fd = os.open(data, os.O_RDONLY)
        except FileNotFoundError:
            raise upload_unknown(uuid) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RegistryError("BLOB_UPLOAD_INVALID", "another request is writing this upload") from None
        try:
            size = os.fstat(fd).st_size
            state = self._hashers.get(uuid)
            if state and state[1] == size and digest.algorithm == "sha256":
                got = state[0].hexdigest()
            else:
                got, size = await asyncio.to_thread(_hash_file, data, digest.algorithm)
            if got != digest.encoded:
                self.upload_remove(uuid)
                raise digest_invalid(f"upload content has digest {digest.algorithm}:{got}, not {digest}")
            await asyncio.to_thread(os.fsync, fd)
            bdir = self._blob_dir(digest)
            target = os.path.join(bdir, "data")
            if not os.path.exists(target):
                os.makedirs(bdir, exist_ok=True)
                os.rename(data, target)
                _fsync_dir(bdir)
        finally:
            os.close(fd)
        self.layer_link(repo, digest)
        self.upload_remove(uuid)
        return size

    def upload_cancel(self, repo: str, uuid: str) -> bool:
        self._session(repo, uuid)
        self.upload_remove(uuid)
        return True

    def uploads(self) -> list[tuple[str, float]]:
        base = os.path.join(self.root, "uploads")
        out = []
        for u in os.listdir(base):
            try:
                st = os.stat(os.path.join(base, u, "data"))
                mtime = st.st_mtime
            except FileNotFoundError:
                try:
                    mtime = os.stat(os.path.join(base, u)).st_mtime
                except FileNotFoundError:
                    continue
            out.append((u, mtime))
        return out

    def upload_remove(self, uuid: str) -> None:
        self._hashers.pop(uuid, None)
        d = os.path.join(self.root, "uploads", uuid)
        if not os.path.isdir(d) or "/" in uuid or uuid.startswith("."):
            return
        for name in os.listdir(d):
            try:
                os.unlink(os.path.join(d, name))
            except OSError:
                pass
        try:
            os.rmdir(d)
        except OSError:
            pass
