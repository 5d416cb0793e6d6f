// An 8 x 8 fp32 block transpose in AVX registers, for packing W_hh into the AVX2 fused LSTM
// step's 8-unit panels (lstm_step.h). Include it after the TU's `#pragma GCC target` (AVX2).
//
// transpose8(src, lds, rows, cols, dst, ldd): dst[k*ldd + u] = src[u*lds + k] for k < cols,
// u < 8, with 0 for u >= rows. Reads only src rows u < rows, columns k < cols; writes the 8 floats
// of dst rows k < cols. 1 <= cols <= 8, 0 <= rows <= 8; src and dst must not overlap.
// Why: as transpose16.h's, eight floats per load and store instead of one.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace fusedrnn {
namespace cpu {

static inline void transpose8(const float* src, int64_t lds, int rows, int cols, float* dst,
                              int64_t ldd) {
  const __m256i kmask =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256 r[8], t[8];
  for (int u = 0; u < 8; ++u)
    r[u] = u < rows ? _mm256_maskload_ps(src + u * lds, kmask) : _mm256_setzero_ps();
  // Within each 128-bit half (columns 4h..4h+3): pairs of rows interleaved, ...
  for (int u = 0; u < 8; u += 2) {
    t[u] = _mm256_unpacklo_ps(r[u], r[u + 1]);      // r0c0 r1c0 r0c1 r1c1 | c4, c5
    t[u + 1] = _mm256_unpackhi_ps(r[u], r[u + 1]);  // c2, c3 | c6, c7
  }
  // ... then quads: r[4a + e] half h holds column 4h+e of rows 4a..4a+3.
  for (int a = 0; a < 2; ++a) {
    r[4 * a] = _mm256_shuffle_ps(t[4 * a], t[4 * a + 2], 0x44);
    r[4 * a + 1] = _mm256_shuffle_ps(t[4 * a], t[4 * a + 2], 0xEE);
    r[4 * a + 2] = _mm256_shuffle_ps(t[4 * a + 1], t[4 * a + 3], 0x44);
    r[4 * a + 3] = _mm256_shuffle_ps(t[4 * a + 1], t[4 * a + 3], 0xEE);
  }
  // Column k = 4h + e: half h of rows 0-3 (r[e]) next to half h of rows 4-7 (r[4 + e]).
  for (int e = 0; e < 4; ++e) {
    t[e] = _mm256_permute2f128_ps(r[e], r[4 + e], 0x20);
    t[4 + e] = _mm256_permute2f128_ps(r[e], r[4 + e], 0x31);
  }
  for (int k = 0; k < cols; ++k) _mm256_storeu_ps(dst + k * ldd, t[k]);
}

}  // namespace cpu
}  // namespace fusedrnn
