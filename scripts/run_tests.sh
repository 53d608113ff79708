#!/usr/bin/env bash
# Installs the pinned requirements (no-op when already satisfied) and runs the whole test suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -r requirements.txt
# One pytest-xdist worker per core (-n auto), whole files per worker (their module fixtures are
# built once); a long test's subprocesses no longer leave the other core idle. Serial: -p no:xdist.
exec python3 -m pytest -q -n auto --dist loadfile --durations=25 "$@"  # the slowest tests, for keeping the suite fast
