#!/usr/bin/env bash
# Sets up and builds (scripts/setup.sh), then runs the main job. Extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m fusedrnn.demo "$@"
