// CPU backend, GRU with the reset gate before the recurrent product (contract:
// gru_reset_before.h). Per step: h W_{hr,hz}^T into a [B,2H] scratch, a pass that forms r, z
// and r * h, then (r * h) W_hn^T into a [B,H] scratch and a pass that forms n and h' (the
// passes vectorised per instruction set: pointwise.h). Backward
// per step mirrors it: a pass for da_z, da_n, then drh = da_n W_hn, a pass for da_r, then
// dh_{t-1} += [da_r, da_z] W_{hr,hz}; the weight gradients are GEMMs over all rows after the
// loop. The input projection is hoisted or per step as for the other cells (matmul.h); without
// save the steps run in chunks whose gates and rh are scratch (chunks.h).
#include "cpu/gru_reset_before.h"

#include "cpu/chunks.h"
#include "cpu/common.h"
#include "cpu/matmul.h"
#include "cpu/pointwise.h"

namespace fusedrnn {
namespace cpu {

namespace {

// x [N,I] -> y [N,H], gates [N,3H] (activations r, z, n), rh [N,H]; h [B,H] enters as h0 and
// leaves as h_n. save=false: gates and rh are the scratch of one chunk (rows from its first).
template <class S>
void forward_steps(const Steps& all, const std::vector<StepChunk>& chunks, const Tensor& x,
                   const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                   const OptTensor& b_hh, bool reverse, bool save, Tensor& y, Tensor& gates,
                   Tensor& rh, Tensor& h) {
  const int64_t H = w_hh.size(1), G = 3 * H, I = w_ih.size(1);
  if (all.N == 0) return;
  auto bias_ih = b_ih ? b_ih->contiguous() : Tensor();
  auto bias_hh = b_hh ? b_hh->contiguous() : Tensor();
  const S* bhh = b_hh ? bias_hh.data_ptr<S>() : nullptr;
  const S* bih = b_ih ? bias_ih.data_ptr<S>() : nullptr;
  const S* whh = w_hh.data_ptr<S>();
  // W_hh's rows [0, 2H) (r, z) and [2H, 3H) (n) as two products, each packed once for all steps.
  const Weight<S> w_rz(true, H, 2 * H, whh, H, all.N), w_n(true, H, H, whh + 2 * H * H, H, all.N);
  std::optional<Weight<S>> wih;
  if (!save) wih.emplace(true, I, G, w_ih.data_ptr<S>(), I, all.N);
  auto scratch = at::empty({all.B, 3 * H}, x.options());  // [B,2H] r,z products, [B,H] n product
  S* g_rz = scratch.data_ptr<S>();
  S* g_n = g_rz + all.B * 2 * H;
  S* hs = h.data_ptr<S>();
  for (const auto& chunk : chunks) {
    const Steps& st = chunk.st;
    const int64_t r0 = chunk.row0;
    S* gates0 = gates.data_ptr<S>() + (save ? r0 * G : 0);
    S* rh0 = rh.data_ptr<S>() + (save ? r0 * H : 0);
    S* y0 = y.data_ptr<S>() + r0 * H;
    std::optional<InputProjection<S>> in;
    if (save)
      in.emplace(st, x.data_ptr<S>() + r0 * I, I, w_ih.data_ptr<S>(), G, bih, gates0, G);
    else
      wih->mul(st.N, false, x.data_ptr<S>() + r0 * I, I, S(0), gates0, G, bih);
    for (int64_t s = 0; s < st.T; ++s) {
      const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
      S* g = gates0 + off * G;
      S* rht = rh0 + off * H;
      S* yt = y0 + off * H;
      if (in) in->step(off, n);
      w_rz.mul(n, false, hs, H, S(0), g_rz, 2 * H, bhh);
      pointwise<S>().grurb_forward_rz(n, H, g, g_rz, 2 * H, hs, rht);
      w_n.mul(n, false, rht, H, S(0), g_n, H, bhh ? bhh + 2 * H : nullptr);
      pointwise<S>().grurb_forward_n(n, H, g, g_n, hs, yt, nullptr, false);
    }
  }
}

// dh [B,H] enters as the gradient of h_n and leaves as that of h0. h_prev [N,H]: the state each
// row started from. dg [N,3H]: the pre-activation gradients (da_r, da_z, da_n).
template <class S>
void backward_steps(const Steps& st, const Tensor& dy, const Tensor& gates,
                    const Tensor& h_prev, const Tensor& w_hh, bool reverse, Tensor& dh,
                    Tensor& dg) {
  const int64_t H = w_hh.size(1), G = 3 * H;
  const S* whh = w_hh.data_ptr<S>();
  // drh = da_n W_hn; dh_{t-1} += [da_r, da_z] W_{hr,hz}
  const Weight<S> w_n(false, H, H, whh + 2 * H * H, H, st.N), w_rz(false, 2 * H, H, whh, H, st.N);
  auto drh_ = at::empty({st.B, H}, dy.options());
  S* drh = drh_.data_ptr<S>();
  S* dhs = dh.data_ptr<S>();
  for (int64_t s = st.T - 1; s >= 0; --s) {
    const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
    const S* g = gates.data_ptr<S>() + off * G;
    const S* hp = h_prev.data_ptr<S>() + off * H;
    const S* dyt = dy.data_ptr<S>() + off * H;
    S* dgt = dg.data_ptr<S>() + off * G;
    pointwise<S>().grurb_backward_zn(n, H, g, hp, dhs, dyt, dgt, false);
    w_n.mul(n, false, dgt + 2 * H, G, S(0), drh, H);
    pointwise<S>().grurb_backward_r(n, H, g, hp, drh, dhs, dgt);
    w_rz.mul(n, false, dgt, G, S(1), dhs, H);
  }
}

T4 forward(const Steps& st, const Tensor& x_, const Tensor& h0, const Tensor& w_ih_,
           const Tensor& w_hh_, const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
           bool save) {
  auto x = x_.contiguous().view({st.N, x_.size(-1)});
  auto w_hh = w_hh_.contiguous(), w_ih = w_ih_.contiguous();
  const int64_t H = w_hh.size(1);
  auto y = empty_big({st.N, H}, x.options());
  const auto chunks = chunks_of(st, reverse, save, 4 * H * int64_t(x.element_size()));
  const int64_t rows = max_rows(chunks);
  auto gates = empty_big({rows, 3 * H}, x.options());
  auto rh = empty_big({rows, H}, x.options());
  auto h = h0.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_rb_forward_cpu", [&] {
    forward_steps<scalar_t>(st, chunks, x, w_ih, w_hh, b_ih, b_hh, reverse, save, y, gates, rh,
                            h);
  });
  if (!save) gates = at::empty({0}, x.options()), rh = at::empty({0}, x.options());
  return {y, h, gates, rh};
}

T6 backward(const Steps& st, const Tensor& dy_, const Tensor& dh_n, const Tensor& x_,
            const Tensor& h0, const Tensor& w_ih_, const Tensor& w_hh_, const Tensor& y_,
            const Tensor& gates_, const Tensor& rh_, bool reverse) {
  const int64_t H = w_hh_.size(1);
  auto flat = [&](const Tensor& t) { return contiguous_big(t).view({st.N, t.size(-1)}); };
  auto dy = flat(dy_), x = flat(x_), y = flat(y_), gates = flat(gates_), rh = flat(rh_);
  auto w_hh = w_hh_.contiguous(), w_ih = w_ih_.contiguous();
  const int64_t I = w_ih.size(1), G = 3 * H, N = st.N;
  auto dh = dh_n.contiguous().clone();
  auto dg = empty_big({N, G}, x.options());
  auto h_prev = previous_rows(y, h0.contiguous(), st, reverse);
  auto dx = empty_big({N, I}, x.options());
  Tensor dw_ih, dw_hh;
  {
    const WeightBuffers sized_by_weights;  // the cache's rule (big_buffer.h)
    dw_ih = empty_big({G, I}, x.options());
    dw_hh = empty_big({G, H}, x.options());
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_rb_backward_cpu", [&] {
    using S = scalar_t;
    backward_steps<S>(st, dy, gates, h_prev, w_hh, reverse, dh, dg);
    const S* d = dg.data_ptr<S>();
    matmul_weight<S>(false, false, N, I, G, d, G, w_ih.data_ptr<S>(), I, S(0),
                     dx.data_ptr<S>(), I);
    matmul<S>(true, false, G, I, N, d, G, x.data_ptr<S>(), I, S(0), dw_ih.data_ptr<S>(), I);
    // dW_{hr,hz} = [da_r, da_z]^T h_{t-1}; dW_hn = da_n^T (r * h_{t-1})
    matmul<S>(true, false, 2 * H, H, N, d, G, h_prev.data_ptr<S>(), H, S(0),
              dw_hh.data_ptr<S>(), H);
    matmul<S>(true, false, H, H, N, d + 2 * H, G, rh.data_ptr<S>(), H, S(0),
              dw_hh.data_ptr<S>() + 2 * H * H, H);
  });
  auto db = dg.sum(0);
  return {dx.view(x_.sizes()), dh, dw_ih, dw_hh, db, db.clone()};
}

}  // namespace

T4 gru_rb_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                  const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                  const OptTensor& batch_sizes, bool save) {
  if (is_half(x))
    return down(gru_rb_forward(up(x), up(h0), up(w_ih), up(w_hh), up(b_ih), up(b_hh), reverse,
                               batch_sizes, save),
                x.scalar_type());
  if (batch_sizes)
    return forward(Steps::packed(*batch_sizes), x, h0, w_ih, w_hh, b_ih, b_hh, reverse, save);
  const int64_t T = x.size(0), B = x.size(1);
  auto [y, h, gates, rh] =
      forward(Steps::dense(T, B), x, h0, w_ih, w_hh, b_ih, b_hh, reverse, save);
  if (!save) return {as_steps(y, T, B), h, gates, rh};
  return {as_steps(y, T, B), h, as_steps(gates, T, B), as_steps(rh, T, B)};
}

T6 gru_rb_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                   const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, const Tensor& gates,
                   const Tensor& rh, bool reverse, const OptTensor& batch_sizes) {
  if (is_half(x))
    return down(gru_rb_backward(up(dy), up(dh_n), up(x), up(h0), up(w_ih), up(w_hh), up(y),
                                up(gates), up(rh), reverse, batch_sizes),
                x.scalar_type());
  const auto st = batch_sizes ? Steps::packed(*batch_sizes) : Steps::dense(x.size(0), x.size(1));
  return backward(st, dy, dh_n, x, h0, w_ih, w_hh, y, gates, rh, reverse);
}

}  // namespace cpu
}  // namespace fusedrnn
