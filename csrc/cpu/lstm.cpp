// CPU backend, LSTM: hoisted input GEMM, per step one GEMM into the saved-gates buffer plus one
// fused pointwise pass (csrc/cells); backward sweeps time in reverse, then the weight gradients,
// dx and db as single GEMMs over all rows. Dense and packed input share one implementation
// (csrc/cpu/common.h: Steps). Shapes and saved tensors: csrc/ops.h.
#include "cells/cells.h"
#include "cpu/common.h"

namespace fusedrnn {
namespace cpu {

namespace {

// x [N,I] -> y, cells [N,H], gates [N,4H]; h, c [B,H] enter as the initial states and leave as
// the final ones (a row keeps the state of its last active step).
template <class S>
void forward_steps(const Steps& st, const Tensor& x, const Tensor& w_ih, const Tensor& w_hh,
                   const OptTensor& b_ih, const OptTensor& b_hh, bool reverse, Tensor& y,
                   Tensor& gates, Tensor& cells_, Tensor& h, Tensor& c) {
  const int64_t H = w_hh.size(1), G = 4 * H;
  if (st.N == 0) return;
  if (b_ih) {  // the input projection of every step, with both biases, into the gates buffer
    at::addmm_out(gates, *b_ih + *b_hh, x, w_ih.t());
  } else {
    at::mm_out(gates, x, w_ih.t());
  }
  const S* whh = w_hh.data_ptr<S>();
  S* hs = h.data_ptr<S>();
  S* cs = c.data_ptr<S>();
  for (int64_t s = 0; s < st.T; ++s) {
    const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
    S* g = gates.data_ptr<S>() + off * G;
    S* yt = y.data_ptr<S>() + off * H;
    S* ct = cells_.data_ptr<S>() + off * H;
    gemm_rm<S>(false, true, n, G, H, S(1), hs, H, whh, H, S(1), g, G);
    pointwise_for(n * H, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const int64_t b = e / H, j = e - b * H;
        S* gb = g + b * G;
        S i, f, gg, o;
        cells::lstm_forward<S>(gb[j], gb[H + j], gb[2 * H + j], gb[3 * H + j], cs[e], i, f, gg,
                               o, ct[e], yt[e]);
        gb[j] = i, gb[H + j] = f, gb[2 * H + j] = gg, gb[3 * H + j] = o;
        hs[e] = yt[e];
        cs[e] = ct[e];
      }
    });
  }
}

// dh, dc [B,H] enter as the gradients of h_n, c_n and leave as those of h0, c0. c_prev [N,H]:
// the cell state each row started from. da [N,4H] receives the gate pre-activation gradients.
template <class S>
void backward_steps(const Steps& st, const Tensor& dy, const Tensor& gates, const Tensor& cells_,
                    const Tensor& c_prev, const Tensor& w_hh, bool reverse, Tensor& dh,
                    Tensor& dc, Tensor& da) {
  const int64_t H = w_hh.size(1), G = 4 * H;
  const S* whh = w_hh.data_ptr<S>();
  S* dhs = dh.data_ptr<S>();
  S* dcs = dc.data_ptr<S>();
  for (int64_t s = st.T - 1; s >= 0; --s) {
    const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
    const S* g = gates.data_ptr<S>() + off * G;
    const S* ct = cells_.data_ptr<S>() + off * H;
    const S* cp = c_prev.data_ptr<S>() + off * H;
    const S* dyt = dy.data_ptr<S>() + off * H;
    S* dat = da.data_ptr<S>() + off * G;
    pointwise_for(n * H, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const int64_t b = e / H, j = e - b * H;
        const S* gb = g + b * G;
        S* db = dat + b * G;
        cells::lstm_backward<S>(gb[j], gb[H + j], gb[2 * H + j], gb[3 * H + j], ct[e], cp[e],
                                dhs[e] + dyt[e], dcs[e], db[j], db[H + j], db[2 * H + j],
                                db[3 * H + j], dcs[e]);
      }
    });
    gemm_rm<S>(false, false, n, H, G, S(1), dat, G, whh, H, S(0), dhs, H);  // dh = da W_hh
  }
}

T5 forward(const Steps& st, const Tensor& x_, const Tensor& h0, const Tensor& c0,
           const Tensor& w_ih, const Tensor& w_hh_, const OptTensor& b_ih, const OptTensor& b_hh,
           bool reverse) {
  auto x = x_.contiguous().view({st.N, x_.size(-1)});
  auto w_hh = w_hh_.contiguous();
  const int64_t H = w_hh.size(1);
  auto y = at::empty({st.N, H}, x.options());
  auto gates = at::empty({st.N, 4 * H}, x.options());
  auto cells_ = at::empty({st.N, H}, x.options());
  auto h = h0.contiguous().clone(), c = c0.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_forward_cpu", [&] {
    forward_steps<scalar_t>(st, x, w_ih, w_hh, b_ih, b_hh, reverse, y, gates, cells_, h, c);
  });
  return {y, h, c, gates, cells_};
}

T6 backward(const Steps& st, const Tensor& dy_, const Tensor& dh_n, const Tensor& dc_n,
            const Tensor& x_, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
            const Tensor& w_hh_, const Tensor& y_, const Tensor& gates_, const Tensor& cells_in,
            bool reverse) {
  const int64_t H = w_hh_.size(1);
  auto flat = [&](const Tensor& t) { return t.contiguous().view({st.N, t.size(-1)}); };
  auto dy = flat(dy_), x = flat(x_), y = flat(y_), gates = flat(gates_), cells_ = flat(cells_in);
  auto w_hh = w_hh_.contiguous();
  auto dh = dh_n.contiguous().clone(), dc = dc_n.contiguous().clone();
  auto da = at::empty({st.N, 4 * H}, x.options());
  auto c_prev = previous_rows(cells_, c0.contiguous(), st, reverse);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_backward_cpu", [&] {
    backward_steps<scalar_t>(st, dy, gates, cells_, c_prev, w_hh, reverse, dh, dc, da);
  });
  auto dx = at::mm(da, w_ih);
  auto dw_ih = at::mm(da.t(), x);
  auto dw_hh = at::mm(da.t(), previous_rows(y, h0.contiguous(), st, reverse));
  return {dx.view(x_.sizes()), dh, dc, dw_ih, dw_hh, da.sum(0)};
}

}  // namespace

T5 lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                const OptTensor& batch_sizes) {
  if (is_half(x))
    return down(lstm_forward(up(x), up(h0), up(c0), up(w_ih), up(w_hh), up(b_ih), up(b_hh),
                             reverse, batch_sizes),
                x.scalar_type());
  if (batch_sizes)
    return forward(Steps::packed(*batch_sizes), x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse);
  const int64_t T = x.size(0), B = x.size(1);
  auto [y, h, c, gates, cells_] =
      forward(Steps::dense(T, B), x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse);
  return {as_steps(y, T, B), h, c, as_steps(gates, T, B), as_steps(cells_, T, B)};
}

T6 lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& x,
                 const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                 const Tensor& y, const Tensor& gates, const Tensor& cells_, bool reverse,
                 const OptTensor& batch_sizes) {
  if (is_half(x))
    return down(lstm_backward(up(dy), up(dh_n), up(dc_n), up(x), up(h0), up(c0), up(w_ih),
                              up(w_hh), up(y), up(gates), up(cells_), reverse, batch_sizes),
                x.scalar_type());
  const auto st = batch_sizes ? Steps::packed(*batch_sizes) : Steps::dense(x.size(0), x.size(1));
  return backward(st, dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells_, reverse);
}

}  // namespace cpu
}  // namespace fusedrnn
