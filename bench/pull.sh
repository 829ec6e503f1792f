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
# the client alone: fetch + verify + decompress every layer (3 in parallel) to /dev/null, no store
tc=$(t .venv/bin/python - "$REF" <<'PY'
import hashlib, sys
from concurrent.futures import ThreadPoolExecutor
from pallet.distribution.client.registry import Registry
from pallet.distribution.client.remote import resolve
from pallet.oci.reference import Reference
ref = Reference.parse(sys.argv[1])
def drain(layer):
    h = hashlib.sha256()
    with layer.uncompressed() as f:
        while b := f.read(1 << 20):
            h.update(b)
    assert f"sha256:{h.hexdigest()}" == str(layer.diff_id())
with Registry(ref.domain) as reg:
    img = resolve(reg.repo(ref.path), ref.tag).image
    with ThreadPoolExecutor(3) as ex:
        list(ex.map(drain, img.layers()))
PY
)
printf 'pallet pull (unpacked): %.2f s\nskopeo copy (oci dir): %.2f s\nratio pallet/skopeo: %.2f (goal <= 1.0)\n' \
  "$tp" "$ts" "$(echo "$tp / $ts" | bc -l)"
printf 'client only (fetch+verify+gunzip+diff-id, no store): %.2f s (ratio %.2f)\n' "$tc" "$(echo "$tc / $ts" | bc -l)"
