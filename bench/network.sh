#!/usr/bin/env bash
# Published-port benchmark: connection rate and throughput through a port published on
# 127.0.0.1, pallet (kernel DNAT to a busybox httpd container: `pallet run -d -p 127.0.0.1::80`)
# vs docker (the anchor dockerd, docker-proxy on 127.0.0.1), same machine, same run, same busybox
# httpd. Also the per-container attach cost.
# Usage: bench/network.sh [SECONDS per wrk run, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}
PY=.venv/bin/python
export DOCKER_HOST=${DOCKER_HOST:-unix:///tmp/anchors/docker.sock}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
WORK=$(mktemp -d /tmp/pallet-netbench.XXXXXX)
NS=pnb$$
CTR=""
HPID=""
DNET=pnbench$$
export PALLET_BRIDGE_NAME=pnb0 PALLET_BRIDGE_SUBNET=10.240.0.0/24
cleanup() {
  [ -n "$HPID" ] && kill "$HPID" 2>/dev/null && wait "$HPID" 2>/dev/null || true
  [ -n "$CTR" ] && docker rm -f "$CTR" >/dev/null 2>&1 || true
  .venv/bin/pallet rm -f pnbweb >/dev/null 2>&1 || true
  docker network rm "$DNET" >/dev/null 2>&1 || true
  $PY - "$WORK/root" <<'PY' || true
import sys
from pallet.network.endpoint import Endpoints
e = Endpoints(sys.argv[1])
e.detach_all("b" * 64)
e.prune()
PY
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/www"
echo "hello" > "$WORK/www/index.html"
head -c 1048576 /dev/urandom > "$WORK/www/big"

# pallet: a netns on the default bridge with 127.0.0.1:PORT -> 80 published
export PALLET_ROOT="$WORK/root" PALLET_RUNROOT="$WORK/root/run"
.venv/bin/pallet import /tmp/anchors/busybox.tar busybox >/dev/null
.venv/bin/pallet run -d --name pnbweb -p 127.0.0.1::80 -v "$WORK/www:/www:ro" busybox httpd -f -p 80 -h /www >/dev/null
PPORT=$(.venv/bin/pallet port pnbweb 80/tcp | head -1 | sed 's/.*://')

# docker: the same httpd in busybox, published on 127.0.0.1 (on a docker network of its own:
# other tests on this machine run private dockerds that may take docker0 away)
docker network create "$DNET" >/dev/null
CTR=$(docker run -d --network "$DNET" -p 127.0.0.1::80 busybox sh -c \
  'mkdir -p /srv && echo hello > /srv/index.html && head -c 1048576 /dev/urandom > /srv/big && exec httpd -f -p 80 -h /srv')
DPORT=$(docker port "$CTR" 80/tcp | head -1 | sed 's/.*://')

wait_up() { for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$1/big" && return 0; sleep 0.1; done; echo "port $1 never answered"; exit 1; }
wait_up "$PPORT"; wait_up "$DPORT"

rate() { wrk -t2 -c16 -d"${DUR}s" "http://127.0.0.1:$1/index.html" | awk '/Requests\/sec/ {print $2}'; }
thru() { wrk -t2 -c8 -d"${DUR}s" "http://127.0.0.1:$1/big" | awk '/Transfer\/sec/ {v=$2; u=substr(v,length(v)-1); n=substr(v,1,length(v)-2); if(u=="GB") n*=1024; if(u=="KB") n/=1024; print n}'; }
med() { sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
# interleaved runs (pallet, docker, pallet, ...), medians: this machine is shared and noisy
ROUNDS=${ROUNDS:-3}
: > "$WORK/pr"; : > "$WORK/dr"; : > "$WORK/pt"; : > "$WORK/dt"
for _ in $(seq "$ROUNDS"); do
  rate "$PPORT" >> "$WORK/pr"; rate "$DPORT" >> "$WORK/dr"
  thru "$PPORT" >> "$WORK/pt"; thru "$DPORT" >> "$WORK/dt"
done
PR=$(med < "$WORK/pr"); DR=$(med < "$WORK/dr"); PT=$(med < "$WORK/pt"); DT=$(med < "$WORK/dt")
echo "connections/s through 127.0.0.1:PORT (busybox httpd: one connection per request; wrk -c16, ${DUR}s, median of $ROUNDS)"
echo "  pallet (kernel DNAT)   $PR req/s   (runs: $(tr '\n' ' ' < "$WORK/pr"))"
echo "  docker (docker-proxy)  $DR req/s   (runs: $(tr '\n' ' ' < "$WORK/dr"))"
echo "  ratio pallet/docker    $(awk -v a="$PR" -v b="$DR" 'BEGIN{printf "%.2fx", a/b}')"
echo "throughput, 1 MiB file (wrk -c8, ${DUR}s, median of $ROUNDS)"
echo "  pallet (kernel DNAT)   $PT MB/s   (runs: $(tr '\n' ' ' < "$WORK/pt"))"
echo "  docker (docker-proxy)  $DT MB/s   (runs: $(tr '\n' ' ' < "$WORK/dt"))"
echo "  ratio pallet/docker    $(awk -v a="$PT" -v b="$DT" 'BEGIN{printf "%.2fx", a/b}')"

# attach cost per container: veth + address + route into a fresh netns, on an active bridge
echo "attach+detach cost per container (bridge already up; 20 netns)"
$PY - "$WORK/root" <<'PY'
import subprocess, sys, time
from pallet.network.endpoint import Endpoints
e = Endpoints(sys.argv[1])
names = [f"pnbx{i}" for i in range(20)]
for n in names:
    subprocess.run(["ip", "netns", "add", n], check=True)
try:
    att, det = [], []
    for i, n in enumerate(names):
        t0 = time.perf_counter()
        e.attach("bridge", f"{i:02d}" * 32, f"/run/netns/{n}")
        t1 = time.perf_counter()
        e.detach("bridge", f"{i:02d}" * 32)
        det.append(time.perf_counter() - t1)
        att.append(t1 - t0)
    att.sort(); det.sort()
    print(f"  attach median {att[10]*1e3:.1f} ms, detach median {det[10]*1e3:.1f} ms")
finally:
    for n in names:
        subprocess.run(["ip", "netns", "del", n])
PY
t0=$(date +%s%N); for _ in $(seq 20); do ip netns add pnbt; ip netns del pnbt; done; t1=$(date +%s%N)
echo "  (for scale: ip netns add+del, two ip(8) processes: $(( (t1-t0)/20000000 )) ms)"

# the same per container, in fresh processes (imports included), bridge vs a bare netns
echo "one container's network in a fresh process: bridge (import + netns + setup + teardown) vs none (netns)"
$PY - "$WORK/root" <<'PY'
import sys
from pallet.network.manager import Networks
Networks(sys.argv[1]).ensure_default()
PY
hyperfine -N -w 3 -r 30 --export-json "$WORK/att.json" \
  "$PY bench/network_attach.py none $WORK/root $WORK/root/run" \
  "$PY bench/network_attach.py bridge $WORK/root $WORK/root/run" >/dev/null
$PY - "$WORK/att.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
none, bridge = (x["median"] * 1e3 for x in r)
print(f"  none   {none:6.1f} ms\n  bridge {bridge:6.1f} ms\n  extra per container {bridge - none:5.1f} ms")
PY

# the goal itself: pallet run --rm busybox true, default bridge vs --network none (alternating runs)
.venv/bin/pallet rm -f pnbweb >/dev/null
$PY bench/network_run.py "${RUNS:-30}" busybox
