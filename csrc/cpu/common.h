// Helpers of the CPU backend: raw-pointer row-major GEMM (no allocation, no dispatcher: safe and
// cheap inside the time loop), the threaded pointwise loop, and the sequence bookkeeping.
//
// gemm_rm: C[M,N] = alpha * op(A) op(B) + beta * C, all row-major with leading dimensions
// (row strides) lda, ldb, ldc; op(X) = X^T when the flag is set. C must not alias A or B.
#pragma once

#include <ATen/Parallel.h>
#include <torch/extension.h>

#include "ops.h"

// The Fortran BLAS that torch's CPU library carries (MKL or OpenBLAS) exports these; they are
// declared weak so that a torch without them still loads and takes the ATen fallback below.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
            const float*, const int*, const float*, const int*, const float*, float*,
            const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*,
            const double*, const int*, const double*, const int*, const double*, double*,
            const int*) __attribute__((weak));
}

namespace fusedrnn {
namespace cpu {

namespace detail {
inline auto fortran_gemm(float*) { return sgemm_; }
inline auto fortran_gemm(double*) { return dgemm_; }
}  // namespace detail

template <class S>
inline void gemm_rm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, S alpha, const S* A,
                    int64_t lda, const S* B, int64_t ldb, S beta, S* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  TORCH_CHECK(K > 0 && M < INT32_MAX && N < INT32_MAX && K < INT32_MAX,
              "fusedrnn: GEMM size out of range");
  if (auto gemm = detail::fortran_gemm((S*)nullptr)) {
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
    const int m = int(N), n = int(M), k = int(K), la = int(ldb), lb = int(lda), lc = int(ldc);
    const char a_t = tb ? 'T' : 'N', b_t = ta ? 'T' : 'N';
    gemm(&a_t, &b_t, &m, &n, &k, &alpha, B, &la, A, &lb, &beta, C, &lc);
    return;
  }
  auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<S>::value);
  auto a = at::from_blob(const_cast<S*>(A), {ta ? K : M, ta ? M : K}, {lda, 1}, opt);
  auto b = at::from_blob(const_cast<S*>(B), {tb ? N : K, tb ? K : N}, {ldb, 1}, opt);
  auto c = at::from_blob(C, {M, N}, {ldc, 1}, opt);
  at::addmm_out(c, c, ta ? a.t() : a, tb ? b.t() : b, beta, alpha);
}

// Runs fn(begin, end) over [0, n) elements; tiny work stays on the calling thread because
// waking the pool costs more than a few thousand transcendental evaluations.
template <class F>
inline void pointwise_for(int64_t n, const F& fn) {
  constexpr int64_t kGrain = 16384;
  if (n <= kGrain) {
    fn(int64_t(0), n);
  } else {
    at::parallel_for(0, n, kGrain, fn);
  }
}

// Time index of the s-th processed step.
inline int64_t time_of(int64_t s, int64_t T, bool reverse) { return reverse ? T - 1 - s : s; }

// h_{t-1} for every t, in time order: [T,B,H]. Forward: [h0, y[0..T-2]]; reverse: [y[1..], h0].
inline Tensor previous_hidden(const Tensor& y, const Tensor& h0, bool reverse) {
  const int64_t T = y.size(0);
  if (T == 0) return y;
  auto h = h0.unsqueeze(0);
  return reverse ? at::cat({y.narrow(0, 1, T - 1), h}, 0) : at::cat({h, y.narrow(0, 0, T - 1)}, 0);
}

// Half types run in float: the CPU backend computes them by upcasting once per call.
inline bool is_half(const Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}
inline Tensor up(const Tensor& t) { return t.to(at::kFloat); }
inline OptTensor up(const OptTensor& t) {
  return t ? OptTensor(t->to(at::kFloat)) : OptTensor();
}

// Casts every tensor of a result tuple to dtype.
template <class Tuple>
inline Tuple down(Tuple r, at::ScalarType dtype) {
  std::apply([&](auto&... t) { ((t = t.to(dtype)), ...); }, r);
  return r;
}

}  // namespace cpu
}  // namespace fusedrnn
