#!/usr/bin/env bash
# Sets up and builds (scripts/setup.sh), then runs the main job: the quick benchmark of
# fusedrnn against torch.nn (python -m fusedrnn.bench --quick). Arguments replace --quick.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -eq 0 ]; then set -- --quick; fi
.venv/bin/python -m fusedrnn.bench "$@"
