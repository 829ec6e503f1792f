#!/usr/bin/env bash
# Installs what pallet needs (scripts/setup.sh) and shows the main job end to end under a
# throw-away root: a busybox rootfs made from Debian's busybox-static is imported, listed,
# saved as a docker-archive and an oci-archive, read back by skopeo and loaded again; then
# containers run (a published port, a volume, exec, logs), a container is committed and a
# Dockerfile built (twice: the second from the cache), and the image is pushed to pallet's own
# registry and pulled and run in a fresh store. Each issue extends this same script.
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

# -- version control: commit, diff, history, build with a cache (issue 4) -----------------------
step "$PALLET" run --name work busybox sh -c 'echo v1 > /etc/motd; rm /etc/group; mkdir -p /app'
step "$PALLET" diff work
step "$PALLET" commit -m "add motd" -c 'CMD ["cat","/etc/motd"]' work demo/motd:1
step "$PALLET" rm work
step "$PALLET" run --rm demo/motd:1
step "$PALLET" history demo/motd:1
ctx="$demo/ctx"; mkdir -p "$ctx"
printf 'hello from a build\n' > "$ctx/hello.txt"
printf 'FROM busybox\nARG WHO=pallet\nCOPY hello.txt /srv/\nRUN echo "built by $WHO" >> /srv/hello.txt\nCMD ["cat","/srv/hello.txt"]\n' > "$ctx/Dockerfile"
step "$PALLET" build -t demo/hello:1 "$ctx"
step "$PALLET" build -t demo/hello:1 "$ctx"      # every step from the cache
step "$PALLET" run --rm demo/hello:1

# -- deployment: pallet's own registry, push, pull into a fresh store (issues 5, 6) ----------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$PALLET" registry serve --addr "127.0.0.1:$port" --root "$demo/registry" --access-log off &
regpid=$!
trap 'kill $regpid 2>/dev/null; ids=$("$PALLET" ps -aq || true); [ -z "$ids" ] || "$PALLET" rm -f $ids >/dev/null 2>&1 || true; "$PALLET" network prune -f >/dev/null 2>&1 || true; rm -rf "$demo"' EXIT
for i in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
step "$PALLET" tag demo/hello:1 "127.0.0.1:$port/demo/hello:1"
step "$PALLET" push "127.0.0.1:$port/demo/hello:1"
step skopeo inspect --tls-verify=false "docker://127.0.0.1:$port/demo/hello:1"
step env PALLET_ROOT="$demo/root2" PALLET_RUNROOT="$demo/run2" "$PALLET" run --rm --network none --pull missing "127.0.0.1:$port/demo/hello:1"
echo
echo "demo: ok"
