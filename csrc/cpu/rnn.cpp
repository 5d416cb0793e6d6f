// CPU backend, Elman RNN (tanh or relu): the input projection is written straight into y
// (hoisted or per step, matmul.h: InputProjection), each step adds h_{t-1} W_hh^T in place and
// applies the activation. Backward needs only y. Dense
// and packed input share one implementation (Steps). Shapes: csrc/ops.h.
#include "cells/cells.h"
#include "cpu/common.h"
#include "cpu/matmul.h"
#include "cpu/pointwise.h"

namespace fusedrnn {
namespace cpu {

namespace {

// in: the input projections into y [N,H] (hoisted or per step); y receives the outputs; h [B,H]
// enters as h0 and leaves as h_n.
template <class S>
void forward_steps(const Steps& st, const InputProjection<S>& in, const Tensor& w_hh,
                   cells::Act act, bool reverse, Tensor& y, Tensor& h) {
  const int64_t H = w_hh.size(1);
  const Weight<S> whh(true, H, H, w_hh.data_ptr<S>(), H, st.N);  // packed once for all steps
  S* hs = h.data_ptr<S>();
  for (int64_t s = 0; s < st.T; ++s) {
    const int64_t t = time_of(s, st.T, reverse), n = st.count[t];
    S* yt = y.data_ptr<S>() + st.offset[t] * H;
    in.step(st.offset[t], n);
    whh.mul(n, false, hs, H, S(1), yt, H);
    pointwise<S>().rnn_forward(n, H, static_cast<int>(act), yt, hs);
  }
}

// dh [B,H] enters as the gradient of h_n and leaves as that of h0; da [N,H] receives the
// pre-activation gradients.
template <class S>
void backward_steps(const Steps& st, const Tensor& dy, const Tensor& y, const Tensor& w_hh,
                    cells::Act act, bool reverse, Tensor& dh, Tensor& da) {
  const int64_t H = w_hh.size(1);
  const Weight<S> whh(false, H, H, w_hh.data_ptr<S>(), H, st.N);
  S* dhs = dh.data_ptr<S>();
  for (int64_t s = st.T - 1; s >= 0; --s) {
    const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t] * H;
    const S* yt = y.data_ptr<S>() + off;
    const S* dyt = dy.data_ptr<S>() + off;
    S* dat = da.data_ptr<S>() + off;
    pointwise<S>().rnn_backward(n, H, static_cast<int>(act), yt, dhs, dyt, dat);
    whh.mul(n, false, dat, H, S(0), dhs, H);
  }
}

T2 forward(const Steps& st, const Tensor& x_, const Tensor& h0, const Tensor& w_ih_,
           const Tensor& w_hh_, const OptTensor& b_ih, const OptTensor& b_hh, bool relu,
           bool reverse) {
  auto x = x_.contiguous().view({st.N, x_.size(-1)});
  auto w_hh = w_hh_.contiguous(), w_ih = w_ih_.contiguous();
  const int64_t H = w_hh.size(1), I = w_ih.size(1);
  auto y = empty_big({st.N, H}, x.options());
  auto bias = b_ih ? (*b_ih + *b_hh).contiguous() : Tensor();
  auto h = h0.contiguous().clone();
  const auto act = relu ? cells::Act::Relu : cells::Act::Tanh;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_forward_cpu", [&] {
    using S = scalar_t;
    if (st.N == 0) return;
    const InputProjection<S> in(st, x.data_ptr<S>(), I, w_ih.data_ptr<S>(), H,
                                b_ih ? bias.data_ptr<S>() : nullptr, y.data_ptr<S>(), H);
    forward_steps<S>(st, in, w_hh, act, reverse, y, h);
  });
  return {y, h};
}

T5 backward(const Steps& st, const Tensor& dy_, const Tensor& dh_n, const Tensor& x_,
            const Tensor& h0, const Tensor& w_ih_, const Tensor& w_hh_, const Tensor& y_,
            bool relu, bool reverse) {
  auto flat = [&](const Tensor& t) { return contiguous_big(t).view({st.N, t.size(-1)}); };
  auto dy = flat(dy_), x = flat(x_), y = flat(y_);
  auto w_hh = w_hh_.contiguous(), w_ih = w_ih_.contiguous();
  const int64_t H = w_hh.size(1), I = w_ih.size(1), N = st.N;
  auto dh = dh_n.contiguous().clone();
  auto da = empty_big(y.sizes(), y.options());
  auto h_prev = previous_rows(y, h0.contiguous(), st, reverse);
  auto dx = empty_big({N, I}, x.options());
  Tensor dw_ih, dw_hh;
  {
    const WeightBuffers sized_by_weights;  // the cache's rule (big_buffer.h)
    dw_ih = empty_big({H, I}, x.options());
    dw_hh = empty_big({H, H}, x.options());
  }
  const auto act = relu ? cells::Act::Relu : cells::Act::Tanh;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_backward_cpu", [&] {
    using S = scalar_t;
    backward_steps<S>(st, dy, y, w_hh, act, reverse, dh, da);
    const S* dap = da.data_ptr<S>();
    matmul_weight<S>(false, false, N, I, H, dap, H, w_ih.data_ptr<S>(), I, S(0),
                     dx.data_ptr<S>(), I);
    matmul<S>(true, false, H, I, N, dap, H, x.data_ptr<S>(), I, S(0), dw_ih.data_ptr<S>(), I);
    matmul<S>(true, false, H, H, N, dap, H, h_prev.data_ptr<S>(), H, S(0), dw_hh.data_ptr<S>(),
              H);
  });
  return {dx.view(x_.sizes()), dh, dw_ih, dw_hh, da.sum(0)};
}

}  // namespace

T2 rnn_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
               const OptTensor& b_ih, const OptTensor& b_hh, bool relu, bool reverse,
               const OptTensor& batch_sizes) {
  if (is_half(x))
    return down(rnn_forward(up(x), up(h0), up(w_ih), up(w_hh), up(b_ih), up(b_hh), relu,
                            reverse, batch_sizes),
                x.scalar_type());
  if (batch_sizes)
    return forward(Steps::packed(*batch_sizes), x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse);
  const int64_t T = x.size(0), B = x.size(1);
  auto [y, h] = forward(Steps::dense(T, B), x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse);
  return {as_steps(y, T, B), h};
}

T5 rnn_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, bool relu, bool reverse,
                const OptTensor& batch_sizes) {
  if (is_half(x))
    return down(rnn_backward(up(dy), up(dh_n), up(x), up(h0), up(w_ih), up(w_hh), up(y), relu,
                             reverse, batch_sizes),
                x.scalar_type());
  const auto st = batch_sizes ? Steps::packed(*batch_sizes) : Steps::dense(x.size(0), x.size(1));
  return backward(st, dy, dh_n, x, h0, w_ih, w_hh, y, relu, reverse);
}

}  // namespace cpu
}  // namespace fusedrnn
