"""Part of bench/engine.sh: memory per idle detached container, and 100 containers 4 at a time.

PSS is summed from /proc/PID/smaps_rollup over what pallet keeps running for detached
containers (the shared monitor; the containers' own processes are not counted, as for the
anchors), divided by the number of containers: 1 s after the starts (the monitor's Python) and
once it went idle (native pallet-idle, engine.idle). The anchors: containerd-shim-runc-v2 of one
container on the anchor dockerd, and conmon of one `podman run -d` (when podman works here).
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

WORK = sys.argv[1]
PY = sys.executable
ENV = dict(os.environ)
P = [os.path.join(os.path.dirname(PY), "pallet")]
DOCKER = ["docker", "-H", "unix:///tmp/anchors/docker.sock"]


def pallet(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*P, *args], env=ENV, capture_output=True, text=True, check=check, timeout=120)


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def monitor_pid() -> int:
    try:
        return int(open(os.path.join(ENV["PALLET_RUNROOT"], "monitor.pid")).read())
    except (OSError, ValueError):
        return 0


def exe(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


def pallet_pss(n: int) -> tuple[float, float]:
    """(PSS per container 1 s after the starts, with the monitor in Python; PSS per container
    once it went idle: PALLET_MONITOR_IDLE, 5 s by default, after its last request, engine.idle)."""
    names = [f"idle{i}" for i in range(n)]
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda nm: pallet("run", "-d", "--name", nm, "--network", "none", "busybox", "sleep", "1000"),
                    names))
    time.sleep(1.0)
    pid = monitor_pid()
    awake = pss_kb(pid)
    deadline = time.monotonic() + 20
    while exe(pid) != "pallet-idle" and time.monotonic() < deadline:
        time.sleep(0.1)
    idle = pss_kb(pid) if exe(pid) == "pallet-idle" else float("nan")
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda i: pallet("rm", "-f", *names[i::4]), [i for i in range(4) if names[i::4]]))
    return awake / n, idle / n


def shim_pss() -> float:
    subprocess.run([*DOCKER, "run", "-d", "--network", "none", "--name", "pallet-bench-pss", "busybox:latest", "sleep", "1000"],
                   capture_output=True, check=True)
    try:
        cid = subprocess.run([*DOCKER, "inspect", "-f", "{{.Id}}", "pallet-bench-pss"], capture_output=True,
                             text=True, check=True).stdout.strip()
        time.sleep(1.0)
        for d in glob.glob("/proc/[0-9]*"):
            try:
                cmd = open(d + "/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if "containerd-shim" in cmd and cid in cmd:
                return float(pss_kb(int(d[6:])))
        return 0.0
    finally:
        subprocess.run([*DOCKER, "rm", "-f", "pallet-bench-pss"], capture_output=True)


def hundred() -> None:
    names = [f"c{i:03d}" for i in range(100)]
    t = time.monotonic()
    with ThreadPoolExecutor(4) as ex:
        res = list(ex.map(lambda nm: pallet("run", "-d", "--name", nm, "busybox", "sleep", "1000", check=False),
                          names))
    started = time.monotonic() - t
    fails = [r.stderr.strip() for r in res if r.returncode != 0]
    running = len(pallet("ps", "-q").stdout.split())
    t = time.monotonic()
    with ThreadPoolExecutor(4) as ex:
        res = list(ex.map(lambda nm: pallet("rm", "-f", nm, check=False), names))
    removed = time.monotonic() - t
    fails += [r.stderr.strip() for r in res if r.returncode != 0]
    pallet("network", "prune", "-f")
    time.sleep(3)
    left = {
        "containers": pallet("ps", "-aq").stdout.split(),
        "mounts": [ln for ln in open("/proc/self/mountinfo") if WORK in ln],
        "cgroups": [p for p in glob.glob("/sys/fs/cgroup/*/pallet-bench/*") if os.path.isdir(p)],
        "monitor": [monitor_pid()] if monitor_pid() else [],
        "dirs": os.listdir(os.path.join(ENV["PALLET_ROOT"], "containers")),
        "bridge": [1] if os.path.exists("/sys/class/net/pbench0") else [],
    }
    print(f"  100 containers: started in {started:.1f} s, {running} running, removed in {removed:.1f} s, "
          f"{len(fails)} failures {fails[:3]}")
    print("  left behind: " + ", ".join(f"{k}={len(v)}" for k, v in left.items()))


for n in (1, 10, 50):
    awake, idle = pallet_pss(n)
    print(f"  pallet, {n:3d} idle containers: {idle / 1024:6.3f} MB PSS per container once the monitor idles "
          f"(pallet-idle), {awake / 1024:6.2f} MB while it is in Python")
    time.sleep(0.5)
try:
    print(f"  containerd-shim-runc-v2 (anchor dockerd): {shim_pss() / 1024:6.2f} MB PSS per container")
except (subprocess.CalledProcessError, FileNotFoundError) as e:
    print(f"  containerd-shim: not measured ({e})")
print("  conmon (MEASURED.md): 1.1 MB per container")
hundred()
for cg in glob.glob("/sys/fs/cgroup/*/pallet-bench"):
    try:
        os.rmdir(cg)
    except OSError:
        pass
