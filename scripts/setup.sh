#!/usr/bin/env bash
# Installs what pallet and its tests need on a fresh Debian machine (as root): the peer tools
# the tests talk to, and a venv in .venv with pallet installed editable. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="busybox-static skopeo umoci runc crun docker-registry iptables nftables iproute2 hyperfine
      apache2-utils curl docker.io podman uidmap
      wrk
      gcc libc6-dev
      tini
      golang-go golang-github-opencontainers-runtime-tools-dev"  # gcc, libc6-dev: build native/pallet-idle.c (the idle monitor, engine/idle.py); tini: /usr/bin/tini-static is what `pallet run --init` bind-mounts as the container's pid 1
# golang-go, golang-github-opencontainers-runtime-tools-dev: build native/oci-validate (runtime-tools'
# bundle validation library, offline in GOPATH mode) that tests/test_runtime_oci_validate.py runs
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import pallet, pytest, aiohttp, isal, zstandard' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch .venv/.installed
fi
# pip's console-script wrapper imports `re` (10-20 ms here) only to strip Windows suffixes from
# argv[0]; the runtime's start path (bench/runtime.sh vs runc) gets a plain one, run with -I -S:
# no site-packages .pth hooks or sitecustomize (the runtime needs only the stdlib and src/;
# seccomp adds site-packages itself on a BPF cache miss, for pyseccomp).
printf '#!%s -IS\nimport sys\nsys.path.insert(0, "%s")\nfrom pallet.runtime.cli import entry\nentry()\n' \
  "$PWD/.venv/bin/python" "$PWD/src" > .venv/bin/pallet-runtime
chmod +x .venv/bin/pallet-runtime
# The same for `pallet` itself: its start-up is on every `pallet run`. -S skips site (3-4 ms),
# so the venv's site-packages is appended by hand for the verbs that need libraries.
sp=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '#!%s -IS\nimport sys\nsys.path.insert(0, "%s")\nsys.path.append("%s")\nfrom pallet.cli.main import entry\nentry()\n' \
  "$PWD/.venv/bin/python" "$PWD/src" "$sp" > .venv/bin/pallet
chmod +x .venv/bin/pallet
# The monitor's idle program (native/pallet-idle.c, see src/pallet/engine/idle.py): without it the
# monitor stays in Python.
if [ ! -x .venv/bin/pallet-idle ] || [ native/pallet-idle.c -nt .venv/bin/pallet-idle ]; then
  cc -O2 -Wall -Wextra -o .venv/bin/pallet-idle native/pallet-idle.c
fi
# What the built-in runtime's init execs the container's command through, from a sealed copy
# (native/pallet-exec.c, src/pallet/runtime/sealed.py: runc's CVE-2019-5736); static, as it runs
# inside the container's root.
if [ ! -x .venv/bin/pallet-exec ] || [ native/pallet-exec.c -nt .venv/bin/pallet-exec ]; then
  cc -O2 -Wall -Wextra -static -s -o .venv/bin/pallet-exec native/pallet-exec.c
fi
# The last steps of a prepared container's init (native/pallet-init.c, see src/pallet/runtime/prepared.py):
# static, as it runs after pivot_root inside the container's root. Without it they are done in Python.
if [ ! -x .venv/bin/pallet-init ] || [ native/pallet-init.c -nt .venv/bin/pallet-init ]; then
  cc -O2 -Wall -Wextra -static -s -o .venv/bin/pallet-init native/pallet-init.c
fi
# The process a served exec's monitor keeps inside a container (native/pallet-entered.c, see
# src/pallet/runtime/entered.py): without it that process is a fork of the monitor.
if [ ! -x .venv/bin/pallet-entered ] || [ native/pallet-entered.c -nt .venv/bin/pallet-entered ]; then
  cc -O2 -Wall -Wextra -static -s -o .venv/bin/pallet-entered native/pallet-entered.c
fi
# The OCI bundle validator (native/oci-validate/main.go over runtime-tools' validate library, for
# tests/test_runtime_oci_validate.py): built offline from Debian's packaged Go sources (GOPATH mode).
if [ ! -x .venv/bin/oci-validate ] || [ native/oci-validate/main.go -nt .venv/bin/oci-validate ]; then
  gotmp=$(mktemp -d)
  GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$gotmp/cache" GOFLAGS= GOPROXY=off CGO_ENABLED=0 \
    go build -o .venv/bin/oci-validate ./native/oci-validate
  rm -rf "$gotmp"
fi
