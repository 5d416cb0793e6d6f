// CPU backend, LSTM: hoisted input GEMM, per step one GEMM into the saved-gates buffer plus one
// fused pointwise pass (csrc/cells); backward sweeps time in reverse, then the weight gradients,
// dx and db as single GEMMs over all T*B rows. Shapes and saved tensors: csrc/ops.h.
#include "cells/cells.h"
#include "cpu/common.h"

namespace fusedrnn {
namespace cpu {

namespace {

template <class S>
void lstm_forward_impl(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                       const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                       bool reverse, Tensor& y, Tensor& gates, Tensor& cells_) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1), G = 4 * H;
  if (T == 0) return;
  // Input projection of every step, with both biases, straight into the gates buffer.
  auto g2d = gates.view({T * B, G});
  auto x2d = x.view({T * B, I});
  if (b_ih) {
    at::addmm_out(g2d, (*b_ih + *b_hh), x2d, w_ih.t());
  } else {
    at::mm_out(g2d, x2d, w_ih.t());
  }
  const S* whh = w_hh.data_ptr<S>();
  S* gp = gates.data_ptr<S>();
  S* yp = y.data_ptr<S>();
  S* cp = cells_.data_ptr<S>();
  const S* h_prev = h0.data_ptr<S>();
  const S* c_prev = c0.data_ptr<S>();
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = time_of(s, T, reverse);
    S* g = gp + t * B * G;
    S* h = yp + t * B * H;
    S* c = cp + t * B * H;
    gemm_rm<S>(false, true, B, G, H, S(1), h_prev, H, whh, H, S(1), g, G);
    pointwise_for(B * H, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const int64_t b = e / H, j = e - b * H;
        S* gb = g + b * G;
        S i, f, gg, o;
        cells::lstm_forward<S>(gb[j], gb[H + j], gb[2 * H + j], gb[3 * H + j], c_prev[e], i, f, gg,
                               o, c[e], h[e]);
        gb[j] = i;
        gb[H + j] = f;
        gb[2 * H + j] = gg;
        gb[3 * H + j] = o;
      }
    });
    h_prev = h;
    c_prev = c;
  }
}

template <class S>
void lstm_backward_impl(const Tensor& dy, const Tensor& h0, const Tensor& c0, const Tensor& y,
                        const Tensor& gates, const Tensor& cells_, const Tensor& w_hh,
                        bool reverse, Tensor& dh, Tensor& dc, Tensor& da) {
  const int64_t T = y.size(0), B = y.size(1), H = w_hh.size(1), G = 4 * H;
  const S* whh = w_hh.data_ptr<S>();
  const S* dyp = dy.data_ptr<S>();
  const S* gp = gates.data_ptr<S>();
  const S* cp = cells_.data_ptr<S>();
  const S* c0p = c0.data_ptr<S>();
  S* dap = da.data_ptr<S>();
  S* dhp = dh.data_ptr<S>();
  S* dcp = dc.data_ptr<S>();
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = time_of(s, T, reverse);
    const S* g = gp + t * B * G;
    const S* c = cp + t * B * H;
    const S* c_prev = s == 0 ? c0p : cp + time_of(s - 1, T, reverse) * B * H;
    const S* dyt = dyp + t * B * H;
    S* dat = dap + t * B * G;
    pointwise_for(B * H, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const int64_t b = e / H, j = e - b * H;
        const S* gb = g + b * G;
        S* db = dat + b * G;
        cells::lstm_backward<S>(gb[j], gb[H + j], gb[2 * H + j], gb[3 * H + j], c[e], c_prev[e],
                                dhp[e] + dyt[e], dcp[e], db[j], db[H + j], db[2 * H + j],
                                db[3 * H + j], dcp[e]);
      }
    });
    // dh_{t-1} = da_t W_hh
    gemm_rm<S>(false, false, B, H, G, S(1), dat, G, whh, H, S(0), dhp, H);
  }
}

}  // namespace

T5 lstm_forward(const Tensor& x_, const Tensor& h0_, const Tensor& c0_, const Tensor& w_ih_,
                const Tensor& w_hh_, const OptTensor& b_ih, const OptTensor& b_hh, bool reverse) {
  if (is_half(x_))
    return down(lstm_forward(up(x_), up(h0_), up(c0_), up(w_ih_), up(w_hh_), up(b_ih), up(b_hh),
                             reverse),
                x_.scalar_type());
  auto x = x_.contiguous(), h0 = h0_.contiguous(), c0 = c0_.contiguous();
  auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1);
  auto y = at::empty({T, B, H}, x.options());
  auto gates = at::empty({T, B, 4 * H}, x.options());
  auto cells_ = at::empty({T, B, H}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_forward_cpu", [&] {
    lstm_forward_impl<scalar_t>(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, y, gates, cells_);
  });
  const int64_t last = reverse ? 0 : T - 1;
  auto h_n = T ? y[last].clone() : h0.clone();
  auto c_n = T ? cells_[last].clone() : c0.clone();
  return {y, h_n, c_n, gates, cells_};
}

T6 lstm_backward(const Tensor& dy_, const Tensor& dh_n, const Tensor& dc_n, const Tensor& x_,
                 const Tensor& h0_, const Tensor& c0_, const Tensor& w_ih_, const Tensor& w_hh_,
                 const Tensor& y_, const Tensor& gates_, const Tensor& cells_in, bool reverse) {
  if (is_half(x_))
    return down(lstm_backward(up(dy_), up(dh_n), up(dc_n), up(x_), up(h0_), up(c0_), up(w_ih_),
                              up(w_hh_), up(y_), up(gates_), up(cells_in), reverse),
                x_.scalar_type());
  auto dy = dy_.contiguous(), x = x_.contiguous(), h0 = h0_.contiguous(), c0 = c0_.contiguous();
  auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous(), y = y_.contiguous();
  auto gates = gates_.contiguous(), cells_ = cells_in.contiguous();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1), G = 4 * H;
  auto dh = dh_n.contiguous().clone();
  auto dc = dc_n.contiguous().clone();
  auto da = at::empty({T, B, G}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_backward_cpu", [&] {
    lstm_backward_impl<scalar_t>(dy, h0, c0, y, gates, cells_, w_hh, reverse, dh, dc, da);
  });
  auto da2d = da.view({T * B, G});
  auto dx = at::mm(da2d, w_ih).view({T, B, I});
  auto dw_ih = at::mm(da2d.t(), x.view({T * B, I}));
  auto dw_hh = at::mm(da2d.t(), previous_hidden(y, h0, reverse).reshape({T * B, H}));
  auto db = da2d.sum(0);
  return {dx, dh, dc, dw_ih, dw_hh, db};
}

}  // namespace cpu
}  // namespace fusedrnn
