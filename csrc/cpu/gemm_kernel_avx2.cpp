// fp32 GEMM microkernel for AVX2 + FMA (contract: gemm_kernel.h): tiles of up to 6 rows x 16
// columns held in 12 ymm accumulators (of 16 registers), A broadcast from the packed group, B two
// aligned loads per k. The target is set by pragma because setuptools cannot give one file its
// own -m flags; the driver calls it only when the CPU has AVX2 and FMA.
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx,avx2,fma")
#include <immintrin.h>

#include "cpu/gemm_kernel.h"

namespace fusedrnn {
namespace cpu {
namespace {

constexpr int MR = 6, NR = 16;

// Few rows give few independent FMA chains (latency 4, two pipes want >= 8 in flight), so small
// tiles keep S partial sums over alternating k and add them at the end.
// (Accumulators: S * R * 2 <= 12 for every R.)
// lda == 0: A packed (element (i,k) at A[k*MR + i]); else A row-major, (i,k) at A[i*lda + k]
// (the no-transpose case needs no packing: each k broadcasts one float of each of R rows).
template <int R, bool Direct>
void tile(int64_t kc, const float* A, int64_t lda, const float* B, float alpha, float beta,
          const float* bias, float* C, int64_t ldc, int64_t nv) {
  const int64_t ak = Direct ? 1 : MR, arow = Direct ? lda : 1;  // A strides: k, i
  constexpr int S = R == 1 ? 4 : (R <= 3 ? 2 : 1);
  __m256 acc[S][R][2];
#pragma GCC unroll 8
  for (int s = 0; s < S; ++s)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) acc[s][i][0] = acc[s][i][1] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + S <= kc; k += S) {
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) {
      const float* b = B + (k + s) * NR;
      const float* a = A + (k + s) * ak;
      const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const __m256 ai = _mm256_set1_ps(a[i * arow]);
        acc[s][i][0] = _mm256_fmadd_ps(ai, b0, acc[s][i][0]);
        acc[s][i][1] = _mm256_fmadd_ps(ai, b1, acc[s][i][1]);
      }
    }
  }
  for (; k < kc; ++k) {
    const float* b = B + k * NR;
    const float* a = A + k * ak;
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m256 ai = _mm256_set1_ps(a[i * arow]);
      acc[0][i][0] = _mm256_fmadd_ps(ai, b0, acc[0][i][0]);
      acc[0][i][1] = _mm256_fmadd_ps(ai, b1, acc[0][i][1]);
    }
  }
#pragma GCC unroll 8
  for (int s = 1; s < S; ++s)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      acc[0][i][0] = _mm256_add_ps(acc[0][i][0], acc[s][i][0]);
      acc[0][i][1] = _mm256_add_ps(acc[0][i][1], acc[s][i][1]);
    }
  // Lane j of the store masks is set when column j (resp. 8 + j) of the tile is in range.
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(nv)), lane);
  const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(nv) - 8), lane);
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    float* c = C + i * ldc;
    __m256 r0 = _mm256_mul_ps(va, acc[0][i][0]), r1 = _mm256_mul_ps(va, acc[0][i][1]);
    if (beta != 0.f) {  // beta == 0 must not read C (it may hold NaN)
      r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c, m0), r0);
      r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c + 8, m1), r1);
    }
    if (bias) {
      r0 = _mm256_add_ps(r0, _mm256_maskload_ps(bias, m0));
      r1 = _mm256_add_ps(r1, _mm256_maskload_ps(bias + 8, m1));
    }
    _mm256_maskstore_ps(c, m0, r0);
    _mm256_maskstore_ps(c + 8, m1, r1);
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
    default: return tile<6, Direct>(kc, Ap, lda, Bp, alpha, beta, bias, C, ldc, nv);
  }
}

void kernel(int64_t mr, int64_t nv, int64_t kc, const float* Ap, int64_t lda, const float* Bp,
            float alpha, float beta, const float* bias, float* C, int64_t ldc) {
  return lda ? kernel_of<true>(mr, nv, kc, Ap, lda, Bp, alpha, beta, bias, C, ldc)
             : kernel_of<false>(mr, nv, kc, Ap, lda, Bp, alpha, beta, bias, C, ldc);
}

}  // namespace

const GemmArch& gemm_arch_avx2() {
  static const GemmArch arch{MR, NR, 256, &kernel};
  return arch;
}

}  // namespace cpu
}  // namespace fusedrnn
#endif
