// Internal interface between the GEMM driver (gemm.cpp) and the per-instruction-set microkernels
// (gemm_kernel_avx512.cpp, gemm_kernel_avx2.cpp).
//
// A microkernel computes one tile C[mr, nv] (row stride ldc), 1 <= mr <= MR, 1 <= nv <= NR:
//   C = alpha * sum_k Ap[k*MR + i] * Bp[k*NR + j] + beta * C + bias[j]
// (beta == 0: C is not read; bias nullable, [nv] floats).
// stream: full-width rows (nv == NR, C row 64-byte aligned) are written with non-temporal stores,
// which skip reading the lines into cache first; the caller sets it only for outputs too large to
// stay in cache, and issues a store fence before others read C.
// Ap: lda == 0: kc groups of MR floats (rows of the tile, k-major; entries i >= mr ignored);
//     lda > 0: the tile's rows of a row-major A, element (i,k) at Ap[i*lda + k].
// Bp: kc rows of NR floats, 64-byte aligned (columns j >= nv are computed, never stored).
#pragma once

#include <cstdint>

namespace fusedrnn {
namespace cpu {

using GemmKernel = void (*)(int64_t mr, int64_t nv, int64_t kc, const float* Ap, int64_t lda,
                            const float* Bp, float alpha, float beta, const float* bias, float* C,
                            int64_t ldc, bool stream);

// Packs panel n0 .. n0+w-1 (w <= NR) of op(B) = B^T, B [N,K] with row stride ldb: d[k*NR + c] =
// B[(n0+c)*ldb + k] for k < K, c < NR (0 for c >= w); d 64-byte aligned.
using GemmPackT = void (*)(const float* B, int64_t ldb, int64_t K, int64_t n0, int64_t w,
                           float* d);

// Thin product on B as stored (gemm_thin.h): C[i, n0..n1) for rows i < M of a row-major A,
//   C = alpha * A op(B) + beta * C + bias[n], op(B) = B^T (tb, B [N,K]) or B (B [K,N]);
// row strides lda, ldb, ldc; beta == 0 does not read C; bias nullable ([N]).
using GemmThin = void (*)(int64_t M, bool tb, int64_t n0, int64_t n1, int64_t K, const float* A,
                          int64_t lda, const float* B, int64_t ldb, float alpha, float beta,
                          const float* bias, float* C, int64_t ldc);

struct GemmArch {
  int mr, nr, kc;  // tile rows, panel width, K chunk (per call of the kernel; measured per ISA)
  GemmKernel kernel;
  GemmPackT pack_t;  // null: the driver's scalar loop
  GemmThin thin;
};

#if defined(__x86_64__) && defined(__GNUC__)
const GemmArch& gemm_arch_avx512();
const GemmArch& gemm_arch_avx2();
#endif

}  // namespace cpu
}  // namespace fusedrnn
