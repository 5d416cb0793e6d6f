// fp32 GEMM microkernel for AVX2 + FMA (gemm_tile.h, contract: gemm_kernel.h): tiles of up to 6
// rows x 16 columns held in 12 ymm accumulators (of 16 registers). The target is set by pragma
// because setuptools cannot give one file its own -m flags; the driver calls it only when the CPU
// has AVX2 and FMA.
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx,avx2,fma")
#include <immintrin.h>

#include <algorithm>

#include "cpu/gemm_thin.h"
#include "cpu/gemm_tile.h"
#include "cpu/transpose8.h"

namespace fusedrnn {
namespace cpu {
namespace {

struct Avx2 {
  static constexpr int MR = 6, L = 8;
  using V = __m256;
  using Mask = __m256i;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static void stream(float* p, V v) { _mm256_stream_ps(p, v); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  // Lane j is set when column j (resp. 8 + j) of the tile is in range.
  static void masks(int64_t nv, Mask& m0, Mask& m1) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(nv)), lane);
    m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(nv) - 8), lane);
  }
  static V maskload(Mask m, const float* p) { return _mm256_maskload_ps(p, m); }
  static void maskstore(float* p, Mask m, V v) { _mm256_maskstore_ps(p, m, v); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static Mask mask1(int64_t n) {
    const int c = int(std::max<int64_t>(0, std::min<int64_t>(L, n)));
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static float hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  // out[i] = the sum of v[i]'s lanes, i < 8: one tree of horizontal adds for the eight (11
  // shuffle-port operations instead of 24 for eight hsum()s).
  static void hsum8(const V* v, float* out) {
    const V u0 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const V u1 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                                        _mm256_permute2f128_ps(u0, u1, 0x31)));
  }
};

// Two 8 x 8 transposes per 8 k: a 16-column panel of B^T from 16 rows of B. (The driver's scalar
// loop packed W_ih [512,128] in ~20 us, 3x its copy time; T=20 B=8 H=128 packs it every call.)
void pack_t(const float* B, int64_t ldb, int64_t K, int64_t n0, int64_t w, float* d) {
  for (int64_t h = 0; h < 2; ++h) {
    const int rows = int(std::max<int64_t>(0, std::min<int64_t>(8, w - 8 * h)));
    for (int64_t k0 = 0; k0 < K; k0 += 8)
      transpose8(B + (n0 + 8 * h) * ldb + k0, ldb, rows, int(std::min<int64_t>(8, K - k0)),
                 d + k0 * 16 + 8 * h, 16);
  }
}

}  // namespace

const GemmArch& gemm_arch_avx2() {
  static const GemmArch arch{Avx2::MR, 2 * Avx2::L, 256, &gemm_tile::kernel<Avx2>, &pack_t,
                               &gemm_thin::product<Avx2>};
  return arch;
}

}  // namespace cpu
}  // namespace fusedrnn
#endif
