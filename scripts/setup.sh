#!/usr/bin/env bash
# Sets up .venv in the checkout (created if missing) with torch and the build and test
# dependencies, then builds fusedrnn from source into it (editable). Safe to re-run: the build
# is incremental (objects kept in build/, see setup.py), so a re-run compiles only what changed
# and, when nothing changed, nothing. Honours MAX_JOBS, CUDA_HOME, TORCH_CUDA_ARCH_LIST,
# FUSEDRNN_FORCE_CUDA, FUSEDRNN_SKIP_CUDA (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${FUSEDRNN_TORCH:-torch==2.14.1}

if [ ! -x .venv/bin/python ]; then
  echo "fusedrnn setup: creating .venv and installing $TORCH_SPEC (a CUDA build, ~6 GB; minutes)"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
# nvidia-cuda-cuobjdump + nvidia-cuda-nvdisasm: the SASS reader of the static kernel checks
# (tests/test_sass.py); onnx + onnxruntime: the export tests (tests/test_export.py).
.venv/bin/python -m pip install -q "$TORCH_SPEC" numpy pytest pytest-benchmark expecttest \
  hypothesis ninja "setuptools>=64" wheel nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm onnx \
  onnxruntime

# torch compiles with the `ninja` it finds on PATH, and without one it falls back to compiling
# one file at a time, from scratch every run. The venv's ninja goes first, so the build (and
# scripts/build_plan.py, which must read the same .ninja_log format) always use it.
export PATH="$PWD/.venv/bin:$PATH"
jobs=${MAX_JOBS:-$(nproc)}
log=.venv/fusedrnn-build.log
# Say what is built and what it costs before the (possibly long) silence of the compiler.
.venv/bin/python scripts/build_plan.py --jobs "$jobs" --log "$log"
start=$(date +%s)
MAX_JOBS=$jobs .venv/bin/python -m pip install -v --no-build-isolation --no-deps -e . \
  > "$log" 2>&1 || { tail -n 60 "$log"; echo "fusedrnn setup: build failed; full log: $log"; exit 1; }
secs=$(( $(date +%s) - start ))
compiled=$(grep -c -E '^ *\[[0-9]+/[0-9]+\] ' "$log" || true)
echo "fusedrnn built in ${secs} s (${compiled} compile/link steps; log: $log):" \
  "$(.venv/bin/python -c 'import fusedrnn; print(fusedrnn.build_info())')"
