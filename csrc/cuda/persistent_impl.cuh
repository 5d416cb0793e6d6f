// Host side of the persistent kernels (csrc/cuda/persistent.h): input checks, the hoisted input
// GEMM and the weight-gradient GEMMs (ATen), buffers, the sizing decision and the cooperative
// launch. Included by exactly one translation unit per part and backend:
//   FRNN_PERSISTENT_PART_COMMON  persistent_arch / persistent_plan / persistent_supported
//   FRNN_PERSISTENT_PART_LSTM    lstm_forward_persistent / lstm_backward_persistent
//   FRNN_PERSISTENT_PART_GRU     gru_forward_persistent / gru_backward_persistent
// under nvcc (csrc/cuda/persistent_*.cu -> fusedrnn::cuda) and g++ (csrc/simt/persistent_*.cpp
// -> fusedrnn::simt).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include "checks.h"
#include "cuda/persistent.h"
#include "cuda/persistent_kernels.cuh"

#if defined(__CUDACC__)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace fusedrnn {
namespace FRNN_BACKEND_NS {

namespace persistent_detail {

#if defined(__CUDACC__)
#define FRNN_PERSISTENT_DEVICE_GUARD(t) const c10::cuda::CUDAGuard frnn_guard_((t).device())
inline void check_device(const char* op, const Tensor& x) {
  TORCH_CHECK(x.is_cuda(), op, ": the cuda backend needs CUDA tensors, got ", x.device());
}
#else
#define FRNN_PERSISTENT_DEVICE_GUARD(t) ((void)0)
inline void check_device(const char* op, const Tensor& x) {
  TORCH_CHECK(x.device().is_cpu(), op, ": the simt backend runs on CPU tensors, got ",
              x.device());
}
#endif

inline at::ScalarType acc_type(at::ScalarType s) {
  return s == at::kDouble ? at::kDouble : at::kFloat;
}

// Rows h_{t-1} of every step t in time order, [T,B,H]: h0 for the first processed step.
inline Tensor prev_rows(const Tensor& y, const Tensor& h0, bool reverse) {
  const int64_t T = y.size(0);
  auto h = h0.unsqueeze(0);
  if (T == 1) return h;
  return reverse ? at::cat({y.narrow(0, 1, T - 1), h}) : at::cat({h, y.narrow(0, 0, T - 1)});
}

template <class Kernel, class Params>
void launch(Kernel kernel, const PersistentPlan& plan, size_t smem, const Params& params) {
  FRNN_SET_MAX_DYNAMIC_SMEM(kernel, smem);
#if defined(__CUDACC__)
  // Co-residency, as cudaLaunchCooperativeKernel will require it: registers too.
  int per_sm = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, plan.threads,
                                                               smem));
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  TORCH_CHECK(per_sm >= 1 && int64_t(per_sm) * sms >= plan.blocks,
              "persistent: ", plan.blocks, " blocks of ", plan.threads, " threads with ", smem,
              " bytes of shared memory are not co-resident (", per_sm, " per SM x ", sms,
              " SMs)");
#endif
  FRNN_LAUNCH_COOPERATIVE(kernel, plan.blocks, plan.threads, smem, FRNN_CURRENT_STREAM, params);
}

}  // namespace persistent_detail

// ====================================================================== common
#if defined(FRNN_PERSISTENT_PART_COMMON)

PersistentArch persistent_arch() {
#if defined(__CUDACC__)
  const cudaDeviceProp* d = at::cuda::getCurrentDeviceProperties();  // cached by ATen
  return {d->multiProcessorCount, size_t(d->sharedMemPerBlockOptin),
          std::min(d->maxThreadsPerBlock, persistent_detail::kMaxThreads)};
#else
  const ::simt::Arch& a = ::simt::arch();  // the SIMT layer's configured architecture
  return {a.sms, a.smem_per_block_optin, 1024};
#endif
}

PersistentPlan persistent_plan(RnnKind kind, int64_t B, int64_t H, at::ScalarType dtype) {
  return ::fusedrnn::persistent_plan(kind, B, H, dtype, persistent_arch());
}

bool persistent_supported(RnnKind kind, int64_t B, int64_t H, at::ScalarType dtype) {
  return persistent_plan(kind, B, H, dtype).fits;
}

#endif  // FRNN_PERSISTENT_PART_COMMON

namespace persistent_detail {
inline PersistentPlan plan_or_throw(RnnKind kind, const char* op, int64_t B, int64_t H,
                                    at::ScalarType dtype) {
  PersistentPlan plan = persistent_plan(kind, B, H, dtype);
  TORCH_CHECK(plan.fits, op, ": ", plan.why);
  return plan;
}
}  // namespace persistent_detail

// ====================================================================== LSTM
#if defined(FRNN_PERSISTENT_PART_LSTM)

T5 lstm_forward_persistent(const Tensor& x, const Tensor& h0, const Tensor& c0,
                           const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                           const OptTensor& b_hh, bool reverse) {
  using namespace persistent_detail;
  const char* op = "lstm_forward_persistent";
  const Sizes sz = check_layer_inputs(op, 4, x, h0, &c0, w_ih, w_hh, b_ih, b_hh);
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t T = sz.T, B = sz.B, H = sz.H, I = sz.I;
  if (T == 0)
    return {x.new_empty({0, B, H}), h0.contiguous().clone(), c0.contiguous().clone(),
            x.new_empty({0, B, 4 * H}), x.new_empty({0, B, H})};
  const PersistentPlan plan = plan_or_throw(RnnKind::Lstm, op, B, H, x.scalar_type());
  const auto acc = acc_type(x.scalar_type());
  // Hoisted input projection of all T steps, both biases folded in, in the accumulation dtype.
  auto xa = x.reshape({T * B, I}).to(acc);
  auto wa = w_ih.to(acc);
  auto xproj = b_ih ? at::addmm(b_ih->to(acc) + b_hh->to(acc), xa, wa.t()) : at::mm(xa, wa.t());
  xproj = xproj.contiguous();
  auto hbuf = at::empty({2, B, H}, x.options().dtype(acc));
  FRNN_POISON(hbuf);
  hbuf[0].copy_(h0);
  auto y = at::empty({T, B, H}, x.options());
  auto gates = at::empty({T, B, 4 * H}, x.options());
  auto cells_ = at::empty({T, B, H}, x.options());
  FRNN_POISON(y);
  FRNN_POISON(gates);
  FRNN_POISON(cells_);
  auto whh = w_hh.contiguous(), c0c = c0.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lstm_fwd_pers", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    LstmFwdParams<S, A> p{xproj.data_ptr<A>(), whh.data_ptr<S>(), c0c.data_ptr<S>(),
                          hbuf.data_ptr<A>(), y.data_ptr<S>(), gates.data_ptr<S>(),
                          cells_.data_ptr<S>(), int(T), int(B), int(H), plan.units,
                          plan.kc_fwd, reverse};
    launch(&lstm_fwd_kernel<S, A>, plan, plan.smem_fwd, p);
  });
  const int64_t t_last = reverse ? 0 : T - 1;
  return {y, y[t_last].clone(), cells_[t_last].clone(), gates, cells_};
}

T6 lstm_backward_persistent(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n,
                            const Tensor& x, const Tensor& h0, const Tensor& c0,
                            const Tensor& w_ih, const Tensor& w_hh, const Tensor& y,
                            const Tensor& gates, const Tensor& cells_, bool reverse) {
  using namespace persistent_detail;
  const char* op = "lstm_backward_persistent";
  const Sizes sz = check_layer_inputs(op, 4, x, h0, &c0, w_ih, w_hh, {}, {});
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t T = sz.T, B = sz.B, H = sz.H, I = sz.I;
  check_grad(op, dy, {T, B, H}, x, "dy");
  check_grad(op, dh_n, {B, H}, x, "dh_n");
  check_grad(op, dc_n, {B, H}, x, "dc_n");
  check_grad(op, y, {T, B, H}, x, "y");
  check_grad(op, gates, {T, B, 4 * H}, x, "gates");
  check_grad(op, cells_, {T, B, H}, x, "cells");
  if (T == 0)
    return {at::zeros_like(x), dh_n.contiguous().clone(), dc_n.contiguous().clone(),
            at::zeros_like(w_ih), at::zeros_like(w_hh), x.new_zeros({4 * H})};
  const PersistentPlan plan = plan_or_throw(RnnKind::Lstm, op, B, H, x.scalar_type());
  const auto dtype = x.scalar_type(), acc = acc_type(dtype);
  auto da = at::empty({T, B, 4 * H}, x.options().dtype(acc));
  auto dh0 = at::empty({B, H}, x.options()), dc0 = at::empty({B, H}, x.options());
  FRNN_POISON(da);
  FRNN_POISON(dh0);
  FRNN_POISON(dc0);
  auto dyc = dy.contiguous(), dhn = dh_n.contiguous(), dcn = dc_n.contiguous();
  auto c0c = c0.contiguous(), whh = w_hh.contiguous(), gc = gates.contiguous(),
       cc = cells_.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "lstm_bwd_pers", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    LstmBwdParams<S, A> p{dyc.data_ptr<S>(), dhn.data_ptr<S>(), dcn.data_ptr<S>(),
                          c0c.data_ptr<S>(), whh.data_ptr<S>(), gc.data_ptr<S>(),
                          cc.data_ptr<S>(), da.data_ptr<A>(), dh0.data_ptr<S>(),
                          dc0.data_ptr<S>(), int(T), int(B), int(H), plan.units, plan.kc_bwd,
                          reverse};
    launch(&lstm_bwd_kernel<S, A>, plan, plan.smem_bwd, p);
  });
  // Weight gradients, dx and db: single GEMMs over all T*B rows (accumulation dtype).
  auto da2 = da.view({T * B, 4 * H});
  auto dx = at::mm(da2, w_ih.to(acc)).view({T, B, I}).to(dtype);
  auto dw_ih = at::mm(da2.t(), x.reshape({T * B, I}).to(acc)).to(dtype);
  auto hp = prev_rows(y, h0, reverse).reshape({T * B, H}).to(acc);
  auto dw_hh = at::mm(da2.t(), hp).to(dtype);
  auto db = da2.sum(0).to(dtype);
  return {dx, dh0, dc0, dw_ih, dw_hh, db};
}

#endif  // FRNN_PERSISTENT_PART_LSTM

// ====================================================================== GRU
#if defined(FRNN_PERSISTENT_PART_GRU)

T4 gru_forward_persistent(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                          const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                          bool reverse) {
  using namespace persistent_detail;
  const char* op = "gru_forward_persistent";
  const Sizes sz = check_layer_inputs(op, 3, x, h0, nullptr, w_ih, w_hh, b_ih, b_hh);
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t T = sz.T, B = sz.B, H = sz.H, I = sz.I;
  if (T == 0)
    return {x.new_empty({0, B, H}), h0.contiguous().clone(), x.new_empty({0, B, 3 * H}),
            x.new_empty({0, B, H})};
  const PersistentPlan plan = plan_or_throw(RnnKind::Gru, op, B, H, x.scalar_type());
  const auto acc = acc_type(x.scalar_type());
  auto xa = x.reshape({T * B, I}).to(acc);
  auto wa = w_ih.to(acc);
  auto xproj = b_ih ? at::addmm(b_ih->to(acc), xa, wa.t()) : at::mm(xa, wa.t());
  xproj = xproj.contiguous();
  Tensor bhh = b_hh ? b_hh->to(acc).contiguous() : Tensor();
  auto hbuf = at::empty({2, B, H}, x.options().dtype(acc));
  FRNN_POISON(hbuf);
  hbuf[0].copy_(h0);
  auto y = at::empty({T, B, H}, x.options());
  auto gates = at::empty({T, B, 3 * H}, x.options());
  auto ghn = at::empty({T, B, H}, x.options());
  FRNN_POISON(y);
  FRNN_POISON(gates);
  FRNN_POISON(ghn);
  auto whh = w_hh.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gru_fwd_pers", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    GruFwdParams<S, A> p{xproj.data_ptr<A>(), bhh.defined() ? bhh.data_ptr<A>() : nullptr,
                         whh.data_ptr<S>(), hbuf.data_ptr<A>(), y.data_ptr<S>(),
                         gates.data_ptr<S>(), ghn.data_ptr<S>(), int(T), int(B), int(H),
                         plan.units, plan.kc_fwd, reverse};
    launch(&gru_fwd_kernel<S, A>, plan, plan.smem_fwd, p);
  });
  const int64_t t_last = reverse ? 0 : T - 1;
  return {y, y[t_last].clone(), gates, ghn};
}

T6 gru_backward_persistent(const Tensor& dy, const Tensor& dh_n, const Tensor& x,
                           const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                           const Tensor& y, const Tensor& gates, const Tensor& ghn,
                           bool reverse) {
  using namespace persistent_detail;
  const char* op = "gru_backward_persistent";
  const Sizes sz = check_layer_inputs(op, 3, x, h0, nullptr, w_ih, w_hh, {}, {});
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t T = sz.T, B = sz.B, H = sz.H, I = sz.I;
  check_grad(op, dy, {T, B, H}, x, "dy");
  check_grad(op, dh_n, {B, H}, x, "dh_n");
  check_grad(op, y, {T, B, H}, x, "y");
  check_grad(op, gates, {T, B, 3 * H}, x, "gates");
  check_grad(op, ghn, {T, B, H}, x, "ghn");
  if (T == 0)
    return {at::zeros_like(x), dh_n.contiguous().clone(), at::zeros_like(w_ih),
            at::zeros_like(w_hh), x.new_zeros({3 * H}), x.new_zeros({3 * H})};
  const PersistentPlan plan = plan_or_throw(RnnKind::Gru, op, B, H, x.scalar_type());
  const auto dtype = x.scalar_type(), acc = acc_type(dtype);
  auto dgx = at::empty({T, B, 3 * H}, x.options().dtype(acc));
  auto dgh = at::empty({T, B, 3 * H}, x.options().dtype(acc));
  auto dh0 = at::empty({B, H}, x.options());
  FRNN_POISON(dgx);
  FRNN_POISON(dgh);
  FRNN_POISON(dh0);
  auto dyc = dy.contiguous(), dhn = dh_n.contiguous(), h0c = h0.contiguous(),
       yc = y.contiguous(), whh = w_hh.contiguous(), gc = gates.contiguous(),
       nc = ghn.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "gru_bwd_pers", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    GruBwdParams<S, A> p{dyc.data_ptr<S>(), dhn.data_ptr<S>(), h0c.data_ptr<S>(),
                         yc.data_ptr<S>(), whh.data_ptr<S>(), gc.data_ptr<S>(),
                         nc.data_ptr<S>(), dgx.data_ptr<A>(), dgh.data_ptr<A>(),
                         dh0.data_ptr<S>(), int(T), int(B), int(H), plan.units, plan.kc_bwd,
                         reverse};
    launch(&gru_bwd_kernel<S, A>, plan, plan.smem_bwd, p);
  });
  auto gx = dgx.view({T * B, 3 * H}), gh = dgh.view({T * B, 3 * H});
  auto dx = at::mm(gx, w_ih.to(acc)).view({T, B, I}).to(dtype);
  auto dw_ih = at::mm(gx.t(), x.reshape({T * B, I}).to(acc)).to(dtype);
  auto hp = prev_rows(y, h0, reverse).reshape({T * B, H}).to(acc);
  auto dw_hh = at::mm(gh.t(), hp).to(dtype);
  return {dx, dh0, dw_ih, dw_hh, gx.sum(0).to(dtype), gh.sum(0).to(dtype)};
}

#endif  // FRNN_PERSISTENT_PART_GRU

}  // namespace FRNN_BACKEND_NS
}  // namespace fusedrnn
