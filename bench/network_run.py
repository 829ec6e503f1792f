"""``pallet run --rm IMAGE true`` on the default bridge vs ``--network none``, alternating
single runs (none, bridge, none, ...) so that the load of a shared machine hits both alike;
prints the medians and their ratio (goal: bridge <= 1.3x none).

Usage: python bench/network_run.py [RUNS=40] [IMAGE=busybox]   (PALLET_ROOT/RUNROOT from env)
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 40
image = sys.argv[2] if len(sys.argv) > 2 else "busybox"
pallet = os.path.join(os.path.dirname(sys.executable), "pallet")
times: dict[str, list[float]] = {"none": [], "bridge": []}
for i in range(runs + 2):
    for mode in ("none", "bridge"):
        t = time.perf_counter()
        subprocess.run([pallet, "run", "--rm", "--network", mode, image, "true"], check=True)
        if i >= 2:  # two warm-up rounds
            times[mode].append(time.perf_counter() - t)
n, b = statistics.median(times["none"]) * 1e3, statistics.median(times["bridge"]) * 1e3
print(f"pallet run --rm {image} true, median of {runs} alternating runs each")
print(f"  --network none  {n:6.1f} ms")
print(f"  bridge          {b:6.1f} ms")
print(f"  ratio bridge/none {b / n:.2f}x")
