// The fp32 GEMM microkernel (contract: gemm_kernel.h), written once over an instruction-set
// traits type and instantiated by gemm_kernel_avx512.cpp and gemm_kernel_avx2.cpp. Include it
// after the TU's `#pragma GCC target`, so that the templates are compiled for that target.
//
// Isa provides: MR (tile rows), L (floats per vector; a B panel is NR = 2L columns), vector type
// V and mask type Mask, and static functions zero(), load(p) (64-byte aligned for AVX-512,
// 32-byte for AVX2), stream(p, v) (non-temporal store, same alignment), set1(x),
// fma(a, b, c) = a*b + c, add(a, b), mul(a, b), masks(nv, m0, m1)
// (the lanes of columns < nv in the first and second vector of a row), maskload(m, p) (masked-off
// lanes read as 0 and are never touched) and maskstore(p, m, v).
#pragma once

#include <cstdint>

#include "cpu/gemm_kernel.h"

namespace fusedrnn {
namespace cpu {
namespace gemm_tile {

// Few rows give few independent FMA chains (latency 4, two pipes want >= 8 in flight), so small
// tiles keep S partial sums over alternating k and add them at the end; S * R * 2 accumulators
// stay within the register file for every R <= MR (12 of 16 ymm, 16 of 32 zmm).
// lda == 0: A packed (element (i,k) at A[k*MR + i]); else A row-major, (i,k) at A[i*lda + k]
// (the no-transpose case needs no packing: each k broadcasts one float of each of R rows).
template <class Isa, int R, bool Direct>
void tile(int64_t kc, const float* A, int64_t lda, const float* B, float alpha, float beta,
          const float* bias, float* C, int64_t ldc, int64_t nv, bool stream) {
  using V = typename Isa::V;
  constexpr int L = Isa::L, NR = 2 * L;
  const int64_t ak = Direct ? 1 : Isa::MR, arow = Direct ? lda : 1;  // A strides: k, i
  constexpr int S = R == 1 ? 4 : (R <= 3 ? 2 : 1);
  V acc[S][R][2];
#pragma GCC unroll 8
  for (int s = 0; s < S; ++s)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) acc[s][i][0] = acc[s][i][1] = Isa::zero();
  int64_t k = 0;
  for (; k + S <= kc; k += S) {
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) {
      const float* b = B + (k + s) * NR;
      const float* a = A + (k + s) * ak;
      const V b0 = Isa::load(b), b1 = Isa::load(b + L);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const V ai = Isa::set1(a[i * arow]);
        acc[s][i][0] = Isa::fma(ai, b0, acc[s][i][0]);
        acc[s][i][1] = Isa::fma(ai, b1, acc[s][i][1]);
      }
    }
  }
  for (; k < kc; ++k) {
    const float* b = B + k * NR;
    const float* a = A + k * ak;
    const V b0 = Isa::load(b), b1 = Isa::load(b + L);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const V ai = Isa::set1(a[i * arow]);
      acc[0][i][0] = Isa::fma(ai, b0, acc[0][i][0]);
      acc[0][i][1] = Isa::fma(ai, b1, acc[0][i][1]);
    }
  }
#pragma GCC unroll 8
  for (int s = 1; s < S; ++s)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      acc[0][i][0] = Isa::add(acc[0][i][0], acc[s][i][0]);
      acc[0][i][1] = Isa::add(acc[0][i][1], acc[s][i][1]);
    }
  typename Isa::Mask m0, m1;
  Isa::masks(nv, m0, m1);
  const V va = Isa::set1(alpha), vb = Isa::set1(beta);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    float* c = C + i * ldc;
    V r0 = Isa::mul(va, acc[0][i][0]), r1 = Isa::mul(va, acc[0][i][1]);
    if (beta != 0.f) {  // beta == 0 must not read C (it may hold NaN)
      r0 = Isa::fma(vb, Isa::maskload(m0, c), r0);
      r1 = Isa::fma(vb, Isa::maskload(m1, c + L), r1);
    }
    if (bias) {
      r0 = Isa::add(r0, Isa::maskload(m0, bias));
      r1 = Isa::add(r1, Isa::maskload(m1, bias + L));
    }
    if (stream && nv == NR && reinterpret_cast<uintptr_t>(c) % 64 == 0) {
      Isa::stream(c, r0), Isa::stream(c + L, r1);
    } else {
      Isa::maskstore(c, m0, r0);
      Isa::maskstore(c + L, m1, r1);
    }
  }
}

// tile<R> for R = mr (mr > MR runs MR rows, as the driver never asks for more).
template <class Isa, bool Direct, int R = 1>
void tile_rows(int64_t mr, int64_t nv, int64_t kc, const float* Ap, int64_t lda, const float* Bp,
               float alpha, float beta, const float* bias, float* C, int64_t ldc, bool stream) {
  if constexpr (R < Isa::MR) {
    if (mr != R)
      return tile_rows<Isa, Direct, R + 1>(mr, nv, kc, Ap, lda, Bp, alpha, beta, bias, C, ldc,
                                           stream);
  }
  tile<Isa, R, Direct>(kc, Ap, lda, Bp, alpha, beta, bias, C, ldc, nv, stream);
}

// The GemmKernel of Isa.
template <class Isa>
void kernel(int64_t mr, int64_t nv, int64_t kc, const float* Ap, int64_t lda, const float* Bp,
            float alpha, float beta, const float* bias, float* C, int64_t ldc, bool stream) {
  return lda ? tile_rows<Isa, true>(mr, nv, kc, Ap, lda, Bp, alpha, beta, bias, C, ldc, stream)
             : tile_rows<Isa, false>(mr, nv, kc, Ap, lda, Bp, alpha, beta, bias, C, ldc, stream);
}

}  // namespace gemm_tile
}  // namespace cpu
}  // namespace fusedrnn
