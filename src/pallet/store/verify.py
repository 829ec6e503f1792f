"""Deep verification of an extracted layer against its blob (``pallet system check --deep``).

The blob is read again (its digest is checked by the plain check) and every tar entry is
compared with the tree: type, size and sha256 of regular files, modes, owners (when root),
symlink targets, hard-link identity, device numbers, whiteouts (0/0 char devices) and opaque
dirs. Files in the tree that the tar does not explain are reported too. Read-only: the tree is
never changed here (``check --repair`` removes a layer this finds wrong).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from typing import TYPE_CHECKING, Any

from pallet.errors import PalletError
from pallet.image.apply import WH_META, WH_OPAQUE, WH_PREFIX, split_name
from pallet.image.tario import BLK, CHR, DIR, FIFO, HARDLINK, REG, SYMLINK, TarReader
from pallet.oci.digest import Digest
from pallet.oci.mediatypes import sniff_compression

if TYPE_CHECKING:
    from pallet.store.store import Store

CHUNK = 1 << 20
_KIND = {REG: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK, CHR: stat.S_IFCHR,
         BLK: stat.S_IFBLK, FIFO: stat.S_IFIFO}


def _expected(st: Store, blob: Digest) -> tuple[dict[str, tuple[Any, ...]], set[str]]:
    """What the tar says the tree holds: path -> (kind, ...); and the opaque dirs."""
    want: dict[str, tuple[Any, ...]] = {}
    opaque: set[str] = set()
    with st.open_blob(blob) as f:
        kind = sniff_compression(f.peek(4)[:4])  # type: ignore[attr-defined]
        src: Any = f
        if kind == "gzip":
            from isal import igzip

            src = igzip.IGzipFile(fileobj=f, mode="rb")
        elif kind == "zstd":
            import zstandard

            src = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
        reader = TarReader(src.read)
        for e in reader:
            parts = split_name(e.name)
            if not parts:
                continue
            path, base = "/".join(parts), parts[-1]
            if base == WH_OPAQUE:
                opaque.add("/".join(parts[:-1]))
                continue
            if base.startswith(WH_META):
                continue
            if base.startswith(WH_PREFIX):
                target = "/".join(parts[:-1] + (base[len(WH_PREFIX):],))
                want.setdefault(target, ("wh",))  # same-layer entries win over a whiteout
                continue
            if path in want and want[path][0] == DIR and e.type != DIR:
                for k in [k for k in want if k.startswith(path + "/")]:
                    del want[k]
            if e.type == REG:
                h = hashlib.sha256()
                for mv in reader.data():
                    h.update(mv)
                want[path] = (REG, e.mode, e.uid, e.gid, e.size, h.hexdigest())
            elif e.type == HARDLINK:
                want[path] = (HARDLINK, "/".join(split_name(e.linkname)))
            elif e.type == SYMLINK:
                want[path] = (SYMLINK, e.uid, e.gid, e.linkname)
            elif e.type == DIR:
                want[path] = (DIR, e.mode, e.uid, e.gid)  # a repeated dir entry: the last one wins
            else:
                want[path] = (e.type, e.mode, e.uid, e.gid, e.devmajor, e.devminor)
    return want, opaque


def _hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while b := f.read(CHUNK):
            h.update(b)
    return h.hexdigest()


def verify_layer(st: Store, diff_id: Digest) -> list[str]:
    """Problems found (empty when the tree matches its blob, or the blob is gone: the plain
    check reports a missing blob)."""
    try:
        with open(st.paths.layer(diff_id) / "layer.json", "rb") as f:
            blob = Digest.parse(json.loads(f.read())["blob"])
    except (OSError, ValueError, KeyError, PalletError):
        return [f"layer {diff_id}: unreadable layer.json"]
    if not st.has_blob(blob):
        return []
    try:
        want, opaque = _expected(st, blob)
    except (PalletError, OSError, ValueError, EOFError) as e:
        return [f"layer {diff_id}: cannot read its blob {blob}: {e}"]
    root = str(st.paths.layer_diff(diff_id))
    priv = os.geteuid() == 0
    bad: list[str] = []
    for path, w in sorted(want.items()):
        full = os.path.join(root, path)
        try:
            s = os.lstat(full)
        except OSError:
            bad.append(f"{path} is missing")
            continue
        kind = w[0]
        if kind == "wh":
            ok = stat.S_ISCHR(s.st_mode) and s.st_rdev == 0
        elif kind == HARDLINK:
            try:
                ok = os.lstat(os.path.join(root, w[1])).st_ino == s.st_ino
            except OSError:
                ok = False
        else:
            ok = stat.S_IFMT(s.st_mode) == _KIND[kind]
            if ok and kind != SYMLINK:
                ok = stat.S_IMODE(s.st_mode) == w[1] and (not priv or (s.st_uid, s.st_gid) == (w[2], w[3]))
            if ok and kind == REG:
                ok = s.st_size == w[4] and _hash(full) == w[5]
            elif ok and kind == SYMLINK:
                ok = os.readlink(full) == w[3] and (not priv or (s.st_uid, s.st_gid) == (w[1], w[2]))
            elif ok and kind in (CHR, BLK):
                ok = s.st_rdev == os.makedev(w[4], w[5])
        if not ok:
            bad.append(f"{path} differs from the layer blob")
    for d in sorted(opaque):
        try:
            ok = os.getxattr(os.path.join(root, d), "trusted.overlay.opaque", follow_symlinks=False) == b"y"
        except OSError:
            ok = False
        if not ok:
            bad.append(f"{d or '/'} lost its opaque mark")
    known = set(want) | {p.rsplit("/", i)[0] for p in want for i in range(1, p.count("/") + 1)}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            rel = os.path.relpath(os.path.join(dirpath, n), root)
            if rel not in known:
                bad.append(f"{rel} is not in the layer blob")
    return [f"layer {diff_id}: {b}" for b in bad[:20]] + (
        [f"layer {diff_id}: ... and {len(bad) - 20} more differences"] if len(bad) > 20 else [])
