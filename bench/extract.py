#!/usr/bin/env python3
"""Benchmark: extract a 15,000-file layer with pallet's extractor vs GNU ``tar -x``.

Usage: .venv/bin/python bench/extract.py [--files 15000] [--dir /dev/shm/pallet-bench] [--runs 5]

Makes (once, cached) a layer tar of N files (150 dirs, sizes 0..50 KiB, ~25 KiB mean, so ~370 MB
for 15,000 files, like MEASURED.md's layer), then alternates: GNU tar -x (as root it restores
owners, modes, mtimes) and pallet's extractor, each into a fresh dir on the same filesystem,
dropping the tree between runs. Prints the median of each and the ratio (goal <= 1.5).
Pallet is timed two ways: the bare extractor (TarReader + Applier, like tar -x), and the
store's ingest path (hash the stream for the diff-id while extracting, as add_layer does).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pallet.image.apply import Applier  # noqa: E402
from pallet.image.tario import TarReader  # noqa: E402


def make_layer(path: Path, files: int) -> None:
    rnd = random.Random(42)
    src = path.with_suffix(".src")
    shutil.rmtree(src, ignore_errors=True)
    blob = os.urandom(64 * 1024)
    ndirs = max(1, files // 100)
    for i in range(files):
        d = src / f"usr/lib/pkg{i % ndirs:03d}"
        d.mkdir(parents=True, exist_ok=True)
        n = rnd.randint(0, 50 * 1024)
        (d / f"file{i:05d}.so").write_bytes(blob[:n])
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(src, arcname=".")
    shutil.rmtree(src)


def run_tar(tarpath: Path, dest: Path) -> float:
    dest.mkdir()
    t = time.perf_counter()
    subprocess.run(["tar", "-xf", str(tarpath), "-C", str(dest)], check=True)
    return time.perf_counter() - t


def run_pallet(tarpath: Path, dest: Path, hashing: bool) -> float:
    dest.mkdir()
    t = time.perf_counter()
    h = hashlib.sha256()
    with open(tarpath, "rb", buffering=0) as f:
        raw = f.read

        def read(n: int) -> bytes:
            b = raw(n)
            h.update(b)
            return b

        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        ap = Applier(fd)
        try:
            r = TarReader(read if hashing else raw)
            ap.apply(r)
            r.drain()
        finally:
            ap.close()
            os.close(fd)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=15000)
    ap.add_argument("--dir", default="/dev/shm/pallet-bench")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    work = Path(a.dir)
    work.mkdir(parents=True, exist_ok=True)
    layer = work / f"layer-{a.files}.tar"
    if not layer.exists():
        make_layer(layer, a.files)
    out = work / "out"
    res: dict[str, list[float]] = {"tar": [], "pallet": [], "pallet+hash": []}
    for _ in range(a.runs):
        for name in res:
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            if name == "tar":
                res[name].append(run_tar(layer, out))
            else:
                res[name].append(run_pallet(layer, out, name == "pallet+hash"))
    shutil.rmtree(out, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    best = {k: min(v) for k, v in res.items()}
    size = layer.stat().st_size / 1e6
    print(f"layer: {a.files} files, {size:.0f} MB in {work}; {a.runs} runs each (median / best)")
    for k in res:
        print(f"  {k:12s} {med[k]:.3f} s / {best[k]:.3f} s   ratio vs tar {med[k] / med['tar']:.2f}x / "
              f"{best[k] / best['tar']:.2f}x")


if __name__ == "__main__":
    main()
