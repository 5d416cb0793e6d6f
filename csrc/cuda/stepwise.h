// Host orchestration of the stepwise algorithm (DESIGN.md §3), written once and compiled twice:
// by nvcc in csrc/cuda/*.cu (namespace fusedrnn::cuda, CUDA tensors, kernels on the GPU) and by the
// host compiler in csrc/simt/ops_*.cpp (namespace fusedrnn::simt, CPU tensors, the same kernels on
// CPU threads through the SIMT layer). FRNN_BACKEND_NS (csrc/cuda/portable.h) names the namespace.
//
// Contract: the arguments were validated by the dispatcher (csrc/checks.h: shapes, one dtype, one
// device); shapes and saved tensors as in csrc/ops.h. Inputs may be non-contiguous (made contiguous
// here, once). Every output is a fresh contiguous tensor. Per call:
//   forward : one GEMM for the input projection of all T steps (ATen: cuBLAS / CPU BLAS) with
//             the biases folded in (GRU: b_ih only), then T launches of the fused step kernel.
//   backward: T launches of the fused backward step kernel (reverse time order), then dh0 and
//             dx, dW_ih, dW_hh, db as single GEMMs / reductions over all T*B rows.
// All buffers are allocated before the time loop; launches go to the current stream, no host sync.
// Freshly allocated buffers the kernels must fully write are poisoned (NaN under SIMT).
#pragma once

#include <ATen/ATen.h>

#include <climits>

#include "cuda/gru_kernels.cuh"
#include "cuda/lstm_kernels.cuh"
#include "cuda/rnn_kernels.cuh"
#include "ops.h"

#if defined(__CUDACC__)
#include <c10/cuda/CUDAGuard.h>
#define FRNN_DEVICE_GUARD(t) c10::cuda::CUDAGuard frnn_device_guard_((t).device())
#else
#define FRNN_DEVICE_GUARD(t) ((void)0)
#endif

// FRNN_DTYPE_SWITCH(dtype, "op", [&] { ... scalar_t ... }): runs the lambda with scalar_t bound to
// the C++ type of dtype (float, double, c10::Half, c10::BFloat16).
#define FRNN_DTYPE_CASE(enum_type, type, ...) \
  case enum_type: {                           \
    using scalar_t = type;                    \
    return __VA_ARGS__();                     \
  }
#define FRNN_DTYPE_SWITCH(dtype, op, ...)                                                      \
  [&] {                                                                                        \
    const auto frnn_dtype_ = (dtype);                                                          \
    switch (frnn_dtype_) {                                                                     \
      FRNN_DTYPE_CASE(at::kFloat, float, __VA_ARGS__)                                          \
      FRNN_DTYPE_CASE(at::kDouble, double, __VA_ARGS__)                                        \
      FRNN_DTYPE_CASE(at::kHalf, c10::Half, __VA_ARGS__)                                       \
      FRNN_DTYPE_CASE(at::kBFloat16, c10::BFloat16, __VA_ARGS__)                               \
      default:                                                                                 \
        TORCH_CHECK(false, op, ": unsupported dtype ", frnn_dtype_,                            \
                    " (float32, float64, float16, bfloat16)");                                 \
    }                                                                                          \
  }()

namespace fusedrnn {
namespace FRNN_BACKEND_NS {
namespace stepwise {

template <class S> using acc_of = typename kern::AccType<S>::type;

template <class S> inline at::ScalarType acc_dtype() {
  return c10::CppTypeToScalarType<acc_of<S>>::value;
}

inline int64_t time_of(int64_t s, int64_t T, bool reverse) { return reverse ? T - 1 - s : s; }

inline void check_int_range(const char* op, int64_t B, int64_t G, int64_t H, int64_t I) {
  TORCH_CHECK(B * G * H < INT_MAX && G * H * H < INT_MAX && G * H * I < INT_MAX, op,
              ": sizes too large for 32-bit indexing in the step kernels (B=", B, ", H=", H,
              ", I=", I, ")");
}

template <class Cfg> inline dim3 step_grid(int64_t B, int64_t H) {
  return dim3(unsigned((H + Cfg::HT - 1) / Cfg::HT), unsigned((B + Cfg::BT - 1) / Cfg::BT), 1);
}

// x [T,B,I] -> [T*B, G*H]: x W_ih^T (+ bias).
inline Tensor input_projection(const Tensor& x, const Tensor& w_ih, const OptTensor& bias) {
  const auto x2d = x.view({x.size(0) * x.size(1), x.size(2)});
  return bias ? at::addmm(*bias, x2d, w_ih.t()) : at::mm(x2d, w_ih.t());
}

// h_{t-1} for every t, in time order [T,B,H]: [h0, y[0..T-2]] (reverse: [y[1..T-1], h0]).
inline Tensor previous_hidden(const Tensor& y, const Tensor& h0, bool reverse) {
  const int64_t T = y.size(0);
  auto h = h0.unsqueeze(0);
  return reverse ? at::cat({y.narrow(0, 1, T - 1), h}, 0) : at::cat({h, y.narrow(0, 0, T - 1)}, 0);
}

// A fresh copy of t in the accumulation type (the in-place carries of the kernels).
template <class S> inline Tensor acc_copy(const Tensor& t) {
  auto out = at::empty(t.sizes(), t.options().dtype(acc_dtype<S>()));
  out.copy_(t);
  return out;
}

// ---------------------------------------------------------------------------------- LSTM
template <class S>
T5 lstm_forward(const Tensor& x_, const Tensor& h0_, const Tensor& c0_, const Tensor& w_ih_,
                const Tensor& w_hh_, const OptTensor& b_ih, const OptTensor& b_hh, bool reverse) {
  using Cfg = kern::LstmForwardCfg<S>;
  FRNN_DEVICE_GUARD(x_);
  const auto x = x_.contiguous(), h0 = h0_.contiguous(), c0 = c0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1);
  check_int_range("lstm_forward", B, 4, H, I);
  auto y = at::empty({T, B, H}, x.options());
  auto gates = at::empty({T, B, 4 * H}, x.options());
  auto cells = at::empty({T, B, H}, x.options());
  if (T == 0) return {y, h0.clone(), c0.clone(), gates, cells};

  const OptTensor bias = b_ih ? OptTensor(*b_ih + *b_hh) : OptTensor();
  const auto xproj = input_projection(x, w_ih, bias);  // [T*B, 4H]
  auto c = acc_copy<S>(c0);
  FRNN_POISON(y);
  FRNN_POISON(gates);
  FRNN_POISON(cells);

  kern::LstmForwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.c = static_cast<acc_of<S>*>(c.data_ptr());
  p.B = int(B);
  p.H = int(H);
  const dim3 grid = step_grid<Cfg>(B, H);
  const S* h_prev = h0.data_ptr<S>();
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = time_of(s, T, reverse);
    p.xproj = xproj.data_ptr<S>() + t * B * 4 * H;
    p.h_prev = h_prev;
    p.h_out = y.data_ptr<S>() + t * B * H;
    p.c_out = cells.data_ptr<S>() + t * B * H;
    p.gates_out = gates.data_ptr<S>() + t * B * 4 * H;
    const auto kernel = &kern::lstm_forward_step_kernel<Cfg>;
    FRNN_LAUNCH(kernel, grid, Cfg::kThreads, Cfg::kSmemBytes,
                FRNN_CURRENT_STREAM, p);
    h_prev = p.h_out;
  }
  const int64_t t_last = time_of(T - 1, T, reverse);
  return {y, y[t_last].clone(), c.to(x.scalar_type(), false, true), gates, cells};
}

template <class S>
T6 lstm_backward(const Tensor& dy_, const Tensor& dh_n_, const Tensor& dc_n_, const Tensor& x_,
                 const Tensor& h0_, const Tensor& c0_, const Tensor& w_ih_, const Tensor& w_hh_,
                 const Tensor& y_, const Tensor& gates_, const Tensor& cells_, bool reverse) {
  using Cfg = kern::LstmBackwardCfg<S>;
  FRNN_DEVICE_GUARD(x_);
  const auto dy = dy_.contiguous(), dh_n = dh_n_.contiguous(), dc_n = dc_n_.contiguous();
  const auto x = x_.contiguous(), h0 = h0_.contiguous(), c0 = c0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous(), y = y_.contiguous();
  const auto gates = gates_.contiguous(), cells = cells_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1), G = 4 * H;
  check_int_range("lstm_backward", B, 4, H, I);
  if (T == 0)
    return {at::zeros_like(x), dh_n.clone(), dc_n.clone(), at::zeros_like(w_ih),
            at::zeros_like(w_hh), at::zeros({G}, x.options())};

  auto da = at::empty({T, B, G}, x.options());
  auto dc = acc_copy<S>(dc_n);
  FRNN_POISON(da);

  kern::LstmBackwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.dc = static_cast<acc_of<S>*>(dc.data_ptr());
  p.B = int(B);
  p.H = int(H);
  const dim3 grid = step_grid<Cfg>(B, H);
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = time_of(s, T, reverse);
    p.dy = dy.data_ptr<S>() + t * B * H;
    p.dh_n = s == T - 1 ? dh_n.data_ptr<S>() : nullptr;
    p.da_next = s == T - 1 ? nullptr : da.data_ptr<S>() + time_of(s + 1, T, reverse) * B * G;
    p.gates = gates.data_ptr<S>() + t * B * G;
    p.c_t = cells.data_ptr<S>() + t * B * H;
    p.c_prev = s == 0 ? c0.data_ptr<S>() : cells.data_ptr<S>() + time_of(s - 1, T, reverse) * B * H;
    p.da_out = da.data_ptr<S>() + t * B * G;
    const auto kernel = &kern::lstm_backward_step_kernel<Cfg>;
    FRNN_LAUNCH(kernel, grid, Cfg::kThreads, Cfg::kSmemBytes,
                FRNN_CURRENT_STREAM, p);
  }
  const auto da2d = da.view({T * B, G});
  auto dh0 = at::mm(da[time_of(0, T, reverse)], w_hh);
  auto dx = at::mm(da2d, w_ih).view({T, B, I});
  auto dw_ih = at::mm(da2d.t(), x.view({T * B, I}));
  auto dw_hh = at::mm(da2d.t(), previous_hidden(y, h0, reverse).view({T * B, H}));
  auto db = da2d.sum(0);
  return {dx, dh0, dc.to(x.scalar_type(), false, true), dw_ih, dw_hh, db};
}

// ---------------------------------------------------------------------------------- GRU
template <class S>
T4 gru_forward(const Tensor& x_, const Tensor& h0_, const Tensor& w_ih_, const Tensor& w_hh_,
               const OptTensor& b_ih_, const OptTensor& b_hh_, bool reverse) {
  using Cfg = kern::GruForwardCfg<S>;
  FRNN_DEVICE_GUARD(x_);
  const auto x = x_.contiguous(), h0 = h0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  const OptTensor b_ih = b_ih_ ? OptTensor(b_ih_->contiguous()) : OptTensor();
  const OptTensor b_hh = b_hh_ ? OptTensor(b_hh_->contiguous()) : OptTensor();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1);
  check_int_range("gru_forward", B, 3, H, I);
  auto y = at::empty({T, B, H}, x.options());
  auto gates = at::empty({T, B, 3 * H}, x.options());
  auto ghn = at::empty({T, B, H}, x.options());
  if (T == 0) return {y, h0.clone(), gates, ghn};

  const auto xproj = input_projection(x, w_ih, b_ih);  // [T*B, 3H], b_ih only
  FRNN_POISON(y);
  FRNN_POISON(gates);
  FRNN_POISON(ghn);

  kern::GruForwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.b_hh = b_hh ? b_hh->data_ptr<S>() : nullptr;
  p.B = int(B);
  p.H = int(H);
  const dim3 grid = step_grid<Cfg>(B, H);
  const S* h_prev = h0.data_ptr<S>();
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = time_of(s, T, reverse);
    p.xproj = xproj.data_ptr<S>() + t * B * 3 * H;
    p.h_prev = h_prev;
    p.h_out = y.data_ptr<S>() + t * B * H;
    p.gates_out = gates.data_ptr<S>() + t * B * 3 * H;
    p.ghn_out = ghn.data_ptr<S>() + t * B * H;
    const auto kernel = &kern::gru_forward_step_kernel<Cfg>;
    FRNN_LAUNCH(kernel, grid, Cfg::kThreads, Cfg::kSmemBytes,
                FRNN_CURRENT_STREAM, p);
    h_prev = p.h_out;
  }
  return {y, y[time_of(T - 1, T, reverse)].clone(), gates, ghn};
}

template <class S>
T6 gru_backward(const Tensor& dy_, const Tensor& dh_n_, const Tensor& x_, const Tensor& h0_,
                const Tensor& w_ih_, const Tensor& w_hh_, const Tensor& y_, const Tensor& gates_,
                const Tensor& ghn_, bool reverse) {
  using Cfg = kern::GruBackwardCfg<S>;
  FRNN_DEVICE_GUARD(x_);
  const auto dy = dy_.contiguous(), dh_n = dh_n_.contiguous();
  const auto x = x_.contiguous(), h0 = h0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous(), y = y_.contiguous();
  const auto gates = gates_.contiguous(), ghn = ghn_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1), G = 3 * H;
  check_int_range("gru_backward", B, 3, H, I);
  if (T == 0)
    return {at::zeros_like(x),        dh_n.clone(),        at::zeros_like(w_ih),
            at::zeros_like(w_hh),     at::zeros({G}, x.options()), at::zeros({G}, x.options())};

  auto dax = at::empty({T, B, G}, x.options());
  auto dah = at::empty({T, B, G}, x.options());
  auto dh_direct = acc_copy<S>(dh_n);
  FRNN_POISON(dax);
  FRNN_POISON(dah);

  kern::GruBackwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.dh_direct = static_cast<acc_of<S>*>(dh_direct.data_ptr());
  p.B = int(B);
  p.H = int(H);
  const dim3 grid = step_grid<Cfg>(B, H);
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = time_of(s, T, reverse);
    p.dy = dy.data_ptr<S>() + t * B * H;
    p.dah_next = s == T - 1 ? nullptr : dah.data_ptr<S>() + time_of(s + 1, T, reverse) * B * G;
    p.gates = gates.data_ptr<S>() + t * B * G;
    p.ghn = ghn.data_ptr<S>() + t * B * H;
    p.h_prev = s == 0 ? h0.data_ptr<S>() : y.data_ptr<S>() + time_of(s - 1, T, reverse) * B * H;
    p.dax_out = dax.data_ptr<S>() + t * B * G;
    p.dah_out = dah.data_ptr<S>() + t * B * G;
    const auto kernel = &kern::gru_backward_step_kernel<Cfg>;
    FRNN_LAUNCH(kernel, grid, Cfg::kThreads, Cfg::kSmemBytes,
                FRNN_CURRENT_STREAM, p);
  }
  const auto dax2d = dax.view({T * B, G}), dah2d = dah.view({T * B, G});
  // dh0 = dah(first step) W_hh + the direct term z * dh, added in the accumulation type.
  auto dh0 = at::mm(dah[time_of(0, T, reverse)], w_hh).to(acc_dtype<S>()).add_(dh_direct)
                 .to(x.scalar_type());
  auto dx = at::mm(dax2d, w_ih).view({T, B, I});
  auto dw_ih = at::mm(dax2d.t(), x.view({T * B, I}));
  auto dw_hh = at::mm(dah2d.t(), previous_hidden(y, h0, reverse).view({T * B, H}));
  return {dx, dh0, dw_ih, dw_hh, dax2d.sum(0), dah2d.sum(0)};
}

// ---------------------------------------------------------------------------------- RNN
template <class S>
T2 rnn_forward(const Tensor& x_, const Tensor& h0_, const Tensor& w_ih_, const Tensor& w_hh_,
               const OptTensor& b_ih, const OptTensor& b_hh, bool relu, bool reverse) {
  using Cfg = kern::RnnForwardCfg<S>;
  FRNN_DEVICE_GUARD(x_);
  const auto x = x_.contiguous(), h0 = h0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1);
  check_int_range("rnn_forward", B, 1, H, I);
  auto y = at::empty({T, B, H}, x.options());
  if (T == 0) return {y, h0.clone()};

  const OptTensor bias = b_ih ? OptTensor(*b_ih + *b_hh) : OptTensor();
  const auto xproj = input_projection(x, w_ih, bias);  // [T*B, H]
  FRNN_POISON(y);

  kern::RnnForwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.B = int(B);
  p.H = int(H);
  const dim3 grid = step_grid<Cfg>(B, H);
  const auto kernel = relu ? &kern::rnn_forward_step_kernel<Cfg, cells::Act::Relu>
                           : &kern::rnn_forward_step_kernel<Cfg, cells::Act::Tanh>;
  const S* h_prev = h0.data_ptr<S>();
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = time_of(s, T, reverse);
    p.xproj = xproj.data_ptr<S>() + t * B * H;
    p.h_prev = h_prev;
    p.h_out = y.data_ptr<S>() + t * B * H;
    FRNN_LAUNCH(kernel, grid, Cfg::kThreads, Cfg::kSmemBytes,
                FRNN_CURRENT_STREAM, p);
    h_prev = p.h_out;
  }
  return {y, y[time_of(T - 1, T, reverse)].clone()};
}

template <class S>
T5 rnn_backward(const Tensor& dy_, const Tensor& dh_n_, const Tensor& x_, const Tensor& h0_,
                const Tensor& w_ih_, const Tensor& w_hh_, const Tensor& y_, bool relu,
                bool reverse) {
  using Cfg = kern::RnnBackwardCfg<S>;
  FRNN_DEVICE_GUARD(x_);
  const auto dy = dy_.contiguous(), dh_n = dh_n_.contiguous();
  const auto x = x_.contiguous(), h0 = h0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous(), y = y_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1);
  check_int_range("rnn_backward", B, 1, H, I);
  if (T == 0)
    return {at::zeros_like(x), dh_n.clone(), at::zeros_like(w_ih), at::zeros_like(w_hh),
            at::zeros({H}, x.options())};

  auto da = at::empty({T, B, H}, x.options());
  FRNN_POISON(da);

  kern::RnnBackwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.B = int(B);
  p.H = int(H);
  p.relu = relu ? 1 : 0;
  const dim3 grid = step_grid<Cfg>(B, H);
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = time_of(s, T, reverse);
    p.dy = dy.data_ptr<S>() + t * B * H;
    p.dh_n = s == T - 1 ? dh_n.data_ptr<S>() : nullptr;
    p.da_next = s == T - 1 ? nullptr : da.data_ptr<S>() + time_of(s + 1, T, reverse) * B * H;
    p.h_t = y.data_ptr<S>() + t * B * H;
    p.da_out = da.data_ptr<S>() + t * B * H;
    const auto kernel = &kern::rnn_backward_step_kernel<Cfg>;
    FRNN_LAUNCH(kernel, grid, Cfg::kThreads, Cfg::kSmemBytes,
                FRNN_CURRENT_STREAM, p);
  }
  const auto da2d = da.view({T * B, H});
  auto dh0 = at::mm(da[time_of(0, T, reverse)], w_hh);
  auto dx = at::mm(da2d, w_ih).view({T, B, I});
  auto dw_ih = at::mm(da2d.t(), x.view({T * B, I}));
  auto dw_hh = at::mm(da2d.t(), previous_hidden(y, h0, reverse).view({T * B, H}));
  return {dx, dh0, dw_ih, dw_hh, da2d.sum(0)};
}

}  // namespace stepwise
}  // namespace FRNN_BACKEND_NS
}  // namespace fusedrnn

// The entry points of csrc/ops.h for this backend: one macro per op, expanded in exactly one
// translation unit each (csrc/cuda/<cell>_<dir>.cu and csrc/simt/ops_<cell>.cpp), so the
// instantiations of the four dtypes are spread over several compiler processes.
#define FRNN_DEFINE_LSTM_FORWARD                                                               \
  namespace fusedrnn {                                                                         \
  namespace FRNN_BACKEND_NS {                                                                  \
  T5 lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,     \
                  const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,            \
                  bool reverse) {                                                              \
    return FRNN_DTYPE_SWITCH(x.scalar_type(), "lstm_forward", [&] {                            \
      return stepwise::lstm_forward<scalar_t>(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse);     \
    });                                                                                        \
  }                                                                                            \
  }                                                                                            \
  }

#define FRNN_DEFINE_LSTM_BACKWARD                                                              \
  namespace fusedrnn {                                                                         \
  namespace FRNN_BACKEND_NS {                                                                  \
  T6 lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& x,  \
                   const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, \
                   const Tensor& y, const Tensor& gates, const Tensor& cells, bool reverse) {  \
    return FRNN_DTYPE_SWITCH(x.scalar_type(), "lstm_backward", [&] {                           \
      return stepwise::lstm_backward<scalar_t>(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y,       \
                                               gates, cells, reverse);                         \
    });                                                                                        \
  }                                                                                            \
  }                                                                                            \
  }

#define FRNN_DEFINE_GRU_FORWARD                                                                \
  namespace fusedrnn {                                                                         \
  namespace FRNN_BACKEND_NS {                                                                  \
  T4 gru_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,    \
                 const OptTensor& b_ih, const OptTensor& b_hh, bool reverse) {                 \
    return FRNN_DTYPE_SWITCH(x.scalar_type(), "gru_forward", [&] {                             \
      return stepwise::gru_forward<scalar_t>(x, h0, w_ih, w_hh, b_ih, b_hh, reverse);          \
    });                                                                                        \
  }                                                                                            \
  }                                                                                            \
  }

#define FRNN_DEFINE_GRU_BACKWARD                                                               \
  namespace fusedrnn {                                                                         \
  namespace FRNN_BACKEND_NS {                                                                  \
  T6 gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,     \
                  const Tensor& w_ih, const Tensor& w_hh, const Tensor& y,                     \
                  const Tensor& gates, const Tensor& ghn, bool reverse) {                      \
    return FRNN_DTYPE_SWITCH(x.scalar_type(), "gru_backward", [&] {                            \
      return stepwise::gru_backward<scalar_t>(dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn,      \
                                              reverse);                                        \
    });                                                                                        \
  }                                                                                            \
  }                                                                                            \
  }

#define FRNN_DEFINE_RNN_FORWARD                                                                \
  namespace fusedrnn {                                                                         \
  namespace FRNN_BACKEND_NS {                                                                  \
  T2 rnn_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,    \
                 const OptTensor& b_ih, const OptTensor& b_hh, bool relu, bool reverse) {      \
    return FRNN_DTYPE_SWITCH(x.scalar_type(), "rnn_forward", [&] {                             \
      return stepwise::rnn_forward<scalar_t>(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse);    \
    });                                                                                        \
  }                                                                                            \
  }                                                                                            \
  }

#define FRNN_DEFINE_RNN_BACKWARD                                                               \
  namespace fusedrnn {                                                                         \
  namespace FRNN_BACKEND_NS {                                                                  \
  T5 rnn_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,     \
                  const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, bool relu,          \
                  bool reverse) {                                                              \
    return FRNN_DTYPE_SWITCH(x.scalar_type(), "rnn_backward", [&] {                            \
      return stepwise::rnn_backward<scalar_t>(dy, dh_n, x, h0, w_ih, w_hh, y, relu, reverse);  \
    });                                                                                        \
  }                                                                                            \
  }                                                                                            \
  }
