#!/usr/bin/env bash
# Proves fusedrnn on the NVIDIA GPU of this machine, against torch.nn (cuDNN), in one command:
#
#   bash scripts/gpu_check.sh [--quick] [--seconds N] [--resume F] [--ptxas-json F] [OUT_DIR]
#                                  (default OUT_DIR: benchmarks/results/gpu-<date>)
#
#   --seconds N     the whole check must end within N seconds (a lease's command limit): after the
#                   build, what is left (less a reserve for the report) is split between the tests
#                   (40%) and the benchmark, and each is killed at its share, a hung kernel too;
#                   the report is written after every case, so what was measured comes back
#   --resume F      an earlier run's report.json: its measured cases are taken over, the
#                   comparisons (per step, cluster, wavefront, kernels) run first, then the rest
#   --ptxas-json F  a ptxas report made elsewhere (benchmarks/kernel_resources.py --json, same
#                   nvcc: no GPU needed) instead of compiling it here alongside the tests
#
# Uses the Python that has torch (PYTHON, else .venv/bin/python when it exists, else python3) and
# installs nothing (works offline; torch >= 2.4, Python >= 3.10, pytest). Steps:
#   1. build fusedrnn in place for this GPU's arch only, with all cores (setup.py build_ext
#      --inplace: incremental, objects kept in build/);
#   2. a smoke check: each new persistent forward path once against the stepwise forward (where
#      the flag-word exchange or the cluster forward fails, the rest runs without it:
#      FUSEDRNN_PERSISTENT_EXCHANGE=barrier, FUSEDRNN_PERSISTENT_CLUSTER=off);
#   3. run the CUDA cases of the test suite (pytest -k cuda) within a time budget, while the ptxas
#      report of every kernel is compiled alongside;
#   4. benchmark fusedrnn against torch.nn (benchmarks/gpu_check.py): correctness checked before
#      timing, kernel tables from torch.profiler, static SASS facts, versions, TF32 settings;
#      writes OUT_DIR/report.md + report.json and prints a short table last.
# Measured on a 16-core H200 machine (2026-12-04): the sm_90 build 121 s, the 1493 CUDA tests 70 s
# in 4 processes; the benchmark takes what its budget gives (about 0.7 s a case).
# Without a GPU it runs the static part only (ptxas + SASS of the library built here) and says so.
set -uo pipefail
cd "$(dirname "$0")/.."
quick=""
out=""
seconds=""
ptxas_in=""
resume=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick="--quick" ;;
    --seconds) seconds=$2; shift ;;
    --resume) resume=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift ;;
    --ptxas-json) ptxas_in=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift ;;
    -h|--help) sed -n 2,29p "$0"; exit 0 ;;
    *) out="$1" ;;
  esac
  shift
done
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
out=${out:-benchmarks/results/gpu-$(date -u +%Y-%m-%d)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
if [ -n "$quick" ]; then test_budget=60; bench_budget=90; else test_budget=150; bench_budget=240; fi

gpu=$("$PY" - <<'EOF' 2>/dev/null
import torch
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"{p.major}.{p.minor}|{p.name}")
EOF
)
echo "gpu_check: python $("$PY" -c 'import sys; print(sys.version.split()[0])'), torch" \
  "$("$PY" -c 'import torch; print(torch.__version__)'), report in $out"

if [ -z "$gpu" ]; then
  echo "gpu_check: no CUDA GPU visible: static checks only (ptxas + SASS of the library built" \
    "here; run scripts/setup.sh first). No speed is measured."
  "$PY" benchmarks/gpu_check.py --out "$out" --budget 0 --device cpu $quick
  exit $?
fi

arch=${gpu%%|*}
# torch compiles in parallel only with a ninja on PATH (else one file at a time): the one of the
# Python's own bin folder or of its ninja package goes first.
pybin=$("$PY" -c 'import os, sys; print(os.path.dirname(sys.executable))')
nbin=$("$PY" -c 'import ninja; print(ninja.BIN_DIR)' 2>/dev/null)
export PATH="${nbin:+$nbin:}$pybin:$PATH"
command -v ninja > /dev/null || echo "gpu_check: WARNING: no ninja, the build compiles one file at a time"
echo "gpu_check: ${gpu#*|} (sm_${arch/./}); building for it with $(nproc) jobs" \
  "(log: $out/build.log)"
bstart=$(date +%s)
TORCH_CUDA_ARCH_LIST=$arch MAX_JOBS=$(nproc) FUSEDRNN_FORCE_CUDA=1 \
  "$PY" setup.py build_ext --inplace > "$out/build.log" 2>&1
brc=$?
bsecs=$(( $(date +%s) - bstart ))
if [ $brc -ne 0 ]; then
  tail -n 40 "$out/build.log"
  echo "gpu_check: BUILD FAILED after ${bsecs} s (full log: $out/build.log)"
  exit 1
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
echo "gpu_check: built in ${bsecs} s: $("$PY" -c 'import fusedrnn; print(fusedrnn.build_info())')"

# Smoke check: each persistent forward path no GPU has run yet, once against the stepwise
# forward, before the tests and the benchmark spend the lease on it; a process a group, as a
# hang ends in the watchdog's device-side assert after 10 s, which loses the process's CUDA
# context. Where the flag-word exchange (or the cluster forward) fails or its check does not
# finish, both run with FUSEDRNN_PERSISTENT_EXCHANGE=barrier (FUSEDRNN_PERSISTENT_CLUSTER=off)
# instead; the report says which.
for group in flags cluster; do
  echo "gpu_check: smoke check of the $group paths (log: $out/smoke-$group.log)"
  timeout -k 5 90 "$PY" benchmarks/gpu_check.py --smoke "$group" --out "$out" \
    > "$out/smoke-$group.log" 2>&1
  grep -E "^(smoke|exchange|cluster):" "$out/smoke-$group.log"
done
if ! grep -q "^exchange: flags" "$out/smoke-flags.log"; then
  tail -n 5 "$out/smoke-flags.log"
  export FUSEDRNN_PERSISTENT_EXCHANGE=barrier
  echo "gpu_check: the flag-word exchange failed its smoke check or the check did not finish:" \
    "the tests and the benchmark run with FUSEDRNN_PERSISTENT_EXCHANGE=barrier"
fi
if ! grep -q "^cluster: auto" "$out/smoke-cluster.log"; then
  tail -n 5 "$out/smoke-cluster.log"
  export FUSEDRNN_PERSISTENT_CLUSTER=off
  echo "gpu_check: the cluster forward failed its smoke check or the check did not finish:" \
    "the tests and the benchmark run with FUSEDRNN_PERSISTENT_CLUSTER=off"
fi

if [ -n "$seconds" ]; then
  # 75 s reserve: the kernel tables, cluster and wavefront comparisons, SASS and the report.
  left=$(( seconds - $(elapsed) - 75 ))
  [ $left -lt 60 ] && left=60
  test_budget=$(( left * 2 / 5 ))
  bench_budget=$(( left - test_budget ))
fi

# ptxas report alongside the tests (nvcc on one core while the tests keep the GPU busy), unless
# one made elsewhere was given.
if [ -n "$ptxas_in" ]; then
  cp "$ptxas_in" "$out/ptxas.json"
  ptxas_pid=""
else
  "$PY" benchmarks/kernel_resources.py --arch "sm_${arch/./}" --json > "$out/ptxas.json" \
    2> "$out/ptxas.err" &
  ptxas_pid=$!
fi

echo "gpu_check: CUDA tests (budget ${test_budget} s; log: $out/tests.log)"
timeout_opt=""
"$PY" -c "import pytest_timeout" 2>/dev/null && timeout_opt="--timeout=120"
# Four test processes where pytest-xdist is there: the references (fp64, CPU) and the SIMT cases
# keep a core each busy while the GPU mostly waits. GPU_CHECK_WORKERS=0 runs them in one;
# GPU_CHECK_K narrows the selection (a pytest -k expression; default "cuda").
workers=${GPU_CHECK_WORKERS:-4}
[ "$workers" != 0 ] && "$PY" -c "import xdist" 2>/dev/null && timeout_opt="$timeout_opt -n $workers"
timeout --signal=INT -k 15 "$test_budget" "$PY" -m pytest tests -q -k "${GPU_CHECK_K:-cuda}" -p no:cacheprovider --continue-on-collection-errors \
  $timeout_opt --junitxml="$out/tests.xml" > "$out/tests.log" 2>&1
trc=$?
[ $trc -eq 124 ] || [ $trc -eq 130 ] || [ $trc -eq 137 ] && echo "stopped at the time budget (${test_budget} s)" >> "$out/tests.log"
tail -n 3 "$out/tests.log"
[ -n "$ptxas_pid" ] && wait $ptxas_pid

echo "gpu_check: benchmark (budget ${bench_budget} s) at $(elapsed) s"
# The cases stop at the budget; the tables and comparisons after them get the reserve; a hung
# kernel is killed at the end of both (the report on disk then holds the cases measured).
PYTHONUNBUFFERED=1 timeout -k 10 $(( bench_budget + 65 )) \
  "$PY" benchmarks/gpu_check.py --out "$out" --budget "$bench_budget" $quick \
  ${resume:+--resume "$resume"} \
  --build-seconds "$bsecs" --build-log "$out/build.log" --tests-log "$out/tests.log" \
  --ptxas-json "$out/ptxas.json" 2>&1 | tee "$out/bench.log"
prc=${PIPESTATUS[0]}
if [ $prc -eq 124 ] || [ $prc -eq 137 ]; then
  echo "gpu_check: the benchmark was stopped at its limit; the cases measured until then:"
  "$PY" benchmarks/gpu_check.py --out "$out" --table-only
fi
echo "gpu_check: done in $(elapsed) s (tests exit $trc, benchmark exit $prc); report: $out/report.md"
[ $trc -eq 0 ] && [ $prc -eq 0 ]
