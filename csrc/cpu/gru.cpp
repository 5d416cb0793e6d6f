// CPU backend, GRU (reset-after, gates r,z,n): hoisted input GEMM into the saved-gates buffer;
// per step the recurrent GEMM into a [B,3H] scratch (kept apart from the input part because the
// reset gate multiplies only W_hn h + b_hn) and one fused pointwise pass (csrc/cells).
// Backward keeps the input-side and recurrent-side gate gradients apart (they differ in the n
// gate) and computes every weight gradient as one GEMM over T*B rows. Shapes: csrc/ops.h.
#include "cells/cells.h"
#include "cpu/common.h"

namespace fusedrnn {
namespace cpu {

namespace {

template <class S>
void gru_forward_impl(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                      const OptTensor& b_ih, const OptTensor& b_hh, bool reverse, Tensor& y,
                      Tensor& gates, Tensor& ghn) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1), G = 3 * H;
  if (T == 0) return;
  auto g2d = gates.view({T * B, G});
  auto x2d = x.view({T * B, I});
  if (b_ih) {
    at::addmm_out(g2d, *b_ih, x2d, w_ih.t());
  } else {
    at::mm_out(g2d, x2d, w_ih.t());
  }
  auto gh = at::empty({B, G}, x.options());
  const S* whh = w_hh.data_ptr<S>();
  const S* bhh = b_hh ? b_hh->data_ptr<S>() : nullptr;
  S* ghp = gh.data_ptr<S>();
  S* gp = gates.data_ptr<S>();
  S* yp = y.data_ptr<S>();
  S* np = ghn.data_ptr<S>();
  const S* h_prev = h0.data_ptr<S>();
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = time_of(s, T, reverse);
    S* g = gp + t * B * G;
    S* h = yp + t * B * H;
    S* hn_t = np + t * B * H;
    gemm_rm<S>(false, true, B, G, H, S(1), h_prev, H, whh, H, S(0), ghp, G);
    pointwise_for(B * H, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const int64_t b = e / H, j = e - b * H;
        S* gb = g + b * G;
        const S* hb = ghp + b * G;
        S hr = hb[j], hz = hb[H + j], hn = hb[2 * H + j];
        if (bhh) {
          hr += bhh[j];
          hz += bhh[H + j];
          hn += bhh[2 * H + j];
        }
        S r, z, n;
        cells::gru_forward<S>(gb[j], gb[H + j], gb[2 * H + j], hr, hz, hn, h_prev[e], r, z, n,
                              h[e]);
        gb[j] = r;
        gb[H + j] = z;
        gb[2 * H + j] = n;
        hn_t[e] = hn;
      }
    });
    h_prev = h;
  }
}

template <class S>
void gru_backward_impl(const Tensor& dy, const Tensor& h0, const Tensor& y, const Tensor& gates,
                       const Tensor& ghn, const Tensor& w_hh, bool reverse, Tensor& dh,
                       Tensor& dgx, Tensor& dgh) {
  const int64_t T = y.size(0), B = y.size(1), H = w_hh.size(1), G = 3 * H;
  const S* whh = w_hh.data_ptr<S>();
  const S* dyp = dy.data_ptr<S>();
  const S* gp = gates.data_ptr<S>();
  const S* np = ghn.data_ptr<S>();
  const S* yp = y.data_ptr<S>();
  const S* h0p = h0.data_ptr<S>();
  S* dxp = dgx.data_ptr<S>();
  S* dhg = dgh.data_ptr<S>();
  S* dhp = dh.data_ptr<S>();
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = time_of(s, T, reverse);
    const S* g = gp + t * B * G;
    const S* hn_t = np + t * B * H;
    const S* h_prev = s == 0 ? h0p : yp + time_of(s - 1, T, reverse) * B * H;
    const S* dyt = dyp + t * B * H;
    S* dxt = dxp + t * B * G;
    S* dht = dhg + t * B * G;
    pointwise_for(B * H, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const int64_t b = e / H, j = e - b * H;
        const S* gb = g + b * G;
        S* xb = dxt + b * G;
        S* hb = dht + b * G;
        S dhn;
        cells::gru_backward<S>(gb[j], gb[H + j], gb[2 * H + j], hn_t[e], h_prev[e],
                               dhp[e] + dyt[e], xb[j], xb[H + j], xb[2 * H + j], dhn, dhp[e]);
        hb[j] = xb[j];
        hb[H + j] = xb[H + j];
        hb[2 * H + j] = dhn;
      }
    });
    // dh_{t-1} = z * dh_t (written above) + dgh_t W_hh
    gemm_rm<S>(false, false, B, H, G, S(1), dht, G, whh, H, S(1), dhp, H);
  }
}

}  // namespace

T4 gru_forward(const Tensor& x_, const Tensor& h0_, const Tensor& w_ih_, const Tensor& w_hh_,
               const OptTensor& b_ih_, const OptTensor& b_hh_, bool reverse) {
  if (is_half(x_))
    return down(gru_forward(up(x_), up(h0_), up(w_ih_), up(w_hh_), up(b_ih_), up(b_hh_), reverse),
                x_.scalar_type());
  auto x = x_.contiguous(), h0 = h0_.contiguous();
  auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  OptTensor b_ih = b_ih_ ? OptTensor(b_ih_->contiguous()) : OptTensor();
  OptTensor b_hh = b_hh_ ? OptTensor(b_hh_->contiguous()) : OptTensor();
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1);
  auto y = at::empty({T, B, H}, x.options());
  auto gates = at::empty({T, B, 3 * H}, x.options());
  auto ghn = at::empty({T, B, H}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_forward_cpu", [&] {
    gru_forward_impl<scalar_t>(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, y, gates, ghn);
  });
  auto h_n = T ? y[reverse ? 0 : T - 1].clone() : h0.clone();
  return {y, h_n, gates, ghn};
}

T6 gru_backward(const Tensor& dy_, const Tensor& dh_n, const Tensor& x_, const Tensor& h0_,
                const Tensor& w_ih_, const Tensor& w_hh_, const Tensor& y_, const Tensor& gates_,
                const Tensor& ghn_, bool reverse) {
  if (is_half(x_))
    return down(gru_backward(up(dy_), up(dh_n), up(x_), up(h0_), up(w_ih_), up(w_hh_), up(y_),
                             up(gates_), up(ghn_), reverse),
                x_.scalar_type());
  auto dy = dy_.contiguous(), x = x_.contiguous(), h0 = h0_.contiguous();
  auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous(), y = y_.contiguous();
  auto gates = gates_.contiguous(), ghn = ghn_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1), G = 3 * H;
  auto dh = dh_n.contiguous().clone();
  auto dgx = at::empty({T, B, G}, x.options());
  auto dgh = at::empty({T, B, G}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_backward_cpu", [&] {
    gru_backward_impl<scalar_t>(dy, h0, y, gates, ghn, w_hh, reverse, dh, dgx, dgh);
  });
  auto dx2d = dgx.view({T * B, G}), dh2d = dgh.view({T * B, G});
  auto dx = at::mm(dx2d, w_ih).view({T, B, I});
  auto dw_ih = at::mm(dx2d.t(), x.view({T * B, I}));
  auto dw_hh = at::mm(dh2d.t(), previous_hidden(y, h0, reverse).reshape({T * B, H}));
  return {dx, dh, dw_ih, dw_hh, dx2d.sum(0), dh2d.sum(0)};
}

}  // namespace cpu
}  // namespace fusedrnn
