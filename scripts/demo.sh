#!/usr/bin/env bash
# Installs what pallet needs (scripts/setup.sh) and shows the main job end to end under a
# throw-away root: a busybox rootfs made from Debian's busybox-static is imported, listed,
# saved as a docker-archive and an oci-archive, and read back by skopeo. Later issues extend
# this same script (run, build, commit, push, pull).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PALLET="$PWD/.venv/bin/pallet"
demo=$(mktemp -d /tmp/pallet-demo.XXXXXX)
trap 'rm -rf "$demo"' EXIT
export PALLET_ROOT="$demo/root" PALLET_RUNROOT="$demo/run"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# -- images --------------------------------------------------------------------------------
rootfs="$demo/rootfs"
mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev,root}
cp /bin/busybox "$rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ -e "$rootfs/bin/$a" ] || ln -s busybox "$rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
tar -C "$rootfs" -cf "$demo/busybox.tar" .

step "$PALLET" import --change 'CMD ["/bin/sh"]' -m "busybox from Debian" "$demo/busybox.tar" busybox:latest
step "$PALLET" images
step "$PALLET" history busybox
step "$PALLET" save -o "$demo/busybox-docker.tar" busybox
step "$PALLET" save --format oci-archive -o "$demo/busybox-oci.tar" busybox
step skopeo inspect "docker-archive:$demo/busybox-docker.tar"
step skopeo inspect --config "oci-archive:$demo/busybox-oci.tar"
step "$PALLET" rmi busybox
step "$PALLET" load -i "$demo/busybox-docker.tar"
step "$PALLET" system df
step "$PALLET" system check

# -- containers (issue 3) and volumes ---------------------------------------------------------
export PALLET_BRIDGE_NAME=pdemo0 PALLET_BRIDGE_SUBNET=10.252.0.0/24 PALLET_MONITOR_LINGER=0.5
trap 'ids=$("$PALLET" ps -aq || true); [ -z "$ids" ] || "$PALLET" rm -f $ids >/dev/null 2>&1 || true; "$PALLET" network prune -f >/dev/null 2>&1 || true; rm -rf "$demo"' EXIT
step "$PALLET" run --rm busybox echo "hello from a pallet container"
step "$PALLET" run --rm --network none -e GREETING=hi -u 1000 -w /tmp busybox sh -c 'echo $GREETING $(id -u) $(pwd)'
step "$PALLET" run -d --name web -p 18081:80 -v demo-www:/www busybox sh -c 'echo served-by-pallet > /www/index.html; exec httpd -f -p 80 -h /www'
sleep 0.5
step curl -s http://127.0.0.1:18081/
step "$PALLET" ps
step "$PALLET" exec web sh -c 'ps; hostname'
step "$PALLET" logs web
step "$PALLET" inspect -f '{{.State.Status}} pid={{.State.Pid}} ip={{.NetworkSettings.IPAddress}}' web
step "$PALLET" stop -t 1 web
step "$PALLET" rm web
step "$PALLET" run --rm -v demo-www:/data busybox cat /data/index.html
step "$PALLET" volume ls
step "$PALLET" volume rm demo-www
echo
echo "demo: ok"
