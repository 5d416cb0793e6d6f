#!/usr/bin/env bash
# Sets up .venv in the checkout (created if missing) with torch and the build and test
# dependencies, then builds fusedrnn from source into it (editable). Safe to re-run: the build
# is incremental. Honours MAX_JOBS, CUDA_HOME, TORCH_CUDA_ARCH_LIST, FUSEDRNN_FORCE_CUDA,
# FUSEDRNN_SKIP_CUDA (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${FUSEDRNN_TORCH:-torch==2.14.1}

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "$TORCH_SPEC" numpy pytest pytest-benchmark expecttest \
  hypothesis ninja "setuptools>=64" wheel
start=$(date +%s)
MAX_JOBS=${MAX_JOBS:-$(nproc)} .venv/bin/python -m pip install --no-build-isolation -e . \
  > .venv/fusedrnn-build.log 2>&1 || { tail -n 60 .venv/fusedrnn-build.log; exit 1; }
echo "fusedrnn built in $(( $(date +%s) - start )) s:" \
  "$(.venv/bin/python -c 'import fusedrnn; print(fusedrnn.build_info())')"
