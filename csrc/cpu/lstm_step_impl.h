// The fused LSTM step (contract: lstm_step.h) for AVX-512. Included by pointwise_avx512.cpp after
// pointwise_impl.h, inside that TU's target pragma: it uses FastF and the shared cell math from
// there, so the cell update is the same code as the pointwise pass's.
#pragma once

#include <immintrin.h>

#include "cpu/gemm.h"
#include "cpu/lstm_step.h"
#include "cpu/transpose16.h"

namespace fusedrnn {
namespace cpu {
namespace FRNN_PW_NS {
namespace step {

constexpr int64_t kU = LstmStepWeights::kUnits, kCols = LstmStepWeights::kCols;
// K chunk: a panel's kc x 64 floats (32 KB) stay in L1 while every row tile of the step uses it.
constexpr int64_t kKC = 128;

// Rows r0..r0+R-1 of the step, units u0..u0+nu-1 (one panel), k in [k0, k0+kc). The gate
// pre-activations live in g between chunks: the first chunk starts from the input
// pre-activations there, middle chunks store partial sums back, the last applies the cell.
template <int R>
static void tile(int64_t H, int64_t k0, int64_t kc, bool last, const float* h, const float* bp,
                 int64_t u0, int64_t nu, float* g, float* cs, float* c_out, float* m_out) {
  // One row has only 4 FMA chains (latency 4 on two pipes wants >= 8): alternate two sets of
  // partial sums over k there.
  constexpr int S = R == 1 ? 2 : 1;
  const __mmask16 mask = nu >= kU ? __mmask16(0xFFFF) : __mmask16((1u << nu) - 1);
  __m512 acc[S][R][4];
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      acc[0][i][q] = _mm512_maskz_loadu_ps(mask, g + i * 4 * H + q * H + u0);
      if (S == 2) acc[S - 1][i][q] = _mm512_setzero_ps();
    }
  const float* a = h + k0;
  int64_t k = 0;
  for (; k + S <= kc; k += S) {
#pragma GCC unroll 2
    for (int s = 0; s < S; ++s) {
      const float* b = bp + (k + s) * kCols;
      const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16),
                   b2 = _mm512_load_ps(b + 32), b3 = _mm512_load_ps(b + 48);
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i * H + k + s]);
        acc[s][i][0] = _mm512_fmadd_ps(ai, b0, acc[s][i][0]);
        acc[s][i][1] = _mm512_fmadd_ps(ai, b1, acc[s][i][1]);
        acc[s][i][2] = _mm512_fmadd_ps(ai, b2, acc[s][i][2]);
        acc[s][i][3] = _mm512_fmadd_ps(ai, b3, acc[s][i][3]);
      }
    }
  }
  for (; k < kc; ++k) {
    const float* b = bp + k * kCols;
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i * H + k]);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q)
        acc[0][i][q] = _mm512_fmadd_ps(ai, _mm512_load_ps(b + 16 * q), acc[0][i][q]);
    }
  }
  if (S == 2) {
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) acc[0][i][q] = _mm512_add_ps(acc[0][i][q], acc[S - 1][i][q]);
  }
  for (int i = 0; i < R; ++i) {
    float* gi = g + i * 4 * H + u0;
    if (!last) {
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) _mm512_mask_storeu_ps(gi + q * H, mask, acc[0][i][q]);
      continue;
    }
    const int64_t e = i * H + u0;
    using F = C<float>;
    F gi_, gf, gg, go, c, m;
    cells::lstm_forward<F>(F(V<float>(acc[0][i][0])), F(V<float>(acc[0][i][1])),
                           F(V<float>(acc[0][i][2])), F(V<float>(acc[0][i][3])),
                           ld(cs + e, nu), gi_, gf, gg, go, c, m);
    st(gi_, gi, nu), st(gf, gi + H, nu), st(gg, gi + 2 * H, nu), st(go, gi + 3 * H, nu);
    st(c, cs + e, nu), st(c, c_out + e, nu), st(m, m_out + e, nu);
  }
}

template <int R = 1>
static void tile_rows(int64_t r, int64_t H, int64_t k0, int64_t kc, bool last, const float* h,
                      const float* bp, int64_t u0, int64_t nu, float* g, float* cs,
                      float* c_out, float* m_out) {
  if constexpr (R < 4) {
    if (r != R)
      return tile_rows<R + 1>(r, H, k0, kc, last, h, bp, u0, nu, g, cs, c_out, m_out);
  }
  tile<R>(H, k0, kc, last, h, bp, u0, nu, g, cs, c_out, m_out);
}

// Panels p0 .. p1-1 of the step (arguments as lstm_step.h), in reverse order when rev.
static void panels(const LstmStepWeights& w, int64_t n, const float* h, float* g, float* cs,
                   float* c_out, float* m_out, int64_t p0, int64_t p1, bool rev) {
  const int64_t H = w.H;
  for (int64_t q = p0; q < p1; ++q) {
    const int64_t p = rev ? p0 + p1 - 1 - q : q;
    const int64_t u0 = p * kU, nu = std::min(kU, H - u0);
    const float* bp = w.data.get() + p * H * kCols;
    for (int64_t k0 = 0; k0 < H; k0 += kKC) {
      const int64_t kc = std::min(kKC, H - k0);
      const bool last = k0 + kc == H;
      for (int64_t r0 = 0; r0 < n; r0 += 4) {
        // The next tile's first loads (input pre-activations at k0 = 0, the cell state in the
        // last chunk) miss the cache: their rows are 8 KB apart. Asking for them one tile
        // ahead hides that latency (it was ~13% of the step's time).
        if (r0 + 4 < n && (k0 == 0 || last)) {
          for (int64_t i = r0 + 4; i < std::min(n, r0 + 8); ++i) {
            if (k0 == 0)
              for (int gate = 0; gate < 4; ++gate)
                _mm_prefetch(reinterpret_cast<const char*>(g + i * 4 * H + gate * H + u0),
                             _MM_HINT_T0);
            if (last) _mm_prefetch(reinterpret_cast<const char*>(cs + i * H + u0), _MM_HINT_T0);
          }
        }
        tile_rows(std::min<int64_t>(4, n - r0), H, k0, kc, last, h + r0 * H, bp + k0 * kCols,
                  u0, nu, g + r0 * 4 * H, cs + r0 * H, c_out + r0 * H, m_out + r0 * H);
      }
    }
  }
}

static void lstm_step(const LstmStepWeights& w, int64_t n, const float* h, float* g,
                      float* cs, float* c_out, float* m_out) {
  const int64_t H = w.H;
  if (n == 0 || H == 0) return;
  const bool reverse = w.steps.fetch_add(1, std::memory_order_relaxed) & 1;
  auto run = [&](int64_t p0, int64_t p1) {
    panels(w, n, h, g, cs, c_out, m_out, p0, p1, reverse);
  };
  const double flops = 8.0 * double(n) * double(H) * double(H);
  const double bytes = double(w.panels) * double(H) * kCols * sizeof(float);
  if (run_on_caller(flops, bytes)) {  // thin steps (B = 1) still split: two cores read W_hh faster
    run(0, w.panels);
  } else {
    at::parallel_for(0, w.panels, 1, run);
  }
}

}  // namespace step
}  // namespace FRNN_PW_NS

LstmStepFn lstm_step_avx512() { return &FRNN_PW_NS::step::lstm_step; }

void lstm_step_pack_panel(const float* w_hh, int64_t H, int64_t p, float* d) {
  constexpr int64_t kU = LstmStepWeights::kUnits, kCols = LstmStepWeights::kCols;
  const int rows = int(std::min(kU, H - p * kU));
  // Gate q's 16 units are rows q*H + 16p + u of W_hh; their first 16 k land, transposed, in
  // columns 16q .. 16q+15 of the panel's first 16 rows; and so on along k.
  for (int64_t q = 0; q < 4; ++q)
    for (int64_t k0 = 0; k0 < H; k0 += 16)
      transpose16(w_hh + (q * H + p * kU) * H + k0, H, rows, int(std::min<int64_t>(16, H - k0)),
                  d + k0 * kCols + q * kU, kCols);
}

}  // namespace cpu
}  // namespace fusedrnn
