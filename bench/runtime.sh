#!/bin/sh
# pallet's built-in OCI runtime vs runc on the same prepared busybox bundle (Docker's defaults:
# capabilities, mounts, masked paths, seccomp profile, cgroups), `true` as the command.
#   bench/runtime.sh [RUNS]
# Prints hyperfine's table and the ratios pallet/runc (lower is better; goal: well under 1.0).
# Needs root, runc, hyperfine, busybox-static. Absolute times on this shared VM are noisy:
# read the ratios (each line of the pair runs in the same hyperfine session).
set -eu
RUNS=${1:-40}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$HERE/.venv/bin/python}
PRT=${PRT:-$HERE/.venv/bin/pallet-runtime}
WORK=$(mktemp -d /tmp/pallet-bench-runtime.XXXXXX)
trap 'runc --root "$WORK/runc" delete -f bench-runc >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT INT TERM

# the bundle: a busybox rootfs and a Docker-default config.json built by pallet.runtime.spec
mkdir -p "$WORK/bundle/rootfs/bin" "$WORK/bundle/rootfs/etc" "$WORK/bundle/rootfs/proc" \
         "$WORK/bundle/rootfs/sys" "$WORK/bundle/rootfs/dev" "$WORK/bundle/rootfs/tmp"
cp "$(command -v busybox || echo /bin/busybox)" "$WORK/bundle/rootfs/bin/busybox"
for a in sh true id; do ln -s busybox "$WORK/bundle/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/bundle/rootfs/etc/passwd"
"$PY" - "$WORK/bundle" <<'EOF'
import json, sys
from pallet.runtime import spec
b = sys.argv[1]
json.dump(spec.default_spec(["true"], b + "/rootfs", hostname="bench"), open(b + "/config.json", "w"))
EOF
# byte-compile (PYTHONDONTWRITEBYTECODE may be set here) and warm the seccomp BPF cache
"$PY" -m compileall -q "$HERE/src/pallet" >/dev/null
"$PRT" --root "$WORK/prt" run --bundle "$WORK/bundle" warm
runc --root "$WORK/runc" run --bundle "$WORK/bundle" warm

hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$WORK/h.json" \
  -n runc "runc --root $WORK/runc run --bundle $WORK/bundle bench-runc" \
  -n pallet-runtime "$PRT --root $WORK/prt run --bundle $WORK/bundle bench-prt" \
  -n "python -c entry()" "$PY -c 'from pallet.runtime.cli import entry; entry()' --root $WORK/prt run --bundle $WORK/bundle bench-prt2" \
  -n "python -c pass" "$PY -c pass"

# the same pair interleaved run by run (fairer when the load changes during the session),
# with the CPU time (user + sys, children included) of each
"$PY" - "$WORK" "$PRT" "$RUNS" <<'EOF'
import resource, statistics, subprocess, sys, time
w, prt, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
cmds = {"runc": ["runc", "--root", f"{w}/runc", "run", "--bundle", f"{w}/bundle", "ilv-runc"],
        "pallet-runtime": [prt, "--root", f"{w}/prt", "run", "--bundle", f"{w}/bundle", "ilv-prt"]}
wall = {k: [] for k in cmds}
cpu = {k: 0.0 for k in cmds}
for _ in range(runs):
    for k, argv in cmds.items():
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(argv, check=True)
        wall[k].append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu[k] += (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
m = {k: statistics.median(v) for k, v in wall.items()}
for k in cmds:
    print(f"interleaved {k:15s} median {m[k]*1000:.1f} ms, cpu {cpu[k]/runs*1000:.1f} ms/run")
print(f"interleaved ratio pallet-runtime/runc: median wall {m['pallet-runtime']/m['runc']:.2f}x, "
      f"cpu {cpu['pallet-runtime']/cpu['runc']:.2f}x")
EOF

"$PY" - "$WORK/h.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
base = r["runc"]
def ms(x): return f"{x['mean']*1000:.1f} ms (median {x['median']*1000:.1f}, user {x['user']*1000:.1f}, sys {x['system']*1000:.1f})"
for name, x in r.items():
    print(f"{name:20s} {ms(x)}  ratio vs runc: mean {x['mean']/base['mean']:.2f}x, median {x['median']/base['median']:.2f}x")
EOF

# exec into a running container: `runc exec CTR true` vs `pallet-runtime exec CTR true`
mkdir -p "$WORK/bundle-sleep"
"$PY" - "$WORK" <<'EOF2'
import json, sys
w = sys.argv[1]
c = json.load(open(f"{w}/bundle/config.json"))
c["process"]["args"] = ["sleep", "600"]
json.dump(c, open(f"{w}/bundle-sleep/config.json", "w"))
EOF2
ln -s busybox "$WORK/bundle/rootfs/bin/sleep"
runc --root "$WORK/runc" run -d --bundle "$WORK/bundle-sleep" exec-runc </dev/null >/dev/null 2>&1
"$PRT" --root "$WORK/prt" run -d --bundle "$WORK/bundle-sleep" exec-prt </dev/null >/dev/null 2>&1
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$WORK/e.json" \
  -n "runc exec" "runc --root $WORK/runc exec exec-runc true" \
  -n "pallet-runtime exec" "$PRT --root $WORK/prt exec exec-prt true" >/dev/null
runc --root "$WORK/runc" delete -f exec-runc
"$PRT" --root "$WORK/prt" delete -f exec-prt
"$PY" - "$WORK/e.json" <<'EOF2'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
a, b = r["runc exec"], r["pallet-runtime exec"]
for n, x in (("runc exec", a), ("pallet-runtime exec", b)):
    print(f"{n:20s} mean {x['mean']*1000:.1f} ms, median {x['median']*1000:.1f} ms, cpu {(x['user']+x['system'])*1000:.1f} ms")
print(f"exec ratio pallet-runtime/runc: median {b['median']/a['median']:.2f}x, cpu {(b['user']+b['system'])/(a['user']+a['system']):.2f}x")
EOF2
