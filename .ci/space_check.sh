#!/usr/bin/env bash
# make space-check: see .ci/space_check.py (run with the dev venv, which drives Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python .ci/space_check.py "$@"
