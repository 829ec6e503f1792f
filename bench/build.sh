#!/bin/bash
# Build benchmarks (issue 4), pallet vs the anchors in one run, printed as ratios:
#   1. cached rebuild of /tmp/anchors/bigctx vs `podman build` cached     (goal <= 1.0x)
#   2. cold build of the same (--no-cache) vs `podman build --no-cache`   (goal <= 0.8x)
#   3. `pallet commit` of a container with 1,000 new files vs `docker commit` (goal <= 0.5x)
# Needs root, podman, the anchor dockerd (DOCKER_HOST=unix:///tmp/anchors/docker.sock, busybox),
# /tmp/anchors/busybox.tar and /tmp/anchors/bigctx (../shared/tools/anchors.sh makes them).
# Usage: bench/build.sh [cold-runs]   (default 2 cold runs each; they take ~20 s per run)
set -euo pipefail
cd "$(dirname "$0")/.."
PALLET="${PALLET:-$PWD/.venv/bin/pallet}"
CTX=/tmp/anchors/bigctx
COLD_RUNS="${1:-2}"
export DOCKER_HOST="${DOCKER_HOST:-unix:///tmp/anchors/docker.sock}"
WORK=$(mktemp -d /var/tmp/pallet-bench-build.XXXXXX)
export PALLET_ROOT="$WORK/root" PALLET_RUNROOT="$WORK/run"
cleanup() {
  "$PALLET" rm -f bench-commit >/dev/null 2>&1 || true
  docker rm -f bench-commit >/dev/null 2>&1 || true
  docker rmi -f $(docker images -q 'bench-commit-img*' 2>/dev/null) >/dev/null 2>&1 || true
  podman rmi -f $(podman images -q --filter label=pallet-bench=build) >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$PALLET" import /tmp/anchors/busybox.tar busybox >/dev/null
podman image exists busybox || podman load -q -i /tmp/anchors/busybox.tar >/dev/null 2>&1 || \
  podman import /tmp/anchors/busybox.tar busybox >/dev/null

echo "== 1. cached rebuild of $CTX"
"$PALLET" build -q -t bench-big "$CTX" >/dev/null
podman build -q --label pallet-bench=build -t bench-big "$CTX" >/dev/null
hyperfine -N --warmup 1 --runs 10 --export-json "$WORK/cached.json" \
  -n pallet "$PALLET build -q -t bench-big $CTX" \
  -n podman "podman build -q --label pallet-bench=build -t bench-big $CTX"

echo "== 2. cold build of $CTX (--no-cache)"
hyperfine --runs "$COLD_RUNS" --export-json "$WORK/cold.json" \
  -n pallet "$PALLET build -q --no-cache -t bench-big $CTX >/dev/null 2>>$WORK/cold-pallet.err" \
  -n podman "podman build -q --no-cache --label pallet-bench=build -t bench-big $CTX >/dev/null 2>>$WORK/cold-podman.err" \
  || { cat "$WORK"/cold-*.err; exit 1; }

echo "== 3. commit of a container with 1,000 new files"
SCRIPT='mkdir /d && i=0; while [ $i -lt 1000 ]; do echo $i > /d/f$i; i=$((i+1)); done; touch /ready; sleep 3600'
"$PALLET" run -d --name bench-commit --network none busybox sh -c "$SCRIPT" >/dev/null
docker run -d --name bench-commit --network none busybox sh -c "$SCRIPT" >/dev/null
for _ in $(seq 100); do
  docker exec bench-commit test -e /ready 2>/dev/null && "$PALLET" exec bench-commit test -e /ready 2>/dev/null && break
  sleep 0.2
done
hyperfine -N --warmup 1 --runs 10 --export-json "$WORK/commit.json" \
  -n pallet "$PALLET commit bench-commit bench-commit-img" \
  -n docker "docker commit bench-commit bench-commit-img"

ratio() {  # file name-a name-b
  python3 - "$1" <<'EOF'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
a, b = list(r)
print(f"{a} {r[a]:.3f} s, {b} {r[b]:.3f} s, ratio {r[a] / r[b]:.2f}x")
EOF
}
echo "== ratios (pallet / anchor, mean time)"
echo "cached rebuild: $(ratio "$WORK/cached.json")"
echo "cold build:     $(ratio "$WORK/cold.json")"
echo "commit:         $(ratio "$WORK/commit.json")"
