#!/usr/bin/env bash
# Pull benchmark: `pallet pull` of 127.0.0.1:5000/bench/big:1 (the anchor registry: a 256 MiB
# incompressible layer + a 2,000-file layer, ~260 MB gzipped) into an EMPTY store, unpacked,
# vs `skopeo copy` of it to an OCI directory (no unpacking). One run each, same machine, same
# run; prints both times and the ratio (goal <= 1.0).
# Usage: bench/pull.sh [REF]
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${1:-127.0.0.1:5000/bench/big:1}
curl -sf "http://${REF%%/*}/v2/" >/dev/null || { echo "no registry at ${REF%%/*} (run ../shared/tools/anchors.sh)"; exit 1; }
PALLET="$PWD/.venv/bin/python -m pallet"
WORK=$(mktemp -d /var/tmp/pallet-pullbench.XXXXXX)  # same disk as a real store, not tmpfs
trap 'rm -rf "$WORK"' EXIT
export DOCKER_CONFIG="$WORK/cfg"
# warm the registry's page cache so neither run pays the first read
skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$WORK/warm:x" >/dev/null; rm -rf "$WORK/warm"
sync
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
tp=$(t $PALLET --root "$WORK/pallet" --runroot "$WORK/pallet-run" pull -q "$REF")
sync
ts=$(t skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$WORK/skopeo:x")
sync
printf 'pallet pull (unpacked): %.2f s\nskopeo copy (oci dir): %.2f s\nratio pallet/skopeo: %.2f (goal <= 1.0)\n' \
  "$tp" "$ts" "$(echo "$tp / $ts" | bc -l)"
