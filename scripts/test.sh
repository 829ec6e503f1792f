#!/usr/bin/env bash
# Runs the whole test suite (as root, so the privileged tests run too).
# Extra arguments go to pytest: scripts/test.sh -k store -x
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
# pytest exits 5 when it collected no test: not a failure of the suite
[ "$rc" -eq 5 ] && rc=0
exit $rc
