#!/usr/bin/env python3
"""Benchmark: extract a 15,000-file layer with pallet's extractor vs GNU ``tar -x``.

Usage: .venv/bin/python bench/extract.py [--files 15000] [--dir /dev/shm/pallet-bench] [--runs 5]

Makes (once, cached) a layer tar of N files (150 dirs, sizes 0..50 KiB, ~25 KiB mean, so ~400 MB
for 15,000 files, like MEASURED.md's layer; written by GNU tar, plain headers as Go's archive/tar
writes for docker layers; ``--pax`` adds a pax header per file, as python's tarfile does), then
alternates: GNU tar -x (as root it restores
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
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pallet.image.apply import Applier  # noqa: E402
from pallet.image.tario import CHUNK, TarReader  # noqa: E402
from pallet.store.pump import Pump  # noqa: E402


def make_layer(path: Path, files: int, pax: bool) -> None:
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
    if pax:  # a pax header per file (tarfile writes sub-second mtimes that way)
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
            tf.add(src, arcname=".")
    else:  # plain headers, like the ustar layers Go's archive/tar (docker, buildkit) writes
        subprocess.run(["tar", "-cf", str(path), "--sort=name", "-C", str(src), "."], check=True)
    shutil.rmtree(src)


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def run_tar(tarpath: Path, dest: Path) -> tuple[float, float]:
    dest.mkdir()
    c, t = _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(["tar", "-xf", str(tarpath), "-C", str(dest)], check=True)
    return time.perf_counter() - t, _cpu(resource.RUSAGE_CHILDREN) - c


def run_pallet(tarpath: Path, dest: Path, hashing: bool) -> tuple[float, float]:
    """The bare extractor, or (hashing) as add_layer runs it: the stream is read and hashed
    for the diff-id in the read-ahead pump thread beside the extractor."""
    dest.mkdir()
    c, t = _cpu(resource.RUSAGE_SELF), time.perf_counter()
    with open(tarpath, "rb", buffering=0) as f:
        read = f.read
        pump = None
        if hashing:
            h = hashlib.sha256()

            def produce() -> bytes:
                b = f.read(CHUNK)
                h.update(b)
                return b

            pump = Pump(produce)
            read = pump.read
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        ap = Applier(fd)
        try:
            r = TarReader(read)
            ap.apply(r)
            r.drain()
        finally:
            if pump is not None:
                pump.close()
            ap.close()
            os.close(fd)
    return time.perf_counter() - t, _cpu(resource.RUSAGE_SELF) - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=15000)
    ap.add_argument("--dir", default="/dev/shm/pallet-bench")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pax", action="store_true", help="a pax header per file (as python tarfile writes)")
    a = ap.parse_args()
    work = Path(a.dir)
    work.mkdir(parents=True, exist_ok=True)
    layer = work / f"layer-{a.files}{'-pax' if a.pax else ''}.tar"
    if not layer.exists():
        make_layer(layer, a.files, a.pax)
    out = work / "out"
    res: dict[str, list[tuple[float, float]]] = {"tar": [], "pallet": [], "pallet+hash": []}
    for _ in range(a.runs):
        for name in res:
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            if name == "tar":
                res[name].append(run_tar(layer, out))
            else:
                res[name].append(run_pallet(layer, out, name == "pallet+hash"))
    shutil.rmtree(out, ignore_errors=True)
    size = layer.stat().st_size / 1e6
    print(f"layer: {a.files} files, {size:.0f} MB in {work}; {a.runs} runs each; load average "
          f"{os.getloadavg()[0]:.1f}")
    wall = {k: statistics.median(w for w, _ in v) for k, v in res.items()}
    best = {k: min(w for w, _ in v) for k, v in res.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in res.items()}
    print(f"  {'':12s} {'wall median':>12s} {'wall best':>10s} {'cpu median':>11s}   ratios vs tar (median, best, cpu)")
    for k in res:
        print(f"  {k:12s} {wall[k]:10.3f} s {best[k]:8.3f} s {cpu[k]:9.3f} s   "
              f"{wall[k] / wall['tar']:.2f}x  {best[k] / best['tar']:.2f}x  {cpu[k] / cpu['tar']:.2f}x")


if __name__ == "__main__":
    main()
