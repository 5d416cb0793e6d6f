// fp32 GEMM microkernel for AVX-512F (contract: gemm_kernel.h): tiles of up to 8 rows x 32
// columns held in 16 zmm accumulators, A broadcast from the packed group, B two aligned loads per
// k. The target is set by pragma because setuptools cannot give one file its own -m flags; the
// driver calls it only when __builtin_cpu_supports("avx512f").
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,avx512f")
#include <immintrin.h>

#include "cpu/gemm_kernel.h"

namespace fusedrnn {
namespace cpu {
namespace {

constexpr int MR = 8, NR = 32;

// Few rows give few independent FMA chains (latency 4, two pipes want >= 8 in flight), so small
// tiles keep S partial sums over alternating k and add them at the end.
template <int R>
void tile(int64_t kc, const float* A, const float* B, float alpha, float beta,
          const float* bias, float* C, int64_t ldc, int64_t nv) {
  constexpr int S = R == 1 ? 4 : (R <= 3 ? 2 : 1);
  __m512 acc[S][R][2];
#pragma GCC unroll 8
  for (int s = 0; s < S; ++s)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) acc[s][i][0] = acc[s][i][1] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + S <= kc; k += S) {
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) {
      const float* b = B + (k + s) * NR;
      const float* a = A + (k + s) * MR;
      const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i]);
        acc[s][i][0] = _mm512_fmadd_ps(ai, b0, acc[s][i][0]);
        acc[s][i][1] = _mm512_fmadd_ps(ai, b1, acc[s][i][1]);
      }
    }
  }
  for (; k < kc; ++k) {
    const float* b = B + k * NR;
    const float* a = A + k * MR;
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[0][i][0] = _mm512_fmadd_ps(ai, b0, acc[0][i][0]);
      acc[0][i][1] = _mm512_fmadd_ps(ai, b1, acc[0][i][1]);
    }
  }
#pragma GCC unroll 8
  for (int s = 1; s < S; ++s)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      acc[0][i][0] = _mm512_add_ps(acc[0][i][0], acc[s][i][0]);
      acc[0][i][1] = _mm512_add_ps(acc[0][i][1], acc[s][i][1]);
    }
  const __mmask16 m0 = nv >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nv) - 1);
  const __mmask16 m1 =
      nv >= 32 ? __mmask16(0xFFFF) : nv > 16 ? __mmask16((1u << (nv - 16)) - 1) : __mmask16(0);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    float* c = C + i * ldc;
    __m512 r0 = _mm512_mul_ps(va, acc[0][i][0]), r1 = _mm512_mul_ps(va, acc[0][i][1]);
    if (beta != 0.f) {  // beta == 0 must not read C (it may hold NaN)
      r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), r0);
      r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), r1);
    }
    if (bias) {
      r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(m0, bias));
      r1 = _mm512_add_ps(r1, _mm512_maskz_loadu_ps(m1, bias + 16));
    }
    _mm512_mask_storeu_ps(c, m0, r0);
    _mm512_mask_storeu_ps(c + 16, m1, r1);
  }
}

void kernel(int64_t mr, int64_t nv, int64_t kc, const float* Ap, const float* Bp, float alpha,
            float beta, const float* bias, float* C, int64_t ldc) {
  switch (mr) {
    case 1: return tile<1>(kc, Ap, Bp, alpha, beta, bias, C, ldc, nv);
    case 2: return tile<2>(kc, Ap, Bp, alpha, beta, bias, C, ldc, nv);
    case 3: return tile<3>(kc, Ap, Bp, alpha, beta, bias, C, ldc, nv);
    case 4: return tile<4>(kc, Ap, Bp, alpha, beta, bias, C, ldc, nv);
    case 5: return tile<5>(kc, Ap, Bp, alpha, beta, bias, C, ldc, nv);
    case 6: return tile<6>(kc, Ap, Bp, alpha, beta, bias, C, ldc, nv);
    case 7: return tile<7>(kc, Ap, Bp, alpha, beta, bias, C, ldc, nv);
    default: return tile<8>(kc, Ap, Bp, alpha, beta, bias, C, ldc, nv);
  }
}

}  // namespace

const GemmArch& gemm_arch_avx512() {
  static const GemmArch arch{MR, NR, 256, &kernel};
  return arch;
}

}  // namespace cpu
}  // namespace fusedrnn
#endif
