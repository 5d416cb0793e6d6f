// The launchers' GEMMs outside the step kernels (the input projection, dh0, dx, dW, the LSTM
// projection's forward product) in the precision torch lets cuDNN's RNNs use, so fusedrnn's
// numbers are those of torch.nn on cuDNN and its GEMMs run on the same tensor cores:
//   fp32       TF32 (operands rounded to tf32, fp32 sums) exactly when rnn_tf32_allowed()
//              (torch.backends.cudnn.allow_tf32 / torch.backends.cudnn.rnn.fp32_precision, default
//              on), IEEE fp32 otherwise, whatever torch.backends.cuda.matmul says;
//   bf16/fp16  operands in the storage type, fp32 sums: fp32 operands (the gate gradients) are
//              rounded to it first, as cuDNN keeps its gate gradients in it;
//   fp64       IEEE.
// Under nvcc: one cublasGemmEx on torch's handle and current stream, compute type
// 32F_FAST_TF32 / 32F (default math: no TF32 unless asked) / 64F. Under SIMT (no cuBLAS) the same
// call is emulated on the CPU from the same column-major descriptors (so a wrong transpose or
// leading dimension is caught there): operands rounded as the compute type rounds them, then an
// IEEE at::mm — exact products and fp32 sums, as the tensor cores; only the sums' order differs.
//
// dh0 = da(first steps) W_hh is the recurrence's last product rather than a hoisted one: it takes
// the step kernels' precision (recurrent_mm, or policy_mm_out with recurrent: fp32 accurate for
// the half types, whose step kernels keep their gate gradients to about 21 bits, as the
// persistent kernels' in-kernel dh0 does; TF32 for fp32 when allowed), so both algorithms give
// the same dh0. So do the LSTM projection's per-step backward products.
//
// Contract: a [M,K] and b [K,N] are 2-D with any strides (a transposed view is passed to cuBLAS
// as a transpose, no copy), of dtype `storage` or its accumulation type, on one device.
//   policy_mm(a, b, storage, out_dtype, bias): a fresh contiguous [M,N] of out_dtype = a b (+ the
//     row bias [N], any floating dtype, broadcast over rows).
//   policy_mm_out(out, a, b, storage, accumulate): out [M,N] contiguous = a b (+ out), one
//     rounding to out's dtype (through an fp32 temporary where cuBLAS cannot write out's dtype
//     from the compute's operands). out must not alias a or b.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>

#include "cuda/portable.h"

#if defined(__CUDACC__)
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/Exceptions.h>
#endif

namespace fusedrnn {
namespace FRNN_BACKEND_NS {
namespace stepwise {

// Whether torch lets cuDNN's RNNs use TF32 for fp32 (read per call, on the host). The step
// kernels' product (cuda/stepwise.h pick_step) and these GEMMs follow it.
inline bool rnn_tf32_allowed() { return at::globalContext().allowTF32CuDNN(at::Float32Op::RNN); }

enum class GemmCompute { kIeee32, kTf32, kHalf, kIeee64 };

inline GemmCompute gemm_compute(at::ScalarType storage, bool recurrent = false) {
  switch (storage) {
    case at::kDouble: return GemmCompute::kIeee64;
    case at::kHalf:
    case at::kBFloat16: return recurrent ? GemmCompute::kIeee32 : GemmCompute::kHalf;
    default: return rnn_tf32_allowed() ? GemmCompute::kTf32 : GemmCompute::kIeee32;
  }
}

// The operand type a compute type takes: the storage type for kHalf, fp32 for the fp32 ones.
inline at::ScalarType gemm_operand_type(GemmCompute c, at::ScalarType storage) {
  return c == GemmCompute::kHalf ? storage
         : c == GemmCompute::kIeee64 ? at::kDouble
                                     : at::kFloat;
}

// One operand as cuBLAS (column-major) takes it. A row-major-strided t [R,C] is the column-major
// [C,R] matrix t^T with leading dimension ld (trans false); a transposed view (stride 1 down the
// rows) is the column-major [R,C] t itself, which cuBLAS transposes (trans true). Anything else is
// copied once.
struct ColMajor {
  at::Tensor t;  // keeps the memory alive
  bool trans;
  int64_t ld;
};
inline ColMajor col_major(const at::Tensor& t) {
  const int64_t R = t.size(0), C = t.size(1);
  if (t.stride(1) == 1 && t.stride(0) >= std::max<int64_t>(1, C)) return {t, false, t.stride(0)};
  if (t.stride(0) == 1 && t.stride(1) >= std::max<int64_t>(1, R)) return {t, true, t.stride(1)};
  auto c = t.contiguous();
  return {c, false, std::max<int64_t>(1, C)};
}

#if !defined(__CUDACC__)
// fp32 values rounded to tf32 as cvt.rna.tf32.f32 does (nearest, ties away from zero: add half an
// ulp of the 10-bit mantissa to the magnitude's bits, drop the low 13); inf and NaN unchanged.
inline at::Tensor round_to_tf32(const at::Tensor& f) {
  auto bits = f.contiguous().view(at::kInt);
  auto r = bits.add(0x1000).bitwise_and_(int32_t(0xffffe000)).view(at::kFloat);
  return at::where(at::isfinite(f), r, f);
}

// The logical [rows, cols] row-major matrix a descriptor stands for, read back from the
// descriptor alone (pointer, ld, trans) as cuBLAS would read it.
inline at::Tensor from_col_major(const ColMajor& d, int64_t rows, int64_t cols) {
  auto opts = d.t.options();
  if (!d.trans) return at::from_blob(d.t.data_ptr(), {rows, cols}, {d.ld, 1}, opts);
  return at::from_blob(d.t.data_ptr(), {rows, cols}, {1, d.ld}, opts);
}
#endif

// Whether cublasGemmEx takes these types (cuBLAS's table of cublasGemmEx): operands of one
// type, the output in that type or, for 16-bit operands, fp32. fp32 operands into a bf16/fp16
// output are refused (CUBLAS_STATUS_NOT_SUPPORTED); policy_mm_out goes through fp32 for them.
inline bool cublas_takes(at::ScalarType operands, at::ScalarType out) {
  if (out == operands) return true;
  return (operands == at::kHalf || operands == at::kBFloat16) && out == at::kFloat;
}

// out [M,N] contiguous = a [M,K] b [K,N] (+ out), operands already in the compute's type.
inline void gemm_ex(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b,
                    GemmCompute comp, bool accumulate) {
  const int64_t M = out.size(0), N = out.size(1), K = a.size(1);
  TORCH_CHECK(out.is_contiguous() && a.size(0) == M && b.size(0) == K && b.size(1) == N,
              "fusedrnn: internal GEMM shape mismatch");
  // Checked on every backend, so the SIMT layer refuses what cuBLAS would.
  TORCH_CHECK(a.scalar_type() == b.scalar_type() &&
                  cublas_takes(a.scalar_type(), out.scalar_type()),
              "fusedrnn: internal GEMM types cuBLAS does not take: ", a.scalar_type(), " x ",
              b.scalar_type(), " -> ", out.scalar_type());
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate) out.zero_();
    return;
  }
  TORCH_CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX, "fusedrnn: GEMM too large");
  const ColMajor da = col_major(a), db = col_major(b);
#if defined(__CUDACC__)
  // Row-major out = a b is column-major out^T = b^T a^T: cuBLAS's first operand is b's descriptor.
  auto type_of = [](at::ScalarType s) {
    switch (s) {
      case at::kDouble: return CUDA_R_64F;
      case at::kHalf: return CUDA_R_16F;
      case at::kBFloat16: return CUDA_R_16BF;
      default: return CUDA_R_32F;
    }
  };
  cublasHandle_t h = at::cuda::getCurrentCUDABlasHandle();
  // torch sets the handle's math mode on every getCurrentCUDABlasHandle(); default math keeps
  // CUBLAS_COMPUTE_32F off TF32 even where torch.backends.cuda.matmul allows it.
  TORCH_CUDABLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  const double alpha_d = 1.0, beta_d = accumulate ? 1.0 : 0.0;
  const bool dbl = comp == GemmCompute::kIeee64;
  const cublasComputeType_t ct = dbl                          ? CUBLAS_COMPUTE_64F
                                 : comp == GemmCompute::kTf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                              : CUBLAS_COMPUTE_32F;
  TORCH_CUDABLAS_CHECK(cublasGemmEx(
      h, db.trans ? CUBLAS_OP_T : CUBLAS_OP_N, da.trans ? CUBLAS_OP_T : CUBLAS_OP_N, int(N),
      int(M), int(K), dbl ? static_cast<const void*>(&alpha_d) : &alpha, db.t.data_ptr(),
      type_of(b.scalar_type()), int(db.ld), da.t.data_ptr(), type_of(a.scalar_type()), int(da.ld),
      dbl ? static_cast<const void*>(&beta_d) : &beta, out.data_ptr(),
      type_of(out.scalar_type()), int(N), ct, CUBLAS_GEMM_DEFAULT));
#else
  const auto wide = comp == GemmCompute::kIeee64 ? at::kDouble : at::kFloat;
  auto av = from_col_major(da, M, K).to(wide), bv = from_col_major(db, K, N).to(wide);
  if (comp == GemmCompute::kTf32) av = round_to_tf32(av), bv = round_to_tf32(bv);
  auto prod = at::mm(av, bv);
  if (accumulate) prod.add_(out.to(wide));
  out.copy_(prod);
#endif
}

inline void policy_mm_out(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b,
                          at::ScalarType storage, bool accumulate = false,
                          bool recurrent = false) {
  const GemmCompute comp = gemm_compute(storage, recurrent);
  const auto op = gemm_operand_type(comp, storage);
  if (!cublas_takes(op, out.scalar_type())) {  // fp32 sums into a half output: one rounding
    auto wide = accumulate ? out.to(op) : at::empty(out.sizes(), out.options().dtype(op));
    gemm_ex(wide, a.to(op), b.to(op), comp, accumulate);
    out.copy_(wide);
    return;
  }
  gemm_ex(out, a.to(op), b.to(op), comp, accumulate);
}

inline at::Tensor policy_mm(const at::Tensor& a, const at::Tensor& b, at::ScalarType storage,
                            at::ScalarType out_dtype,
                            const c10::optional<at::Tensor>& bias = c10::nullopt) {
  auto out = at::empty({a.size(0), b.size(1)}, a.options().dtype(out_dtype));
  if (bias) out.copy_(bias->unsqueeze(0).expand_as(out));
  policy_mm_out(out, a, b, storage, bias.has_value());
  return out;
}

// dh0's product (see above): a [M,K] b [K,N] -> a fresh [M,N] of out_dtype.
inline at::Tensor recurrent_mm(const at::Tensor& a, const at::Tensor& b, at::ScalarType storage,
                               at::ScalarType out_dtype) {
  auto out = at::empty({a.size(0), b.size(1)}, a.options().dtype(out_dtype));
  policy_mm_out(out, a, b, storage, false, /*recurrent=*/true);
  return out;
}

}  // namespace stepwise
}  // namespace FRNN_BACKEND_NS
}  // namespace fusedrnn
