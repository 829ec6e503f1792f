#!/bin/sh
# `pallet exec CTR true` of an older commit ("before") and of this tree ("after"), served and
# in-process, interleaved with `docker exec` on the anchor dockerd: each has its own root, runroot
# and monitor, so both are measured under the same load (bench/RESULTS.md "Engine, session 3: exec").
# Usage: bench/exec_ab.sh [RUNS] [COMMIT] (default 30, d08235d: the start of session 3).
# Needs root, the anchors (../shared/tools/anchors.sh); the old tree is a `git archive` in a temp dir.
set -eu
RUNS=${1:-30}
COMMIT=${2:-d08235d}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=$HERE/.venv/bin/python
NEW=$HERE/.venv/bin/pallet
WORK=$(mktemp -d /tmp/pallet-bench-exec-ab.XXXXXX)
D="docker -H unix:///tmp/anchors/docker.sock"
OLD=$WORK/old/pallet
sp=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$WORK/old"
git -C "$HERE" archive "$COMMIT" src | tar -x -C "$WORK/old"
printf '#!%s -IS\nimport sys\nsys.path.insert(0, "%s")\nsys.path.append("%s")\nfrom pallet.cli.main import entry\nentry()\n' \
  "$PY" "$WORK/old/src" "$sp" > "$OLD"
chmod +x "$OLD"
"$PY" -m compileall -q "$WORK/old/src" "$HERE/src/pallet" >/dev/null
envof() { echo "PALLET_ROOT=$WORK/$1/root PALLET_RUNROOT=$WORK/$1/run PALLET_CGROUP_PARENT=pallet-bench-ab-$1"; }
cleanup() {
  for v in old new; do
    B=$OLD; [ $v = new ] && B=$NEW
    env $(envof $v) $B rm -f ab-exec >/dev/null 2>&1 || true
  done
  $D rm -f pallet-bench-ab >/dev/null 2>&1 || true
  for _ in $(seq 100); do  # the monitors linger 2 s with nothing to watch (and then drop their spare cgroups)
    [ -e "$WORK/old/run/monitor.pid" ] || [ -e "$WORK/new/run/monitor.pid" ] || break
    sleep 0.1
  done
  rmdir /sys/fs/cgroup/*/pallet-bench-ab-old /sys/fs/cgroup/*/pallet-bench-ab-new 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
for v in old new; do
  B=$OLD; [ $v = new ] && B=$NEW
  env $(envof $v) $B import /tmp/anchors/busybox.tar busybox:latest >/dev/null
  env $(envof $v) $B run -d --name ab-exec --network none busybox sleep 100000 >/dev/null
done
$D run -d --network none --name pallet-bench-ab busybox:latest sleep 100000 >/dev/null
date -u; uptime
"$PY" "$HERE/bench/interleave.py" --runs "$RUNS" \
  "docker exec=$D exec pallet-bench-ab true" \
  "before: served=env $(envof old) $OLD exec ab-exec true" \
  "after: served=env $(envof new) $NEW exec ab-exec true" \
  "before: in-process=env PALLET_SERVED=0 $(envof old) $OLD exec ab-exec true" \
  "after: in-process=env PALLET_SERVED=0 $(envof new) $NEW exec ab-exec true"
uptime
