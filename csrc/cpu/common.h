// Helpers of the CPU backend: raw-pointer row-major GEMM (no allocation, no dispatcher: safe and
// cheap inside the time loop), the threaded pointwise loop, and the sequence bookkeeping.
//
// gemm_rm: C[M,N] = alpha * op(A) op(B) + beta * C, all row-major with leading dimensions
// (row strides) lda, ldb, ldc; op(X) = X^T when the flag is set. C must not alias A or B.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops.h"
#include "cpu/big_buffer.h"

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

// The time steps of a layer call. Dense: T steps of B rows, step t at rows [t*B, (t+1)*B).
// Packed (torch.nn.utils.rnn.PackedSequence): step t has batch_sizes[t] rows (non-increasing in
// t), stored one step after another; the active rows of a step are a prefix 0..count-1 of the
// batch (sequences sorted by decreasing length). Only active rows are ever computed.
struct Steps {
  int64_t T = 0, B = 0, N = 0;        // steps, batch, total rows
  std::vector<int64_t> count, offset;  // rows of step t, first row of step t

  static Steps dense(int64_t T, int64_t B) {
    Steps st;
    st.T = T, st.B = B, st.N = T * B;
    for (int64_t t = 0; t < T; ++t) st.count.push_back(B), st.offset.push_back(t * B);
    return st;
  }
  static Steps packed(const Tensor& batch_sizes) {
    auto bs = batch_sizes.to(at::kLong).contiguous();
    const int64_t* p = bs.data_ptr<int64_t>();
    Steps st;
    st.T = bs.numel();
    st.B = st.T ? p[0] : 0;
    for (int64_t t = 0; t < st.T; ++t) {
      st.offset.push_back(st.N);
      st.count.push_back(p[t]);
      st.N += p[t];
    }
    return st;
  }
};

// t itself when contiguous, else a contiguous copy in a big buffer (big_buffer.h): incoming
// gradients are often expanded (the gradient of y.sum() has stride 0), and their copy through
// glibc left activation-sized holes in its heap when shapes vary.
inline Tensor contiguous_big(const Tensor& t) {
  if (t.is_contiguous()) return t;
  auto out = empty_big(t.sizes(), t.options());
  out.copy_(t);
  return out;
}

// Time index of the s-th processed step.
inline int64_t time_of(int64_t s, int64_t T, bool reverse) { return reverse ? T - 1 - s : s; }

// For every row (t, b), the state it started from: the same row of the previously processed
// step when that row was active there, else the initial state init[b]. seq and the result are
// [N, H]; init is [B, H]. For dense forward input this is [init; seq[steps 0 .. T-2]].
// Rows are copied with memcpy, not per-step ATen copies: those cost ~2 us each in dispatch, and
// at B = 1 two per step were ~6% of an LSTM training call (T=100 H=512).
inline Tensor previous_rows(const Tensor& seq_, const Tensor& init_, const Steps& st,
                            bool reverse) {
  auto seq = seq_.contiguous(), init = init_.contiguous();
  auto out = empty_big(seq.sizes(), seq.options());
  const size_t row = size_t(seq.size(1)) * seq.element_size();
  char* o = static_cast<char*>(out.data_ptr());
  const char* q = static_cast<const char*>(seq.data_ptr());
  const char* i0 = static_cast<const char*>(init.data_ptr());
  auto rows = [&](char* dst, const char* src, int64_t n) {
    if (n > 0) std::memcpy(dst, src, size_t(n) * row);
  };
  for (int64_t s = 0; s < st.T; ++s) {
    const int64_t t = time_of(s, st.T, reverse), n = st.count[t];
    char* dst = o + size_t(st.offset[t]) * row;
    int64_t from_prev = 0;
    if (s > 0) {
      const int64_t tp = time_of(s - 1, st.T, reverse);
      from_prev = std::min(n, st.count[tp]);
      rows(dst, q + size_t(st.offset[tp]) * row, from_prev);
    }
    rows(dst + size_t(from_prev) * row, i0 + size_t(from_prev) * row, n - from_prev);
  }
  return out;
}

// [N, K] -> [T, B, K] for dense input (N = T*B).
inline Tensor as_steps(const Tensor& t, int64_t T, int64_t B) { return t.view({T, B, t.size(1)}); }

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
