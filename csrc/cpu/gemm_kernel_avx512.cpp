// fp32 GEMM microkernel for AVX-512F (gemm_tile.h, contract: gemm_kernel.h): tiles of up to 8
// rows x 32 columns held in 16 zmm accumulators. The target is set by pragma because setuptools
// cannot give one file its own -m flags; the driver calls it only when
// __builtin_cpu_supports("avx512f").
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,avx512f")
#include <immintrin.h>

#include <algorithm>

#include "cpu/gemm_thin.h"
#include "cpu/gemm_tile.h"
#include "cpu/transpose16.h"

namespace fusedrnn {
namespace cpu {
namespace {

struct Avx512 {
  static constexpr int MR = 8, L = 16;
  using V = __m512;
  using Mask = __mmask16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static void stream(float* p, V v) { _mm512_stream_ps(p, v); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static void masks(int64_t nv, Mask& m0, Mask& m1) {
    m0 = nv >= 16 ? Mask(0xFFFF) : Mask((1u << nv) - 1);
    m1 = nv >= 32 ? Mask(0xFFFF) : nv > 16 ? Mask((1u << (nv - 16)) - 1) : Mask(0);
  }
  static V maskload(Mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void maskstore(float* p, Mask m, V v) { _mm512_mask_storeu_ps(p, m, v); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static Mask mask1(int64_t n) {
    return n >= L ? Mask(0xFFFF) : n <= 0 ? Mask(0) : Mask((1u << n) - 1);
  }
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }
};

// Two 16 x 16 transposes per 16 k: a 32-column panel of B^T from 32 rows of B.
void pack_t(const float* B, int64_t ldb, int64_t K, int64_t n0, int64_t w, float* d) {
  for (int64_t h = 0; h < 2; ++h) {
    const int rows = int(std::max<int64_t>(0, std::min<int64_t>(16, w - 16 * h)));
    for (int64_t k0 = 0; k0 < K; k0 += 16)
      transpose16(B + (n0 + 16 * h) * ldb + k0, ldb, rows, int(std::min<int64_t>(16, K - k0)),
                  d + k0 * 32 + 16 * h, 32);
  }
}

}  // namespace

// kc = 512: the 64 KB chunk of a panel overflows L1 into L2, but C is loaded and stored half as
// often as with 256; measured 2-11% faster at the LSTM shapes of benchmarks/cpu_gemm.py (Zen 5).
const GemmArch& gemm_arch_avx512() {
  static const GemmArch arch{Avx512::MR, 2 * Avx512::L, 512, &gemm_tile::kernel<Avx512>,
                                &pack_t, &gemm_thin::product<Avx512>};
  return arch;
}

}  // namespace cpu
}  // namespace fusedrnn
#endif
