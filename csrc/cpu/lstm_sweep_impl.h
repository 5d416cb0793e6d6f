// The thin LSTM forward sweep (contract: lstm_sweep.h) for AVX-512. Included by
// pointwise_avx512.cpp after lstm_step_impl.h, inside that TU's target pragma: it runs the fused
// step's panels.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>

#include "cpu/gemm.h"
#include "cpu/lstm_sweep.h"
#include "cpu/slot_barrier.h"

namespace fusedrnn {
namespace cpu {
namespace FRNN_PW_NS {
namespace sweep {

static void lstm_forward_thin(const LstmStepWeights& w, int64_t S, const int64_t* off,
                              const int64_t* cnt, float* gates, float* h, float* c, float* cells,
                              float* y, float* hbuf) {
  const int64_t H = w.H, G = 4 * H, P = w.panels;
  if (S == 0 || H == 0) return;
  const int64_t B = *std::max_element(cnt, cnt + S);
  // Both halves start as h_0: a row that is not yet active (reversed packed input) is read from
  // either half before any slot writes it.
  std::copy(h, h + B * H, hbuf);
  std::copy(h, h + B * H, hbuf + B * H);
  // One slot where waking the pool would not pay (the fused step's rule), else one per thread.
  const double flops = 8.0 * double(B) * double(H) * double(H);
  const double bytes = double(P) * double(H) * step::kCols * sizeof(float);
  const int64_t slots =
      run_on_caller(flops, bytes) ? 1 : std::min<int64_t>(at::get_num_threads(), P);
  SlotBarrier barrier(slots);
  auto lo = [&](int64_t k) { return k * P / slots; };  // slot k's first panel
  auto body = [&](int64_t w0, int64_t w1) {
    for (int64_t s = 0; s < S; ++s) {
      const int64_t n = cnt[s], o = off[s];
      const float* src = hbuf + (s & 1) * B * H;
      float* dst = hbuf + ((s + 1) & 1) * B * H;
      float* yt = y + o * H;
      for (int64_t k = w0; k < w1; ++k) {
        step::panels(w, n, src, gates + o * G, c, cells + o * H, yt, lo(k), lo(k + 1), s & 1);
        const int64_t u0 = lo(k) * step::kU, u1 = std::min(H, lo(k + 1) * step::kU);
        for (int64_t b = 0; b < n; ++b)
          std::copy(yt + b * H + u0, yt + b * H + u1, dst + b * H + u0);
      }
      barrier.arrive_and_wait(w1 - w0, s + 1);
    }
  };
  if (slots == 1) {
    body(0, 1);
  } else {
    at::parallel_for(0, slots, 1, body);
  }
  // Final states: each row's h from its last active step (c was updated in place).
  for (int64_t b = 0, s = S - 1; b < B; ++b) {
    while (cnt[s] <= b) --s;  // counts differ only for packed input; cnt[.] > b for some s
    std::copy(y + (off[s] + b) * H, y + (off[s] + b + 1) * H, h + b * H);
  }
}

}  // namespace sweep
}  // namespace FRNN_PW_NS

LstmForwardThinFn lstm_forward_thin_avx512() { return &FRNN_PW_NS::sweep::lstm_forward_thin; }

}  // namespace cpu
}  // namespace fusedrnn
