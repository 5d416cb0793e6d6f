// The thin LSTM sweeps (contract: lstm_sweep.h), written once over the instruction-set traits
// of lstm_step_impl.h and instantiated by pointwise_avx512.cpp and pointwise_avx2.cpp after
// pointwise_impl.h and lstm_step_impl.h, inside the TU's target pragma: the forward runs the
// fused step's panels, the backward's cell is pointwise_impl.h's lstm_backward_units, the same
// code as the pointwise pass. Beyond the step's traits the backward product uses Isa::kAcc (how
// many accumulators it may keep in registers) and Isa::kMinVectors (its narrowest chunk).
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

// dh[r, c0 .. c1) = sum over j < G of da[r*G + j] * w[j*H + c], rows r < R, c1 - c0 <= L V
// (== L V when Full: no masks, so the loads fold into the FMAs). R x V accumulators stay in
// registers while the rows of W stream past; rev walks j backwards.
template <class Isa, int R, int V, bool Full>
static void product(int64_t H, int64_t G, const float* w, const float* da, int64_t c0, int64_t c1,
                    bool rev, float* dh) {
  using Vec = typename Isa::V;
  constexpr int64_t kW = Isa::L;
  typename Isa::Mask m[V];
  for (int v = 0; v < V; ++v) m[v] = Isa::mask(c1 - c0 - kW * v);
  Vec acc[R][V];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) acc[r][v] = Isa::zero();
  const float* wc = w + c0;
  for (int64_t jj = 0; jj < G; ++jj) {
    const int64_t j = rev ? G - 1 - jj : jj;
    const float* wj = wc + j * H;
    Vec a[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) a[r] = Isa::set1(da[r * G + j]);
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) {
      const Vec wv = Full ? Isa::loadu(wj + kW * v) : Isa::maskload(m[v], wj + kW * v);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][v] = Isa::fma(a[r], wv, acc[r][v]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) Isa::maskstore(dh + r * H + c0 + kW * v, m[v], acc[r][v]);
}

// The widest chunk R rows can hold in registers: the largest power of two V with
// R*V <= Isa::kAcc accumulators (AVX-512, 16: V = 16, 8, 4, 4 for R = 1..4).
template <class Isa>
constexpr int max_vectors(int R) {
  int v = 1;
  while (2 * v * R <= Isa::kAcc) v *= 2;
  return v;
}

// product<R, V> with V the smallest power of two in [Isa::kMinVectors, max_vectors(R)] that
// covers c1 - c0 (Full when it covers it exactly at the widest).
template <class Isa, int R, int V = max_vectors<Isa>(R)>
static void product_rows(int64_t H, int64_t G, const float* w, const float* da, int64_t c0,
                         int64_t c1, bool rev, float* dh) {
  constexpr int64_t kW = Isa::L;
  const int64_t nv = (c1 - c0 + kW - 1) / kW;
  if constexpr (V == max_vectors<Isa>(R)) {
    if (c1 - c0 == kW * V) return product<Isa, R, V, true>(H, G, w, da, c0, c1, rev, dh);
  }
  if constexpr (V / 2 >= Isa::kMinVectors) {
    if (nv <= V / 2) return product_rows<Isa, R, V / 2>(H, G, w, da, c0, c1, rev, dh);
  }
  product<Isa, R, V, false>(H, G, w, da, c0, c1, rev, dh);
}

// dh[0..n) over columns [c0, c1): groups of up to 4 rows, chunks of columns that fit the
// registers, in reverse order when rev.
template <class Isa>
static void products(int64_t n, int64_t H, int64_t G, const float* w, const float* da,
                     int64_t c0, int64_t c1, bool rev, float* dh) {
  constexpr int64_t kW = Isa::L;
  for (int64_t r0 = 0; r0 < n; r0 += 4) {
    const int R = int(std::min<int64_t>(4, n - r0));
    const int64_t width = kW * max_vectors<Isa>(R), chunks = (c1 - c0 + width - 1) / width;
    for (int64_t q = 0; q < chunks; ++q) {
      const int64_t k = rev ? chunks - 1 - q : q;
      const int64_t a = c0 + k * width, b = std::min(c1, a + width);
      const float* dar = da + r0 * G;
      float* dhr = dh + r0 * H;
      switch (R) {
        case 1: product_rows<Isa, 1>(H, G, w, dar, a, b, rev, dhr); break;
        case 2: product_rows<Isa, 2>(H, G, w, dar, a, b, rev, dhr); break;
        case 3: product_rows<Isa, 3>(H, G, w, dar, a, b, rev, dhr); break;
        default: product_rows<Isa, 4>(H, G, w, dar, a, b, rev, dhr); break;
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

template <class Isa>
static void lstm_forward_thin(const LstmStepWeights& w, int64_t S, const int64_t* off,
                              const int64_t* cnt, float* gates, float* h, float* c, float* cells,
                              float* y, float* hbuf) {
  const int64_t H = w.H, G = 4 * H, P = w.panels;
  TORCH_CHECK(w.units == Isa::L, "fusedrnn: W_hh packed for another instruction set");
  if (S == 0 || H == 0) return;
  const int64_t B = *std::max_element(cnt, cnt + S);
  // Both halves start as h_0: a row that is not yet active (reversed packed input) is read from
  // either half before any slot writes it.
  std::copy(h, h + B * H, hbuf);
  std::copy(h, h + B * H, hbuf + B * H);
  const double bytes = double(P) * double(H) * step::kCols<Isa> * sizeof(float);
  const int64_t slots = sweep_slots(bytes, P);
  SlotBarrier barrier(slots);
  auto lo = [&](int64_t k) { return k * P / slots; };  // slot k's first panel
  // W_hh packed lazily (lstm_step.h): each slot packs the panels it alone reads, in parallel
  // and into its own core's cache.
  const bool pack = w.pending();
  auto body = [&](int64_t w0, int64_t w1) {
    if (pack) w.pack_panels(lo(w0), lo(w1));
    for (int64_t s = 0; s < S; ++s) {
      const int64_t n = cnt[s], o = off[s];
      const float* src = hbuf + (s & 1) * B * H;
      float* dst = hbuf + ((s + 1) & 1) * B * H;
      float* yt = y + o * H;
      // Half of h_{t-1} was written by the other slots: ask for all of its lines at once
      // instead of missing on them one after another in the first panel's loop (T=20 B=8
      // H=128 AVX2, two threads: the forward ~2% faster).
      for (int64_t e = 0; e < n * H; e += 64 / int64_t(sizeof(float)))
        _mm_prefetch(reinterpret_cast<const char*>(src + e), _MM_HINT_T0);
      for (int64_t k = w0; k < w1; ++k) {
        step::panels<Isa>(w, n, src, gates + o * G, c, cells + o * H, yt, lo(k), lo(k + 1),
                          s & 1);
        const int64_t u0 = lo(k) * Isa::L, u1 = std::min(H, lo(k + 1) * Isa::L);
        for (int64_t b = 0; b < n; ++b)
          std::copy(yt + b * H + u0, yt + b * H + u1, dst + b * H + u0);
      }
      barrier.arrive_and_wait(w1 - w0, s + 1);
    }
  };
  run_slots(slots, body);
  w.mark_packed();
  // Final states: each row's h from its last active step (c was updated in place).
  for (int64_t b = 0, s = S - 1; b < B; ++b) {
    while (cnt[s] <= b) --s;  // counts differ only for packed input; cnt[.] > b for some s
    std::copy(y + (off[s] + b) * H, y + (off[s] + b + 1) * H, h + b * H);
  }
}

template <class Isa>
static void lstm_backward_thin(int64_t H, const float* w_hh, int64_t S, const int64_t* off,
                               const int64_t* cnt, const float* gates, const float* cells,
                               const float* c_prev, const float* dy, float* dh, float* dc,
                               float* da) {
  constexpr int64_t kW = Isa::L;
  static_assert(V<float>::size() == kW, "lstm_backward_units runs on the same vectors");
  if (S == 0 || H == 0) return;
  const int64_t G = 4 * H, blocks = (H + kW - 1) / kW;
  const int64_t slots = sweep_slots(double(G) * double(H) * sizeof(float), blocks);
  SlotBarrier barrier(slots);
  // Slot k's units: blocks [k*blocks/slots, (k+1)*blocks/slots) of L.
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
      // Every slot reads all of da_t, half of it written by the others: ask for its lines at
      // once (as the forward does with h; the backward at T=20 B=8 H=128 AVX2 ~3% faster).
      for (int64_t e = 0; e < n * G; e += 64 / int64_t(sizeof(float)))
        _mm_prefetch(reinterpret_cast<const char*>(dat + e), _MM_HINT_T0);
      // The next step's first half reads only this slot's units of dh, which only this slot
      // writes, and writes another step's rows of da: no second barrier.
      for (int64_t k = w0; k < w1; ++k)
        products<Isa>(n, H, G, w_hh, dat, lo(k), lo(k + 1), s & 1, dh);
    }
  };
  run_slots(slots, body);
}

}  // namespace sweep
}  // namespace FRNN_PW_NS

}  // namespace cpu
}  // namespace fusedrnn
