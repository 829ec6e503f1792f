#!/usr/bin/env bash
# Load benchmark: `pallet load` of a ~290 MB docker-archive (one 256 MiB incompressible layer +
# one layer of 2,000 small files; tools/anchors.sh leaves it at /tmp/anchors/big-docker.tar)
# into an empty store vs `podman load` of the same file into an empty store, one run each,
# same machine, same run. Prints both times and the ratio (goal: <= 0.7).
# Usage: bench/load.sh [ARCHIVE]
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHIVE=${1:-/tmp/anchors/big-docker.tar}
[ -f "$ARCHIVE" ] || { echo "no $ARCHIVE (run ../shared/tools/anchors.sh)"; exit 1; }
PALLET="$PWD/.venv/bin/python -m pallet"
WORK=$(mktemp -d /var/tmp/pallet-loadbench.XXXXXX)  # same disk as a real store, not tmpfs
cleanup() {
  podman --root "$WORK/podman" --runroot "$WORK/podman-run" rmi -af >/dev/null 2>&1 || true
  umount -R "$WORK" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cat "$ARCHIVE" >/dev/null  # both runs read it from the page cache
sync
PY=.venv/bin/python
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); $PY -c "print($e - $s)"; }
tp=$(t $PALLET --root "$WORK/pallet" --runroot "$WORK/pallet-run" load -i "$ARCHIVE")
sync
tq=$(t podman --root "$WORK/podman" --runroot "$WORK/podman-run" --storage-driver overlay load -q -i "$ARCHIVE")
sync
printf 'pallet load: %.2f s\npodman load: %.2f s\nratio pallet/podman: %.2f (goal <= 0.7)\n' \
  "$tp" "$tq" "$($PY -c "print($tp / $tq)")"
