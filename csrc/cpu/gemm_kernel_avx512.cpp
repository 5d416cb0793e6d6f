// fp32 GEMM microkernel for AVX-512F (gemm_tile.h, contract: gemm_kernel.h): tiles of up to 8
// rows x 32 columns held in 16 zmm accumulators. The target is set by pragma because setuptools
// cannot give one file its own -m flags; the driver calls it only when
// __builtin_cpu_supports("avx512f").
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,avx512f")
#include <immintrin.h>

#include "cpu/gemm_tile.h"

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
};

}  // namespace

// kc = 512: the 64 KB chunk of a panel overflows L1 into L2, but C is loaded and stored half as
// often as with 256; measured 2-11% faster at the LSTM shapes of benchmarks/cpu_gemm.py (Zen 5).
const GemmArch& gemm_arch_avx512() {
  static const GemmArch arch{Avx512::MR, 2 * Avx512::L, 512, &gemm_tile::kernel<Avx512>};
  return arch;
}

}  // namespace cpu
}  // namespace fusedrnn
#endif
