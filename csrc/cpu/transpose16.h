// A 16 x 16 fp32 block transpose in AVX-512F registers, for packing weights (W^T panels of the
// GEMM and the fused LSTM step). Include it after the TU's `#pragma GCC target` (AVX-512F).
//
// transpose16(src, lds, rows, cols, dst, ldd): dst[k*ldd + u] = src[u*lds + k] for k < cols,
// u < 16, with 0 for u >= rows. Reads only src rows u < rows, columns k < cols; writes the
// 16 floats of dst rows k < cols (64-byte aligned when dst and ldd*4 are). 1 <= cols <= 16,
// 0 <= rows <= 16; src and dst must not overlap.
// Why: the scalar loops it replaced moved one float per load and store. At H = 512 (4 MB per
// matrix, two threads) packing W_ih^T went from ~180 to ~80 us and W_hh for the fused step from
// ~300 to ~100 us; LSTM T=100 B=1 training ~8% faster, a single step (T=1) twice as fast.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace fusedrnn {
namespace cpu {

static inline void transpose16(const float* src, int64_t lds, int rows, int cols, float* dst,
                               int64_t ldd) {
  const __mmask16 kmask = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1);
  __m512 r[16], t[16];
  for (int u = 0; u < 16; ++u)
    r[u] = u < rows ? _mm512_maskz_loadu_ps(kmask, src + u * lds) : _mm512_setzero_ps();
  // Within each 128-bit lane j (columns 4j..4j+3): pairs of rows interleaved, ...
  for (int u = 0; u < 16; u += 2) {
    t[u] = _mm512_unpacklo_ps(r[u], r[u + 1]);
    t[u + 1] = _mm512_unpackhi_ps(r[u], r[u + 1]);
  }
  // ... then quads: r[4a + e] lane j = column 4j+e of rows 4a..4a+3.
  for (int a = 0; a < 4; ++a) {
    const __m512d lo = _mm512_castps_pd(t[4 * a]), hi = _mm512_castps_pd(t[4 * a + 1]);
    const __m512d lo2 = _mm512_castps_pd(t[4 * a + 2]), hi2 = _mm512_castps_pd(t[4 * a + 3]);
    r[4 * a] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo, lo2));
    r[4 * a + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo, lo2));
    r[4 * a + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi, hi2));
    r[4 * a + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi, hi2));
  }
  // Lanes regrouped: t[e] holds lanes (0, 2) of rows 0-3 and 4-7, t[4 + e] lanes (1, 3); the
  // same for rows 8-15 in t[8 + e], t[12 + e].
  for (int e = 0; e < 4; ++e) {
    t[e] = _mm512_shuffle_f32x4(r[e], r[4 + e], 0x88);
    t[4 + e] = _mm512_shuffle_f32x4(r[e], r[4 + e], 0xdd);
    t[8 + e] = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0x88);
    t[12 + e] = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0xdd);
  }
  // Column k = 4j + e: lane j of rows 0-3, 4-7, 8-11, 12-15.
  for (int e = 0; e < 4; ++e) {
    r[e] = _mm512_shuffle_f32x4(t[e], t[8 + e], 0x88);           // j = 0
    r[4 + e] = _mm512_shuffle_f32x4(t[4 + e], t[12 + e], 0x88);  // j = 1
    r[8 + e] = _mm512_shuffle_f32x4(t[e], t[8 + e], 0xdd);       // j = 2
    r[12 + e] = _mm512_shuffle_f32x4(t[4 + e], t[12 + e], 0xdd); // j = 3
  }
  for (int k = 0; k < cols; ++k) _mm512_storeu_ps(dst + k * ldd, r[k]);
}

}  // namespace cpu
}  // namespace fusedrnn
