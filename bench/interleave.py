"""Run commands interleaved (A B C A B C ...), so a change of load during the run hits every
command alike; print each one's median and minimum wall time, its CPU time (user + system of the
command and its children, plus what a pallet monitor spent meanwhile when --monitor-pid is given:
a served run's work happens there), and the ratio of medians to the first command.

    python bench/interleave.py [--runs N] [--monitor-pid-file F] NAME=COMMAND ...

COMMAND is split on spaces (no shell). Used by bench/engine.sh.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import time


def _proc_cpu(pid: int) -> float:
    """utime + stime + cutime + cstime of pid, in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--monitor-pid-file", default="")
    ap.add_argument("commands", nargs="+")
    a = ap.parse_args()
    cmds = dict(c.split("=", 1) for c in a.commands)
    wall: dict[str, list[float]] = {k: [] for k in cmds}
    cpu = {k: 0.0 for k in cmds}
    for _ in range(a.runs):
        for name, cmd in cmds.items():
            mon = 0
            if a.monitor_pid_file:  # read each time: a monitor may have started or exited meanwhile
                try:
                    mon = int(open(a.monitor_pid_file).read())
                except (OSError, ValueError):
                    mon = 0
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            m0 = _proc_cpu(mon) if mon else 0.0
            t = time.perf_counter()
            subprocess.run(cmd.split(), stdout=subprocess.DEVNULL, check=True)
            wall[name].append(time.perf_counter() - t)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            m1 = _proc_cpu(mon) if mon else 0.0
            cpu[name] += (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) + (m1 - m0)
    base = statistics.median(wall[next(iter(cmds))])
    for name, v in wall.items():
        m = statistics.median(v)
        print(f"  {name:28s} median {m * 1000:7.1f} ms  min {min(v) * 1000:7.1f} ms  "
              f"cpu {cpu[name] / a.runs * 1000:6.1f} ms  ratio {m / base:5.2f}x")


if __name__ == "__main__":
    main()
