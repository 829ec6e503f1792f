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
echo
echo "demo: ok"
