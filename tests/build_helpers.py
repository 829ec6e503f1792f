"""Helpers for the build tests: a pallet root with busybox imported, Dockerfile contexts, and
the file tree of a built image read back from its layers (whiteouts applied)."""
from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Entry:
    kind: str        # "f", "d", "l", "c", ...
    mode: int
    uid: int
    gid: int
    data: bytes = b""
    link: str = ""


def image_tree(pallet: Any, name: str) -> dict[str, Entry]:
    """Path -> Entry of the image ``name``, applying each layer's whiteouts in order."""
    from pallet.oci.digest import Digest
    from pallet.store import Store

    tree: dict[str, Entry] = {}
    with Store.open(pallet.root, pallet.runroot) as st:
        rec = st.resolve_image(name)
        for desc in rec.layer_blobs:
            with st.open_blob(Digest.parse(str(desc.digest))) as f:
                with tarfile.open(fileobj=f, mode="r|*") as tf:
                    for m in tf:
                        p = "/" + m.name.strip("/").removeprefix("./")
                        d, _, base = p.rpartition("/")
                        if base == ".wh..wh..opq":
                            for k in [k for k in tree if k.startswith(d + "/")]:
                                del tree[k]
                            continue
                        if base.startswith(".wh."):
                            gone = d + "/" + base[4:]
                            for k in [k for k in tree if k == gone or k.startswith(gone + "/")]:
                                del tree[k]
                            continue
                        kind = {tarfile.REGTYPE: "f", tarfile.DIRTYPE: "d", tarfile.SYMTYPE: "l",
                                tarfile.LNKTYPE: "h", tarfile.CHRTYPE: "c"}.get(m.type, "?")
                        data = tf.extractfile(m).read() if m.isreg() else b""  # type: ignore[union-attr]
                        if kind != "d":  # a non-directory replaces a directory and all below it
                            for k in [k for k in tree if k.startswith(p + "/")]:
                                del tree[k]
                        tree[p] = Entry(kind, m.mode, m.uid, m.gid, data, m.linkname)
    return tree


def config(pallet: Any, name: str) -> dict[str, Any]:
    from pallet.store import Store

    with Store.open(pallet.root, pallet.runroot) as st:
        return st.resolve_image(name).config


def write_ctx(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    return root


def leftovers(pallet: Any) -> list[str]:
    """Anything a failed build could leave: temp dirs, runtime state, overlay mounts."""
    out = []
    tmp = Path(pallet.root) / "tmp"
    if tmp.is_dir():
        out += [str(p) for p in tmp.iterdir()]
    rt = Path(pallet.runroot) / "build-runtime"
    if rt.is_dir():
        out += [str(p) for p in rt.iterdir()]
    with open("/proc/self/mountinfo") as f:
        out += [line for line in f if str(pallet.root) in line]
    return out


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)


def is_root() -> bool:
    return os.geteuid() == 0
