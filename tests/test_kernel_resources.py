"""No stepwise CUDA kernel spills registers on sm_80 or sm_90 (benchmarks/kernel_resources.py).

Needs nvcc (no GPU): skipped when no CUDA toolkit is found.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "kernel_resources.py")


def _nvcc():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import kernel_resources
    finally:
        sys.path.pop(0)
    return kernel_resources.find_nvcc()[1]


@pytest.mark.skipif(_nvcc() is None, reason="nvcc not found")
def test_no_register_spills():
    proc = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, timeout=1200,
                          cwd=ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 2, f"kernel_resources could not compile the kernels:\n{out[-4000:]}"
    assert proc.returncode == 0, f"register spills:\n{out}"
    for k in ("lstm_forward_step_kernel", "gru_backward_step_kernel", "rnn_forward_step_kernel",
              "persistent lstm_fwd_kernel", "persistent gru_bwd_kernel"):
        assert k in proc.stdout
    assert "sm_80" in proc.stdout and "sm_90" in proc.stdout
