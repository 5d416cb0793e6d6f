// The fused LSTM time step of the CPU backend (fp32, AVX-512): the recurrent product h W_hh^T
// and the cell update in one pass, so the pre-activations never make a round trip through memory
// between a GEMM and a separate pointwise pass.
//
// W_hh [4H, H] is packed once per call into panels of 16 hidden units: panel p holds, for every
// k < H, the 64 floats W_hh[q*H + 16p + u, k] (gate q = i,f,g,o, unit u < 16; zero beyond H).
// A tile of up to 4 batch rows x one panel therefore ends with all four gates of 16 units in
// registers, and the cell math (csrc/cells, as in the pointwise pass) runs before the store.
//
// lstm_step(w, n, h, g, c_state, c_out, m_out), rows 0..n-1 (row strides: g 4H, the rest H):
//   g [n,4H]      in: the input pre-activations (x W_ih^T + b_ih + b_hh);
//                 out: the activations i,f,g,o (what the pointwise pass stores, for backward);
//   h [n,H]       h_{t-1}, read only; must not alias m_out (the step reads every row of h
//                 while it writes m_out);
//   c_state [n,H] in: c_{t-1}, out: c_t (in place);  c_out [n,H] = c_t;  m_out [n,H] = h_t.
// Threads split the panels when the step is large enough to pay for waking the pool.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "cpu/big_buffer.h"

namespace fusedrnn {
namespace cpu {

// Writes panel p of the layout above (H * kCols floats at d, 64-byte aligned) from w_hh [4H, H].
// AVX-512: call only where lstm_step_fn() is not null.
void lstm_step_pack_panel(const float* w_hh, int64_t H, int64_t p, float* d);

struct LstmStepWeights {
  static constexpr int64_t kUnits = 16, kCols = 4 * kUnits;
  int64_t H = 0, panels = 0;
  BigBuffer<float> data;
  // Steps so far: every other step walks each thread's panels in reverse (as PackedB::calls), so
  // part of a W_hh larger than L2 is read from L2 instead of L3 (T=100 B=1 H=512, two threads:
  // inference ~7%, training ~12% faster).
  mutable std::atomic<uint32_t> steps{0};

  LstmStepWeights(const float* w_hh, int64_t H_) : H(H_), panels((H_ + kUnits - 1) / kUnits) {
    const size_t floats = size_t(panels * H * kCols);
    data.reset(static_cast<float*>(alloc_big(floats * sizeof(float))));
    TORCH_CHECK(data, "fusedrnn: out of memory packing W_hh");
    float* d0 = data.get();
    at::parallel_for(0, panels, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, H * kCols)),
                     [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) lstm_step_pack_panel(w_hh, H, p, d0 + p * H * kCols);
    });
  }
};

using LstmStepFn = void (*)(const LstmStepWeights& w, int64_t n, const float* h, float* g,
                            float* c_state, float* c_out, float* m_out);

// The fused step, or null where it does not run: CPUs without AVX-512 F/BW/DQ/VL, the GEMM or
// pointwise instruction set forced to something else (FUSEDRNN_CPU_GEMM, FUSEDRNN_CPU_NO_AVX512),
// or FUSEDRNN_CPU_FUSED=0 (the separate GEMM + pointwise pass, for measurements).
LstmStepFn lstm_step_fn();

}  // namespace cpu
}  // namespace fusedrnn
