"""The CUDA side of csrc/cuda/cluster.h's mbarrier and st.async calls (inline PTX), compiled with
nvcc for sm_90 and sm_80 (no GPU): the sm_90 SASS holds the documented instructions (STAS of
4, 8 and 16 bytes, the transaction arrival, the phase check), and a step of the exchange (arm,
st.async, wait) has no memory fence, unlike the cluster barrier's release; sm_80 compiles (the
calls trap there: the launcher never runs clusters on it). The semantics are tested through the
SIMT layer (tests/test_simt_cluster.py). Skipped without nvcc or cuobjdump."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import kernel_resources  # noqa: E402
import sass  # noqa: E402

sys.path.pop(0)

SOURCE = r'''
#include "cuda/cluster.h"
__global__ void k_exchange_step(float* out, int n) {
  extern __shared__ __align__(16) unsigned char smem[];
  uint64_t* bar = reinterpret_cast<uint64_t*>(smem);
  float* buf = reinterpret_cast<float*>(smem + 16);
  const unsigned rank = fusedrnn::portable::cluster_rank();
  if (threadIdx.x == 0) fusedrnn::portable::mbar_init(bar, 1);
  fusedrnn::portable::cluster_sync();
  if (threadIdx.x == 0) fusedrnn::portable::mbar_arrive_expect_tx(bar, 28u * n);
  if (int(threadIdx.x) < n) {
    fusedrnn::portable::st_async(buf + rank, 1.f, bar, threadIdx.x);
    fusedrnn::portable::st_async(reinterpret_cast<float2*>(buf + 32) + rank,
                                 make_float2(1.f, 2.f), bar, threadIdx.x);
    fusedrnn::portable::st_async(reinterpret_cast<uint4*>(buf + 64) + rank,
                                 make_uint4(1, 2, 3, 4), bar, threadIdx.x);
  }
  fusedrnn::portable::mbar_wait(bar, 0);
  out[threadIdx.x] = buf[threadIdx.x];
  fusedrnn::portable::cluster_sync();
}
'''

NVCC = kernel_resources.find_nvcc()


@pytest.mark.skipif(NVCC[1] is None or sass.find_cuobjdump() is None,
                    reason="nvcc or cuobjdump not found")
def test_mbarrier_and_st_async_compile_to_the_documented_sass(tmp_path):
    cu = tmp_path / "x.cu"
    cu.write_text(SOURCE)
    incs = [a for d in kernel_resources.include_dirs(NVCC[0]) for a in ("-I", d)]
    cubins = {}
    for arch in ("90", "80"):
        out = tmp_path / f"x{arch}.cubin"
        proc = subprocess.run([NVCC[1], "-O3", "-std=c++20", "--expt-relaxed-constexpr",
                               "-DFUSEDRNN_WITH_CUDA=1", "-gencode",
                               f"arch=compute_{arch},code=sm_{arch}", "-cubin", "-o", str(out),
                               str(cu)] + incs, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (arch, proc.stderr[-3000:])
        cubins[arch] = out
    text = subprocess.run([sass.find_cuobjdump(), "-sass", str(cubins["90"])],
                          capture_output=True, text=True, check=True).stdout
    ops = [m.group(1) for m in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][\w.]*)",
                                           text)]
    for want in ("STAS", "STAS.64", "STAS.128", "SYNCS.ARRIVE.TRANS64",
                 "SYNCS.PHASECHK.TRANS64.TRYWAIT"):
        assert want in ops, (want, sorted(set(ops)))
    # the step (after the barrier that follows the init: arm, st.async, the first phase check)
    # has no fence, where the cluster barrier's release has a device-scope one
    step = ops[ops.index("UCGABAR_WAIT") + 1:ops.index("SYNCS.PHASECHK.TRANS64.TRYWAIT")]
    assert "SYNCS.ARRIVE.TRANS64" in step and "STAS.128" in step, step
    assert not [o for o in step if o.startswith("MEMBAR")], step
    assert "MEMBAR.ALL.GPU" in ops[:ops.index("UCGABAR_ARV")]  # the release, for contrast
