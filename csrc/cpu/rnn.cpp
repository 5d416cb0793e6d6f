// CPU backend, Elman RNN (tanh or relu): the input projection is written straight into y, each
// step adds h_{t-1} W_hh^T in place and applies the activation. Backward needs only y.
// Shapes: csrc/ops.h.
#include "cells/cells.h"
#include "cpu/common.h"

namespace fusedrnn {
namespace cpu {

namespace {

template <class S>
void rnn_forward_impl(const Tensor& h0, const Tensor& w_hh, cells::Act act, bool reverse,
                      Tensor& y) {
  const int64_t T = y.size(0), B = y.size(1), H = w_hh.size(1);
  const S* whh = w_hh.data_ptr<S>();
  S* yp = y.data_ptr<S>();
  const S* h_prev = h0.data_ptr<S>();
  for (int64_t s = 0; s < T; ++s) {
    S* h = yp + time_of(s, T, reverse) * B * H;
    gemm_rm<S>(false, true, B, H, H, S(1), h_prev, H, whh, H, S(1), h, H);
    pointwise_for(B * H, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) h[e] = cells::rnn_forward<S>(act, h[e]);
    });
    h_prev = h;
  }
}

template <class S>
void rnn_backward_impl(const Tensor& dy, const Tensor& y, const Tensor& w_hh, cells::Act act,
                       bool reverse, Tensor& dh, Tensor& da) {
  const int64_t T = y.size(0), B = y.size(1), H = w_hh.size(1);
  const S* whh = w_hh.data_ptr<S>();
  const S* yp = y.data_ptr<S>();
  const S* dyp = dy.data_ptr<S>();
  S* dap = da.data_ptr<S>();
  S* dhp = dh.data_ptr<S>();
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t off = time_of(s, T, reverse) * B * H;
    S* dat = dap + off;
    pointwise_for(B * H, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e)
        dat[e] = cells::rnn_backward<S>(act, yp[off + e], dhp[e] + dyp[off + e]);
    });
    gemm_rm<S>(false, false, B, H, H, S(1), dat, H, whh, H, S(0), dhp, H);
  }
}

}  // namespace

T2 rnn_forward(const Tensor& x_, const Tensor& h0_, const Tensor& w_ih_, const Tensor& w_hh_,
               const OptTensor& b_ih, const OptTensor& b_hh, bool relu, bool reverse) {
  if (is_half(x_))
    return down(rnn_forward(up(x_), up(h0_), up(w_ih_), up(w_hh_), up(b_ih), up(b_hh), relu,
                            reverse),
                x_.scalar_type());
  auto x = x_.contiguous(), h0 = h0_.contiguous(), w_hh = w_hh_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1);
  auto y = at::empty({T, B, H}, x.options());
  if (T > 0) {
    auto y2d = y.view({T * B, H});
    if (b_ih) {
      at::addmm_out(y2d, *b_ih + *b_hh, x.view({T * B, I}), w_ih_.t());
    } else {
      at::mm_out(y2d, x.view({T * B, I}), w_ih_.t());
    }
  }
  const auto act = relu ? cells::Act::Relu : cells::Act::Tanh;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_forward_cpu",
                             [&] { rnn_forward_impl<scalar_t>(h0, w_hh, act, reverse, y); });
  auto h_n = T ? y[reverse ? 0 : T - 1].clone() : h0.clone();
  return {y, h_n};
}

T5 rnn_backward(const Tensor& dy_, const Tensor& dh_n, const Tensor& x_, const Tensor& h0_,
                const Tensor& w_ih_, const Tensor& w_hh_, const Tensor& y_, bool relu,
                bool reverse) {
  if (is_half(x_))
    return down(rnn_backward(up(dy_), up(dh_n), up(x_), up(h0_), up(w_ih_), up(w_hh_), up(y_),
                             relu, reverse),
                x_.scalar_type());
  auto dy = dy_.contiguous(), x = x_.contiguous(), h0 = h0_.contiguous();
  auto w_hh = w_hh_.contiguous(), y = y_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1);
  auto dh = dh_n.contiguous().clone();
  auto da = at::empty({T, B, H}, x.options());
  const auto act = relu ? cells::Act::Relu : cells::Act::Tanh;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_backward_cpu", [&] {
    rnn_backward_impl<scalar_t>(dy, y, w_hh, act, reverse, dh, da);
  });
  auto da2d = da.view({T * B, H});
  auto dx = at::mm(da2d, w_ih_).view({T, B, I});
  auto dw_ih = at::mm(da2d.t(), x.view({T * B, I}));
  auto dw_hh = at::mm(da2d.t(), previous_hidden(y, h0, reverse).reshape({T * B, H}));
  return {dx, dh, dw_ih, dw_hh, da2d.sum(0)};
}

}  // namespace cpu
}  // namespace fusedrnn
