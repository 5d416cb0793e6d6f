// The fused LSTM time step of the CPU backend (fp32; AVX-512 or AVX2+FMA): the recurrent product
// h W_hh^T and the cell update in one pass, so the pre-activations never make a round trip
// through memory between a GEMM and a separate pointwise pass.
//
// One implementation (lstm_step_impl.h) over instruction-set traits, compiled twice: AVX-512 in
// pointwise_avx512.cpp (16 floats per vector), AVX2+FMA in pointwise_avx2.cpp (8). The panel
// width L is the vector width: W_hh [4H, H] is packed once per call into panels of L hidden units:
// panel p holds, for every k < H, the 4L floats W_hh[q*H + Lp + u, k] (gate q = i,f,g,o, unit
// u < L; zero beyond H). A tile of a few batch rows (4 with AVX-512's 32 registers, 3 with AVX2's
// 16) x one panel therefore ends with all four gates of L units in registers, and the cell math
// (csrc/cells, as in the pointwise pass) runs before the store. The packing depends on L, so the
// weights remember the kernel that packed them and only that kernel's step may read them.
//
// kernel.step(w, n, h, g, c_state, c_out, m_out), rows 0..n-1 (row strides: g 4H, the rest H):
//   g [n,4H]      in: the input pre-activations (x W_ih^T + b_ih + b_hh);
//                 out: the activations i,f,g,o (what the pointwise pass stores, for backward);
//   h [n,H]       h_{t-1}, read only; must not alias m_out (the step reads every row of h
//                 while it writes m_out);
//   c_state [n,H] in: c_{t-1}, out: c_t (in place);  c_out [n,H] = c_t;  m_out [n,H] = h_t.
// Threads split the panels when the step is large enough to pay for waking the pool.
// Callers: lstm.cpp (a step at a time) and the thin forward sweep (lstm_sweep_impl.h, which runs
// the same panels inside its own parallel region).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "cpu/big_buffer.h"

namespace fusedrnn {
namespace cpu {

struct LstmStepWeights;

using LstmStepFn = void (*)(const LstmStepWeights& w, int64_t n, const float* h, float* g,
                            float* c_state, float* c_out, float* m_out);

// One instruction set's fused step.
struct LstmStepKernel {
  const char* isa;  // "avx512" or "avx2"
  int64_t units;    // L, hidden units per panel
  // The largest H at which a step at a time beats the GEMM + pointwise pass (lstm_step_for).
  int64_t max_step_h;
  // Writes panel p of the layout above (H * 4L floats at d, 64-byte aligned) from w_hh [4H, H].
  void (*pack_panel)(const float* w_hh, int64_t H, int64_t p, float* d);
  LstmStepFn step;
};

struct LstmStepWeights {
  const LstmStepKernel* kernel;  // the one that packed data, and the only one that may read it
  int64_t H = 0, units = 0, cols = 0, panels = 0;
  BigBuffer<float> data;
  // Steps so far: every other step walks each thread's panels in reverse (as PackedB::calls), so
  // part of a W_hh larger than L2 is read from L2 instead of L3 (T=100 B=1 H=512, two threads:
  // inference ~7%, training ~12% faster).
  mutable std::atomic<uint32_t> steps{0};

  // lazy: allocate only and pack on first use (w_hh must outlive this object until then): the
  // step packs everything before its first panel (ensure_packed), the thin forward sweep packs
  // each slot's own panels inside its parallel region (pack_panels, then mark_packed), as
  // PackedB's lazy mode (gemm.h).
  LstmStepWeights(const LstmStepKernel& k, const float* w_hh, int64_t H_, bool lazy = false)
      : kernel(&k), H(H_), units(k.units), cols(4 * k.units),
        panels((H_ + k.units - 1) / k.units), src_(w_hh), packed_(false) {
    const size_t floats = size_t(panels * H * cols);
    {
      const WeightBuffers sized_by_weights;  // the cache's rule (big_buffer.h)
      data.reset(static_cast<float*>(alloc_big(floats * sizeof(float))));
    }
    TORCH_CHECK(data, "fusedrnn: out of memory packing W_hh");
    if (!lazy) ensure_packed();
  }
  bool pending() const { return !packed_; }
  void mark_packed() const { packed_ = true; }
  // Panels p0 .. p1-1 (not thread-safe against other calls on the same panels).
  void pack_panels(int64_t p0, int64_t p1) const {
    for (int64_t p = p0; p < p1; ++p) kernel->pack_panel(src_, H, p, data.get() + p * H * cols);
  }
  // Packs every panel unless done (call from one thread, outside the panels' readers).
  void ensure_packed() const {
    if (packed_) return;
    at::parallel_for(0, panels, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, H * cols)),
                     [&](int64_t p0, int64_t p1) { pack_panels(p0, p1); });
    packed_ = true;
  }

 private:
  const float* src_;
  mutable bool packed_;
};

// The fused step for this CPU, or null where it does not run: CPUs without AVX2+FMA, the GEMM or
// pointwise instruction set forced below AVX2 (FUSEDRNN_CPU_GEMM=blas), or FUSEDRNN_CPU_FUSED=0
// (the separate GEMM + pointwise pass, for measurements). AVX-512 where both the GEMM and the
// pointwise passes run AVX-512, else AVX2 (FUSEDRNN_CPU_NO_AVX512=1 or FUSEDRNN_CPU_GEMM=avx2
// select it on an AVX-512 CPU; pointwise.h: force_cpu_isa for tests).
const LstmStepKernel* lstm_step_fn();

// The fused step for the steps of a layer of B rows and H units, or null where the separate GEMM
// + pointwise pass is faster: batches of at most kThinRows (lstm_sweep.h) always take it (the
// thin sweeps run on it); wider ones only up to the kernel's max_step_h, as measured (the step's
// tile keeps fewer accumulators than the GEMM's, which at large H costs more than the gates'
// round trip through the cache it saves). FUSEDRNN_CPU_FUSED=1 takes it at every size (tests).
const LstmStepKernel* lstm_step_for(int64_t B, int64_t H);

}  // namespace cpu
}  // namespace fusedrnn
