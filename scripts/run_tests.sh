#!/usr/bin/env bash
# Installs the pinned requirements (no-op when already satisfied) and runs the whole test suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -r requirements.txt
exec python3 -m pytest -q --durations=25 "$@"  # the slowest tests, for keeping the suite fast
