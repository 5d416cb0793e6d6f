// The thin LSTM sweeps (contract: lstm_sweep.h) for AVX-512. Included by pointwise_avx512.cpp
// after pointwise_impl.h and lstm_step_impl.h, inside that TU's target pragma: the forward runs
// the fused step's panels, the backward's cell is pointwise_impl.h's lstm_backward_units, the
// same code as the pointwise pass.
#pragma once

#include <immintrin.h>

#include <ATen/Parallel.h>

#include <algorithm>

#include "cpu/gemm.h"
#include "cpu/lstm_sweep.h"
#include "cpu/slot_barrier.h"

namespace fusedrnn {
namespace cpu {
namespace FRNN_PW_NS {
namespace sweep {

constexpr int64_t kW = 16;  // floats per vector

// dh[r, c0 .. c1) = sum over j < G of da[r*G + j] * w[j*H + c], rows r < R, c1 - c0 <= 16 V
// (== 16 V when Full: no masks, so the loads fold into the FMAs). R x V accumulators stay in
// registers while the rows of W stream past; rev walks j backwards.
template <int R, int V, bool Full>
static void product(int64_t H, int64_t G, const float* w, const float* da, int64_t c0, int64_t c1,
                    bool rev, float* dh) {
  __mmask16 m[V];
  for (int v = 0; v < V; ++v) {
    const int64_t left = c1 - c0 - kW * v;
    m[v] = left >= kW ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
  }
  __m512 acc[R][V];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  const float* wc = w + c0;
  for (int64_t jj = 0; jj < G; ++jj) {
    const int64_t j = rev ? G - 1 - jj : jj;
    const float* wj = wc + j * H;
    __m512 a[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) a[r] = _mm512_set1_ps(da[r * G + j]);
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) {
      const __m512 wv =
          Full ? _mm512_loadu_ps(wj + kW * v) : _mm512_maskz_loadu_ps(m[v], wj + kW * v);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][v] = _mm512_fmadd_ps(a[r], wv, acc[r][v]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) _mm512_mask_storeu_ps(dh + r * H + c0 + kW * v, m[v], acc[r][v]);
}

// The widest chunk R rows can hold in registers (R*V <= 16 accumulators).
constexpr int64_t max_vectors(int R) { return R == 1 ? 16 : R == 2 ? 8 : 4; }

// product<R, V> with V the smallest of 4, 8, 16 that covers c1 - c0.
template <int R>
static void product_rows(int64_t H, int64_t G, const float* w, const float* da, int64_t c0,
                         int64_t c1, bool rev, float* dh) {
  const int64_t nv = (c1 - c0 + kW - 1) / kW;
  const bool full = c1 - c0 == kW * max_vectors(R);
  if constexpr (max_vectors(R) >= 16) {
    if (full) return product<R, 16, true>(H, G, w, da, c0, c1, rev, dh);
    if (nv > 8) return product<R, 16, false>(H, G, w, da, c0, c1, rev, dh);
  }
  if constexpr (max_vectors(R) >= 8) {
    if (full) return product<R, 8, true>(H, G, w, da, c0, c1, rev, dh);
    if (nv > 4) return product<R, 8, false>(H, G, w, da, c0, c1, rev, dh);
  }
  if (full) return product<R, 4, true>(H, G, w, da, c0, c1, rev, dh);
  product<R, 4, false>(H, G, w, da, c0, c1, rev, dh);
}

// dh[0..n) over columns [c0, c1): groups of up to 4 rows, chunks of columns that fit the
// registers, in reverse order when rev.
static void products(int64_t n, int64_t H, int64_t G, const float* w, const float* da,
                     int64_t c0, int64_t c1, bool rev, float* dh) {
  for (int64_t r0 = 0; r0 < n; r0 += 4) {
    const int R = int(std::min<int64_t>(4, n - r0));
    const int64_t width = kW * max_vectors(R), chunks = (c1 - c0 + width - 1) / width;
    for (int64_t q = 0; q < chunks; ++q) {
      const int64_t k = rev ? chunks - 1 - q : q;
      const int64_t a = c0 + k * width, b = std::min(c1, a + width);
      const float* dar = da + r0 * G;
      float* dhr = dh + r0 * H;
      switch (R) {
        case 1: product_rows<1>(H, G, w, dar, a, b, rev, dhr); break;
        case 2: product_rows<2>(H, G, w, dar, a, b, rev, dhr); break;
        case 3: product_rows<3>(H, G, w, dar, a, b, rev, dhr); break;
        default: product_rows<4>(H, G, w, dar, a, b, rev, dhr); break;
      }
    }
  }
}

// Slots for a sweep over `bytes` of weights per step, split in `pieces`: one per thread from
// kSweepSplitBytes, far below the GEMM's threshold (gemm.cpp: 1 MFLOP or 2 MB), because a step
// here costs one spin barrier, not a wake-up of the pool. LSTM T=100 B=1 inference, two threads
// against one: H=128 (256 KB) 0.45 -> 0.33 ms, H=256 1.68 -> 1.09 ms; H=64 (64 KB) even, H=32
// slower (0.10 -> 0.17 ms).
constexpr double kSweepSplitBytes = 128 << 10;
static int64_t sweep_slots(double bytes, int64_t pieces) {
  if (bytes < kSweepSplitBytes || at::get_num_threads() == 1 || at::in_parallel_region()) return 1;
  return std::min<int64_t>(at::get_num_threads(), pieces);
}

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
  const double bytes = double(P) * double(H) * step::kCols * sizeof(float);
  const int64_t slots = sweep_slots(bytes, P);
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
  run_slots(slots, body);
  // Final states: each row's h from its last active step (c was updated in place).
  for (int64_t b = 0, s = S - 1; b < B; ++b) {
    while (cnt[s] <= b) --s;  // counts differ only for packed input; cnt[.] > b for some s
    std::copy(y + (off[s] + b) * H, y + (off[s] + b + 1) * H, h + b * H);
  }
}

static void lstm_backward_thin(int64_t H, const float* w_hh, int64_t S, const int64_t* off,
                               const int64_t* cnt, const float* gates, const float* cells,
                               const float* c_prev, const float* dy, float* dh, float* dc,
                               float* da) {
  if (S == 0 || H == 0) return;
  const int64_t G = 4 * H, blocks = (H + kW - 1) / kW;
  const int64_t slots = sweep_slots(double(G) * double(H) * sizeof(float), blocks);
  SlotBarrier barrier(slots);
  // Slot k's units: blocks [k*blocks/slots, (k+1)*blocks/slots) of 16.
  auto lo = [&](int64_t k) { return std::min(H, kW * (k * blocks / slots)); };
  auto body = [&](int64_t w0, int64_t w1) {
    for (int64_t s = 0; s < S; ++s) {
      const int64_t n = cnt[s], o = off[s];
      const float* g = gates + o * G;
      const float* c = cells + o * H;
      const float* cp = c_prev + o * H;
      const float* dyt = dy + o * H;
      float* dat = da + o * G;
      for (int64_t k = w0; k < w1; ++k)
        for (int64_t b = 0; b < n; ++b)
          for (int64_t j = lo(k); j < lo(k + 1); j += kW)
            lstm_backward_units<float>(b, j, std::min(kW, H - j), H, g, c, cp, dh, dyt, dc, dat);
      barrier.arrive_and_wait(w1 - w0, s + 1);
      // The next step's first half reads only this slot's units of dh, which only this slot
      // writes, and writes another step's rows of da: no second barrier.
      for (int64_t k = w0; k < w1; ++k) products(n, H, G, w_hh, dat, lo(k), lo(k + 1), s & 1, dh);
    }
  };
  run_slots(slots, body);
}

}  // namespace sweep
}  // namespace FRNN_PW_NS

LstmForwardThinFn lstm_forward_thin_avx512() { return &FRNN_PW_NS::sweep::lstm_forward_thin; }
LstmBackwardThinFn lstm_backward_thin_avx512() { return &FRNN_PW_NS::sweep::lstm_backward_thin; }

}  // namespace cpu
}  // namespace fusedrnn
