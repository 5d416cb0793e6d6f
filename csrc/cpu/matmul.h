// The GEMMs of the cell implementations, by scalar type: fp32 runs the backend's own GEMM
// (gemm.h), fp64 the BLAS of torch (common.h: gemm_rm), as torch.nn does.
//
// Weight<S>: op(B) [K,N] prepared once (packed for fp32) and multiplied many times:
//   w.mul(M, ta, A, lda, beta, C, ldc, bias): C[M,N] = op(A) op(B) + beta * C (+ bias [N]).
// matmul<S>(...): the one-shot form, same conventions as gemm_rm plus the nullable bias and, for
// fp32, gemm.h's stream hint.
// matmul_weight<S>(...): matmul<S> where B is a weight (its packed copy then recurs in the buffer
// cache whatever the call's shapes, as Weight's does).
// B (and bias) must outlive the Weight; C must not alias A, B or bias; beta == 0 never reads C.
// fp32 products whose B serves fewer than kPackMinRows rows in all (a one-shot matmul with small
// M and A read in place; a Weight given rows < kPackMinRows) leave B unpacked: PackedB's thin
// kernels (gemm_thin.h) or BLAS path.
#pragma once

#include "cpu/common.h"
#include "cpu/gemm.h"

#include <cstdlib>
#include <optional>
#include <utility>

namespace fusedrnn {
namespace cpu {

namespace detail {
// C = beta * C + bias, then beta = 1: how the BLAS path gets the bias epilogue.
template <class S>
inline void pre_bias(int64_t M, int64_t N, const S* bias, S& beta, S* C, int64_t ldc) {
  if (!bias) return;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j)
      C[i * ldc + j] = (beta == S(0) ? S(0) : beta * C[i * ldc + j]) + bias[j];
  beta = S(1);
}
}  // namespace detail

// Packing B reads and writes all of it, which only pays when enough rows use it: single steps
// (T=1 B=1 H=512, two threads) of GRU ran at ~0.8x and RNN at ~0.6x of torch.nn's inference with
// their 3 MB / 1 MB weights packed per call. Up to 16 rows the thin kernels (gemm_thin.h) read B
// as stored in passes of 4 rows, which still costs less than packing it (a [2048,512] B, 16 rows:
// ~1.1 ms thin, ~1.6 ms packing included, one thread).
constexpr int64_t kPackMinRows = 17;

// rows: how many rows the Weight will multiply over all its uses (fp32 packs from kPackMinRows).
template <class S>
struct Weight {
  bool tb;
  int64_t K, N;
  const S* B;
  int64_t ldb;
  Weight(bool tb_, int64_t K_, int64_t N_, const S* B_, int64_t ldb_, int64_t /*rows*/)
      : tb(tb_), K(K_), N(N_), B(B_), ldb(ldb_) {}
  void mul(int64_t M, bool ta, const S* A, int64_t lda, S beta, S* C, int64_t ldc,
           const S* bias = nullptr) const;
};

template <>
struct Weight<float> {
  PackedB packed;
  Weight(bool tb, int64_t K, int64_t N, const float* B, int64_t ldb, int64_t rows)
      : packed(pack(tb, K, N, B, ldb, rows >= kPackMinRows)) {}
  void mul(int64_t M, bool ta, const float* A, int64_t lda, float beta, float* C, int64_t ldc,
           const float* bias = nullptr) const {
    gemm_packed(M, 1.f, ta, A, lda, packed, beta, C, ldc, bias);
  }

 private:
  // A weight's buffer has the same size whatever the call's shapes (the cache's rule).
  static PackedB pack(bool tb, int64_t K, int64_t N, const float* B, int64_t ldb, bool pk) {
    const WeightBuffers sized_by_weights;
    return PackedB(tb, K, N, B, ldb, pk);
  }
};

template <class S>
inline void matmul(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const S* A, int64_t lda,
                   const S* B, int64_t ldb, S beta, S* C, int64_t ldc, const S* bias = nullptr,
                   bool stream = false) {
  if (M == 0 || N == 0) return;
  if constexpr (std::is_same_v<S, float>) {
    const PackedB pb(tb, K, N, B, ldb, ta || M >= kPackMinRows, /*lazy=*/true);
    gemm_packed(M, 1.f, ta, A, lda, pb, beta, C, ldc, bias, stream);
  } else {
    detail::pre_bias(M, N, bias, beta, C, ldc);
    if (K == 0) {
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j)
          C[i * ldc + j] = beta == S(0) ? S(0) : beta * C[i * ldc + j];
      return;
    }
    gemm_rm<S>(ta, tb, M, N, K, S(1), A, lda, B, ldb, beta, C, ldc);
  }
}

// matmul<S> whose B is a weight: B's packed copy has the same size whatever the call's shapes,
// which the buffer cache must know (big_buffer.h: WeightBuffers).
template <class S, class... Args>
inline void matmul_weight(Args&&... args) {
  const WeightBuffers sized_by_weights;
  matmul<S>(std::forward<Args>(args)...);
}

// The input projection out = x W_ih^T + bias of a layer call (x [N,I], w_ih [G,I], out [N,G]
// with row stride ldo, bias [G] nullable). Hoisted: one GEMM over all rows before the time loop,
// W_ih read once per call (an LSTM of B <= 8 then runs its loop as a thin sweep, lstm_sweep.h). Per
// step (step(off, n): rows off .. off+n-1, just before the recurrent product adds to them) only
// with FUSEDRNN_CPU_HOIST=0, for measurements: it was the rule for 4 <= B < 32 (gates without a
// round trip through memory, ~6% faster at B=8 H=512 on a Zen 4 with 1 MB of L2), but reading
// W_ih every step beside W_hh pushes both out of cache once they pass L2. On the 2-core Xeon
// (2 MB L2 a core), T=100 forward, hoisted against per step: LSTM B=4 H=512 AVX2 17.6 -> 10.0 ms,
// AVX-512 15.1 -> 6.4, B=8 H=512 26.3 -> 18.4 / 17.7 -> 11.3, B=16 H=1024 164.6 -> 153.1 /
// 108.1 -> 98.2; GRU B=4 H=512 AVX-512 10.1 -> 4.9, RNN B=8 H=1024 15.9 -> 10.8; none slower
// beyond noise. stream: the hoisted product may bypass the cache (gemm.h), for a reader that
// prefetches its rows.
template <class S>
struct InputProjection {
  const S* x;
  int64_t I;
  const S* bias;
  S* out;
  int64_t ldo;
  bool hoisted;
  std::optional<Weight<S>> w;

  InputProjection(const Steps& st, const S* x_, int64_t I_, const S* w_ih, int64_t G,
                  const S* bias_, S* out_, int64_t ldo_, bool stream = false)
      : x(x_), I(I_), bias(bias_), out(out_), ldo(ldo_) {
    const char* env = std::getenv("FUSEDRNN_CPU_HOIST");
    hoisted = !(env && env[0] == '0');
    if (hoisted) {
      matmul_weight<S>(false, true, st.N, G, I, x, I, w_ih, I, S(0), out, ldo, bias, stream);
    } else {
      w.emplace(true, I, G, w_ih, I, st.N);
    }
  }
  void step(int64_t off, int64_t n) const {
    if (!hoisted) w->mul(n, false, x + off * I, I, S(0), out + off * ldo, ldo, bias);
  }
};

template <class S>
inline void Weight<S>::mul(int64_t M, bool ta, const S* A, int64_t lda, S beta, S* C, int64_t ldc,
                           const S* bias) const {
  matmul<S>(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc, bias);
}

}  // namespace cpu
}  // namespace fusedrnn
