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
// lda == 0: A packed (element (i,k) at A[k*MR + i]); else A row-major, (i,k) at A[i*lda + k]
// (the no-transpose case needs no packing: each k broadcasts one float of each of R rows).
template <int R, bool Direct>
void tile(int64_t kc, const float* A, int64_t lda, const float* B, float alpha, float beta,
          const float* bias, float* C, int64_t ldc, int64_t nv) {
  const int64_t ak = Direct ? 1 : MR, arow = Direct ? lda : 1;  // A strides: k, i
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
      const float* a = A + (k + s) * ak;
      const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i * arow]);
        acc[s][i][0] = _mm512_fmadd_ps(ai, b0, acc[s][i][0]);
        acc[s][i][1] = _mm512_fmadd_ps(ai, b1, acc[s][i][1]);
      }
    }
  }
  for (; k < kc; ++k) {
    const float* b = B + k * NR;
    const float* a = A + k * ak;
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i * arow]);
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

template <bool Direct>
void kernel_of(int64_t mr, int64_t nv, int64_t kc, const float* Ap, int64_t lda, const float* Bp,
               float alpha, float beta, const float* bias, float* C, int64_t ldc) {
  switch (mr) {
    case 1: return tile<1, Direct>(kc, Ap, lda, Bp, alpha, beta, bias, C, ldc, nv);
    case 2: return tile<2, Direct>(kc, Ap, lda, Bp, alpha, beta, bias, C, ldc, nv);
    case 3: return tile<3, Direct>(kc, Ap, lda, Bp, alpha, beta, bias, C, ldc, nv);
    case 4: return tile<4, Direct>(kc, Ap, lda, Bp, alpha, beta, bias, C, ldc, nv);
    case 5: return tile<5, Direct>(kc, Ap, lda, Bp, alpha, beta, bias, C, ldc, nv);
    case 6: return tile<6, Direct>(kc, Ap, lda, Bp, alpha, beta, bias, C, ldc, nv);
    case 7: return tile<7, Direct>(kc, Ap, lda, Bp, alpha, beta, bias, C, ldc, nv);
    default: return tile<8, Direct>(kc, Ap, lda, Bp, alpha, beta, bias, C, ldc, nv);
  }
}

void kernel(int64_t mr, int64_t nv, int64_t kc, const float* Ap, int64_t lda, const float* Bp,
            float alpha, float beta, const float* bias, float* C, int64_t ldc) {
  return lda ? kernel_of<true>(mr, nv, kc, Ap, lda, Bp, alpha, beta, bias, C, ldc)
             : kernel_of<false>(mr, nv, kc, Ap, lda, Bp, alpha, beta, bias, C, ldc);
}

}  // namespace

const GemmArch& gemm_arch_avx512() {
  static const GemmArch arch{MR, NR, 256, &kernel};
  return arch;
}

}  // namespace cpu
}  // namespace fusedrnn
#endif
