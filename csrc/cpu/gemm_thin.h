// Thin products without packing (contract: gemm_kernel.h, GemmThin), written once over the same
// instruction-set traits as gemm_tile.h and instantiated by gemm_kernel_avx512.cpp and
// gemm_kernel_avx2.cpp after their `#pragma GCC target`.
//
// Why: a product of a few rows (a single time step at B <= 4) reads each weight once, so packing
// the weight first (read it, write it, read it again) costs more than the product, and the BLAS
// fallback was MKL's generic gemv on AMD CPUs: T=1 B=1 H=512 LSTM spent ~25% of its time in
// mkl_blas_def_xsgemv and ~28% packing W_hh. These read B as stored:
//   tb (B is [N,K]): C[i,n] = dot(A[i,:], B[n,:]), K contiguous in both, reduced per output;
//   !tb (B is [K,N]): C[i,:] = sum_k A[i,k] B[k,:], a row of B per k, N contiguous.
// Extra traits over gemm_tile.h's: loadu(p)/storeu(p, v) (unaligned), hsum(v) (sum of lanes),
// on AVX2 hsum8(v, out) (the sums of eight vectors), mask1(n) (the first n lanes of one vector;
// n may exceed L).
#pragma once

#include <algorithm>
#include <cstdint>

#include "cpu/gemm_kernel.h"

namespace fusedrnn {
namespace cpu {
namespace gemm_thin {

// Epilogue of one output: alpha * s + beta * c + bias (beta == 0 does not read c).
inline float finish(float s, float alpha, float beta, const float* c, const float* bias,
                    int64_t n) {
  return alpha * s + (beta == 0.f ? 0.f : beta * *c) + (bias ? bias[n] : 0.f);
}

// tb: R rows of A against NJ rows of B at a time; R x NJ vector accumulators, reduced at the end.
template <class Isa, int R>
void dot_rows(int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda, const float* B,
              int64_t ldb, float alpha, float beta, const float* bias, float* C, int64_t ldc) {
  using V = typename Isa::V;
  constexpr int L = Isa::L;
  // Accumulators + A vectors + one B vector within the register file (16 ymm / 32 zmm).
  constexpr int NJ = (L == 16 ? R <= 4 : R <= 2) ? 4 : 2;
  const int64_t kv = K / L * L;
  for (int64_t n = n0; n < n1; n += NJ) {
    const float* b[NJ];
#pragma GCC unroll 8
    for (int j = 0; j < NJ; ++j) b[j] = B + std::min(n + j, n1 - 1) * ldb;  // repeats: not stored
    V acc[R][NJ];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NJ; ++j) acc[i][j] = Isa::zero();
    for (int64_t k = 0; k < kv; k += L) {
      V a[R];
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        a[i] = Isa::loadu(A + i * lda + k);
#if defined(__GNUC__)
        // in a register: GCC otherwise folds the load into each of the NJ FMAs that use it
        // (NJ loads instead of one; on AVX2 10 loads for 8 FMAs, load-bound)
        asm("" : "+v"(a[i]));
#endif
      }
#pragma GCC unroll 8
      for (int j = 0; j < NJ; ++j) {
        const V w = Isa::loadu(b[j] + k);
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) acc[i][j] = Isa::fma(a[i], w, acc[i][j]);
      }
    }
    // The R x NJ sums; on AVX2 with eight of them (R = 4 or 2) in one tree (Isa::hsum8): one
    // sum at a time was ~25% of a 16-row product's time at K = 256.
    float sum[R * NJ];
    if constexpr (Isa::L == 8 && R * NJ == 8) {
      Isa::hsum8(&acc[0][0], sum);  // acc is R * NJ vectors in that order
    } else {
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NJ; ++j) sum[i * NJ + j] = Isa::hsum(acc[i][j]);
    }
    for (int j = 0; j < NJ && n + j < n1; ++j)
      for (int i = 0; i < R; ++i) {
        float s = sum[i * NJ + j];
        for (int64_t k = kv; k < K; ++k) s += A[i * lda + k] * b[j][k];
        float* c = C + i * ldc + n + j;
        *c = finish(s, alpha, beta, c, bias, n + j);
      }
  }
}

// The [K,N] kernel's rows of B are ldb apart (pages apart from N = 1024 on), where the hardware
// prefetchers stop: it asks for its part of the row this many rows ahead (M = 16, N = 4096,
// K = 1024 on AVX-512: 1950 -> 1250-1340 µs; 24 ahead measured slower than 4-12).
constexpr int64_t kThinAhead = 8;

// !tb: R rows of C, NV vectors of columns at a time, one broadcast of A per row and k.
template <class Isa, int R>
void axpy_rows(int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda, const float* B,
               int64_t ldb, float alpha, float beta, const float* bias, float* C, int64_t ldc) {
  using V = typename Isa::V;
  constexpr int L = Isa::L;
  constexpr int NV = (L == 16 ? R <= 4 : R <= 2) ? 4 : 2;
  for (int64_t n = n0; n < n1; n += NV * L) {
    typename Isa::Mask m[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) m[v] = Isa::mask1(n1 - n - v * L);
    V acc[R][NV];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = Isa::zero();
    const bool full = n + NV * L <= n1;
    for (int64_t k = 0; k < K; ++k) {
      const float* bk = B + k * ldb + n;
      if (k + kThinAhead < K) {
#pragma GCC unroll 8
        for (int v = 0; v < NV * L * int(sizeof(float)) / 64; ++v)
          __builtin_prefetch(bk + kThinAhead * ldb + v * 16, 0, 3);
      }
      V w[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v)
        w[v] = full ? Isa::loadu(bk + v * L) : Isa::maskload(m[v], bk + v * L);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const V a = Isa::set1(A[i * lda + k]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[i][v] = Isa::fma(a, w[v], acc[i][v]);
      }
    }
    alignas(64) float out[NV * L];
    for (int i = 0; i < R; ++i) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) Isa::storeu(out + v * L, acc[i][v]);
      float* c = C + i * ldc;
      for (int64_t j = n, e = std::min(n1, n + NV * L); j < e; ++j)
        c[j] = finish(out[j - n], alpha, beta, c + j, bias, j);
    }
  }
}

template <class Isa, int R>
void rows(bool tb, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda,
          const float* B, int64_t ldb, float alpha, float beta, const float* bias, float* C,
          int64_t ldc) {
  (tb ? dot_rows<Isa, R> : axpy_rows<Isa, R>)(n0, n1, K, A, lda, B, ldb, alpha, beta, bias, C,
                                              ldc);
}

// Floats of B per column block when more than 4 rows take several passes over it: the block
// stays in L2 (256 KB) for every pass, so B comes from memory once instead of once per 4 rows.
// Measured on the 2-core Xeon, single steps at B = 16 and H = 1024 (12-16 MB of weights, four
// passes read 48-64 MB from L3 each step): see the README's serving table.
constexpr int64_t kThinBlockFloats = 64 << 10;

// GemmThin: rows 0..M-1, columns n0..n1-1, in passes of up to 4 rows of A (8-row passes measured
// no faster per row on AVX-512); with more than 4 rows, column block by column block
// (kThinBlockFloats, multiples of 64 columns). Each output's sum runs in the same order either
// way, so the blocking changes no result.
template <class Isa>
void product(int64_t M, bool tb, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda,
             const float* B, int64_t ldb, float alpha, float beta, const float* bias, float* C,
             int64_t ldc) {
  const int64_t per64 = kThinBlockFloats / std::max<int64_t>(1, K) / 64;
  const int64_t nb = M <= 4 ? n1 - n0 : std::max<int64_t>(1, per64) * 64;
  for (int64_t b0 = n0; b0 < n1; b0 += nb) {
    const int64_t b1 = std::min(n1, b0 + nb);
    for (int64_t i = 0; i < M; i += 4) {
      const float* a = A + i * lda;
      float* c = C + i * ldc;
      switch (std::min<int64_t>(4, M - i)) {
        case 1: rows<Isa, 1>(tb, b0, b1, K, a, lda, B, ldb, alpha, beta, bias, c, ldc); break;
        case 2: rows<Isa, 2>(tb, b0, b1, K, a, lda, B, ldb, alpha, beta, bias, c, ldc); break;
        case 3: rows<Isa, 3>(tb, b0, b1, K, a, lda, B, ldb, alpha, beta, bias, c, ldc); break;
        default: rows<Isa, 4>(tb, b0, b1, K, a, lda, B, ldb, alpha, beta, bias, c, ldc); break;
      }
    }
  }
}

}  // namespace gemm_thin
}  // namespace cpu
}  // namespace fusedrnn
