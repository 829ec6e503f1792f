#!/usr/bin/env bash
# Push benchmark: `pallet push` of the bench image (loaded from /tmp/anchors/big-docker.tar, so its
# layers are stored uncompressed and pallet must gzip them, as docker must) to an EMPTY registry vs
# `docker push` of the same image (the anchor dockerd's 127.0.0.1:5000/bench/big:1, re-tagged) to
# another EMPTY registry. Both registries: Debian's docker-registry on loopback, fresh. One run
# each, same run; prints both times and the ratio (goal <= 0.5). Also prints the push of the same
# image after a pull (layers kept compressed: nothing to gzip).
# Usage: bench/push.sh [ARCHIVE]
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHIVE=${1:-/tmp/anchors/big-docker.tar}
export DOCKER_HOST=${DOCKER_HOST:-unix:///tmp/anchors/docker.sock}
[ -f "$ARCHIVE" ] || { echo "no $ARCHIVE (run ../shared/tools/anchors.sh)"; exit 1; }
PALLET="$PWD/.venv/bin/python -m pallet"
WORK=$(mktemp -d /var/tmp/pallet-pushbench.XXXXXX)
PIDS=()
port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
registry() {  # registry NAME -> starts one, prints its port
  local p; p=$(port)
  mkdir -p "$WORK/$1"
  printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' \
    "$WORK/$1/data" "$p" > "$WORK/$1/config.yml"
  docker-registry serve "$WORK/$1/config.yml" >"$WORK/$1/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$p/v2/" >/dev/null && break; sleep 0.1; done
  echo "$p"
}
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${DTAG:-}" ] && docker rmi "$DTAG" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }

P1=$(registry pallet-reg); P2=$(registry docker-reg); P3=$(registry pallet-reg2)
export DOCKER_CONFIG="$WORK/cfg"
P="$PALLET --root $WORK/pallet --runroot $WORK/pallet-run"
$P load -i "$ARCHIVE" >/dev/null
sync
tp=$(t $P push 127.0.0.1:5000/bench/big:1 "127.0.0.1:$P1/bench/big:1")
sync
unset DOCKER_CONFIG
DTAG="127.0.0.1:$P2/bench/big:1"
docker tag 127.0.0.1:5000/bench/big:1 "$DTAG"
td=$(t docker push "$DTAG")
sync
export DOCKER_CONFIG="$WORK/cfg"
Q="$PALLET --root $WORK/pallet2 --runroot $WORK/pallet2-run"
$Q pull -q 127.0.0.1:5000/bench/big:1 >/dev/null
sync
tq=$(t $Q push 127.0.0.1:5000/bench/big:1 "127.0.0.1:$P3/bench/big:1")
printf 'pallet push (loaded, gzip with isal): %.2f s\ndocker push: %.2f s\nratio pallet/docker: %.2f (goal <= 0.5)\n' \
  "$tp" "$td" "$(echo "$tp / $td" | bc -l)"
printf 'pallet push (pulled, already compressed): %.2f s (ratio %.2f)\n' "$tq" "$(echo "$tq / $td" | bc -l)"
