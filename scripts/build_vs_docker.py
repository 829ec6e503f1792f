"""Build one context with ``DOCKER_BUILDKIT=0 docker build`` (the anchor dockerd) and with
``pallet build``, then compare the two images: the file tree (type, mode, owner, content, link
target) and the Config fields Docker's legacy builder sets. Prints the differences; exits 1 when
there are any. An audit tool (needs dockerd), not part of the test suite.

    scripts/build_vs_docker.py CONTEXT [-- extra build args...]

Env: DOCKER_HOST (default unix:///tmp/anchors/docker.sock), PALLET_ROOT / PALLET_RUNROOT for
pallet's store, PALLET (default .venv/bin/pallet next to this script).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels",
          "StopSignal", "Healthcheck", "Shell", "OnBuild", "ArgsEscaped")
_HASH = re.compile(r"((file|dir|multi):)?[0-9a-f]{64}\b")
HERE = Path(__file__).resolve().parent.parent
# the engine's bind-mount targets: docker's init layer, absent from the image either way
SKIP = {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/.dockerenv"}


def tree_of_archive(data: bytes) -> tuple[dict[str, tuple], dict[str, Any], list[dict[str, Any]]]:
    """(path -> entry, config, history) of the single image in a docker-archive."""
    outer = tarfile.open(fileobj=io.BytesIO(data))
    manifest = json.load(outer.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
    cfg = json.load(outer.extractfile(manifest["Config"]))  # type: ignore[arg-type]
    tree: dict[str, tuple] = {}
    for layer in manifest["Layers"]:
        raw = outer.extractfile(layer).read()  # type: ignore[union-attr]
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as tf:
            for m in tf:
                p = "/" + m.name.removeprefix("./").strip("/")
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
                data_hash = ""
                if m.isreg():
                    data_hash = hashlib.sha256(tf.extractfile(m).read()).hexdigest()[:12]  # type: ignore[union-attr]
                if p in SKIP:
                    continue
                if not m.isdir():  # a non-directory replaces a directory and all below it
                    for k in [k for k in tree if k.startswith(p + "/")]:
                        del tree[k]
                # docker's tars carry the file-type bits in the mode field (Go's FileInfoHeader)
                tree[p] = (m.type.decode() if isinstance(m.type, bytes) else str(m.type), oct(m.mode & 0o7777),
                           m.uid, m.gid, data_hash, m.linkname)
    return tree, cfg.get("config") or {}, cfg.get("history") or []


def compare(ctx: str, extra: list[str]) -> int:
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    env.setdefault("DOCKER_HOST", "unix:///tmp/anchors/docker.sock")
    pallet = os.environ.get("PALLET", str(HERE / ".venv/bin/pallet"))
    tag = "cmp/" + Path(ctx).resolve().name.lower().replace("_", "-") + ":x"
    r = subprocess.run(["docker", "build", "-q", "--no-cache", "--network", "none", "-t", tag, *extra, ctx], env=env,
                       capture_output=True, text=True)
    d_ok = r.returncode == 0
    d_err = (r.stderr or r.stdout).strip().splitlines()[-1:] if not d_ok else []
    r2 = subprocess.run([pallet, "build", "-q", "--no-cache", "-t", tag, *extra, ctx], capture_output=True,
                        text=True)
    p_ok = r2.returncode == 0
    p_err = (r2.stderr or r2.stdout).strip().splitlines()[-1:] if not p_ok else []
    print(f"== {ctx}: docker {'ok' if d_ok else 'FAIL ' + str(d_err)}; pallet {'ok' if p_ok else 'FAIL ' + str(p_err)}")
    if not (d_ok and p_ok):
        return 0 if d_ok == p_ok else 1
    dt, dc, dh = tree_of_archive(subprocess.run(["docker", "save", tag], env=env, capture_output=True,
                                                check=True).stdout)
    pt, pc, ph = tree_of_archive(subprocess.run([pallet, "save", tag], capture_output=True, check=True).stdout)
    diffs = 0
    for k in sorted(set(dt) | set(pt)):
        if dt.get(k) != pt.get(k):
            print(f"  tree {k}: docker={dt.get(k)} pallet={pt.get(k)}")
            diffs += 1
    for f in FIELDS:
        if (dc.get(f) or None) != (pc.get(f) or None):  # docker writes "" and null where OCI omits
            print(f"  config {f}: docker={dc.get(f)!r} pallet={pc.get(f)!r}")
            diffs += 1
    dhist = [(h.get("created_by", ""), bool(h.get("empty_layer"))) for h in dh]
    phist = [(h.get("created_by", ""), bool(h.get("empty_layer"))) for h in ph]
    for i, (a, b) in enumerate(zip(dhist, phist, strict=False)):
        # COPY/ADD history names a content hash of docker's own; compare the text before it
        if a[1] != b[1] or _HASH.sub("", a[0]) != _HASH.sub("", b[0]):
            print(f"  history[{i}]: docker={a} pallet={b}")
            diffs += 1
    if len(dhist) != len(phist):
        print(f"  history length: docker={len(dhist)} pallet={len(phist)}")
        diffs += 1
    print(f"  {'same' if not diffs else str(diffs) + ' difference(s)'} ({len(dt)} paths)")
    return 1 if diffs else 0


def main(argv: list[str]) -> int:
    if "--" in argv:
        i = argv.index("--")
        ctxs, extra = argv[:i], argv[i + 1:]
    else:
        ctxs, extra = argv, []
    rc = 0
    for c in ctxs:
        rc |= compare(c, extra)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
