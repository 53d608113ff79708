#!/usr/bin/env bash
# One command, fresh machine: install the pinned requirements, then run the whole method on
# generated videos (pre-train -> MMKD distill -> fine-tune -> multi-view test -> figures).
# Extra flags go to scripts/quickstart.py (e.g. --smoke, --device cuda --scale 4).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -r requirements.txt
exec python3 -u scripts/quickstart.py "$@"
