// CPU backend of the MUT1-3 cells' recurrent part (contract: mut.h). Per step: the products over
// h (r, and z for MUT2; MUT3's z over tanh(h), a second product) into a [B,2H] scratch, the pass
// that forms r, z and r * h, (r * h) W_hn^T and the pass that forms n and h' (the passes of Cho's
// GRU, pointwise.h, with mut = true). The input side xp is given: copied into the saved gates
// (or, without save, one step at a time into a scratch) and turned into activations in place.
// Backward mirrors it; the weight gradients are GEMMs over all rows after the loop.
#include "cpu/mut.h"

#include <cstring>
#include <optional>

#include "cpu/common.h"
#include "cpu/matmul.h"
#include "cpu/pointwise.h"

namespace fusedrnn {
namespace cpu {

namespace {

// xp [N,3H] -> y [N,H]; gates [N,3H] (save) or [B,3H] (one step's scratch); rh likewise [.,H];
// h [B,H] enters as h0 and leaves as h_n.
template <class S>
void forward_steps(const Steps& st, const Tensor& xp, const Tensor& w_hh, int64_t variant,
                   bool reverse, bool save, Tensor& y, Tensor& gates, Tensor& rh, Tensor& h) {
  const int64_t H = w_hh.size(1), G = 3 * H, U1 = mut_h_rows(variant, H);
  const bool z_tanh = variant == 3;
  const S* whh = w_hh.data_ptr<S>();
  // Each product packed once for all steps: [W_hr (, W_hz)] over h (MUT3: W_hr alone, W_hz over
  // tanh(h)), W_hn over r * h.
  const Weight<S> w_h(true, H, z_tanh ? H : U1, whh, H, st.N), w_n(true, H, H, whh + U1 * H, H,
                                                                    st.N);
  std::optional<Weight<S>> w_z;
  if (z_tanh) w_z.emplace(true, H, H, whh + H * H, H, st.N);
  auto scratch = at::empty({st.B, U1 + H}, xp.options());  // [B,U1] products over h, [B,H] n's
  S* g_h = scratch.data_ptr<S>();
  S* g_n = g_h + st.B * U1;
  Tensor th = z_tanh ? at::tanh(h) : Tensor();  // tanh of the state, MUT3's z input
  S* hs = h.data_ptr<S>();
  const S* x = xp.data_ptr<S>();
  for (int64_t s = 0; s < st.T; ++s) {
    const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
    S* g = gates.data_ptr<S>() + (save ? off * G : 0);
    S* rht = rh.data_ptr<S>() + (save ? off * H : 0);
    if (!save) std::memcpy(g, x + off * G, sizeof(S) * n * G);
    w_h.mul(n, false, hs, H, S(0), g_h, U1);
    if (w_z) w_z->mul(n, false, th.data_ptr<S>(), H, S(0), g_h + H, U1);
    pointwise<S>().grurb_forward_rz(n, H, g, g_h, U1, hs, rht);
    w_n.mul(n, false, rht, H, S(0), g_n, H);
    // MUT3: the pass also refreshes tanh(h) (an ATen tanh here, between the products, cost
    // the single-row steps their second thread).
    pointwise<S>().grurb_forward_n(n, H, g, g_n, hs, y.data_ptr<S>() + off * H,
                                   z_tanh ? th.data_ptr<S>() : nullptr, true);
  }
}

// dh [B,H] enters as the gradient of h_n and leaves as that of h0. h_prev [N,H]: the state each
// row started from; th_prev = tanh(h_prev) (MUT3 only). dg [N,3H] out: da_r, da_z, da_n.
template <class S>
void backward_steps(const Steps& st, const Tensor& dy, const Tensor& gates, const Tensor& h_prev,
                    const Tensor& th_prev, const Tensor& w_hh, int64_t variant, bool reverse,
                    Tensor& dh, Tensor& dg) {
  const int64_t H = w_hh.size(1), G = 3 * H, U1 = mut_h_rows(variant, H);
  const bool z_tanh = variant == 3;
  const S* whh = w_hh.data_ptr<S>();
  // drh = da_n W_hn; dh_{t-1} += [da_r (, da_z)] W_{hr (,hz)}; MUT3: += (da_z W_hz) (1 - th^2).
  const Weight<S> w_n(false, H, H, whh + U1 * H, H, st.N),
      w_h(false, z_tanh ? H : U1, H, whh, H, st.N);
  std::optional<Weight<S>> w_z;
  if (z_tanh) w_z.emplace(false, H, H, whh + H * H, H, st.N);
  auto scratch = at::empty({2, st.B, H}, dy.options());
  S* drh = scratch.data_ptr<S>();
  S* dzh = drh + st.B * H;
  S* dhs = dh.data_ptr<S>();
  for (int64_t s = st.T - 1; s >= 0; --s) {
    const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
    const S* g = gates.data_ptr<S>() + off * G;
    const S* hp = h_prev.data_ptr<S>() + off * H;
    S* dgt = dg.data_ptr<S>() + off * G;
    pointwise<S>().grurb_backward_zn(n, H, g, hp, dhs, dy.data_ptr<S>() + off * H, dgt, true);
    w_n.mul(n, false, dgt + 2 * H, G, S(0), drh, H);
    pointwise<S>().grurb_backward_r(n, H, g, hp, drh, dhs, dgt);
    w_h.mul(n, false, dgt, G, S(1), dhs, H);
    if (w_z) {
      w_z->mul(n, false, dgt + H, G, S(0), dzh, H);
      const S* th = th_prev.data_ptr<S>() + off * H;
      for (int64_t e = 0; e < n * H; ++e) dhs[e] += dzh[e] * (S(1) - th[e] * th[e]);
    }
  }
}

T4 forward(const Steps& st, const Tensor& xp_, const Tensor& h0, const Tensor& w_hh_,
           int64_t variant, bool reverse, bool save) {
  const auto w_hh = w_hh_.contiguous();
  const int64_t H = w_hh.size(1), G = 3 * H;
  auto xp = contiguous_big(xp_).view({st.N, G});
  auto y = empty_big({st.N, H}, xp.options());
  auto gates = save ? empty_big({st.N, G}, xp.options()) : at::empty({st.B, G}, xp.options());
  auto rh = save ? empty_big({st.N, H}, xp.options()) : at::empty({st.B, H}, xp.options());
  if (save) gates.copy_(xp);  // turned into the activations in place
  auto h = h0.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "mut_forward_cpu", [&] {
    forward_steps<scalar_t>(st, xp, w_hh, variant, reverse, save, y, gates, rh, h);
  });
  if (!save) gates = at::empty({0}, xp.options()), rh = at::empty({0}, xp.options());
  return {y, h, gates, rh};
}

T3 backward(const Steps& st, const Tensor& dy_, const Tensor& dh_n, const Tensor& h0,
            const Tensor& w_hh_, const Tensor& y_, const Tensor& gates_, const Tensor& rh_,
            int64_t variant, bool reverse) {
  const auto w_hh = w_hh_.contiguous();
  const int64_t H = w_hh.size(1), G = 3 * H, N = st.N, U1 = mut_h_rows(variant, H);
  const auto opt = dy_.options();
  if (N == 0) return {at::zeros({N, G}, opt), dh_n.clone(), at::zeros_like(w_hh)};
  auto flat = [&](const Tensor& t) { return contiguous_big(t).view({N, t.size(-1)}); };
  auto dy = flat(dy_), y = flat(y_), gates = flat(gates_), rh = flat(rh_);
  auto dh = dh_n.contiguous().clone();
  auto dg = empty_big({N, G}, opt);
  auto h_prev = previous_rows(y, h0.contiguous(), st, reverse);
  auto th_prev = variant == 3 ? at::tanh(h_prev) : Tensor();
  Tensor dw_hh;
  {
    const WeightBuffers sized_by_weights;  // the cache's rule (big_buffer.h)
    dw_hh = empty_big(w_hh.sizes(), opt);
  }
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "mut_backward_cpu", [&] {
    using S = scalar_t;
    backward_steps<S>(st, dy, gates, h_prev, th_prev, w_hh, variant, reverse, dh, dg);
    const S* d = dg.data_ptr<S>();
    S* dw = dw_hh.data_ptr<S>();
    // dW_hr (, dW_hz) = [da_r (, da_z)]^T h_{t-1}; MUT3's dW_hz = da_z^T tanh(h_{t-1});
    // dW_hn = da_n^T (r * h_{t-1}).
    matmul<S>(true, false, variant == 3 ? H : U1, H, N, d, G, h_prev.data_ptr<S>(), H, S(0), dw,
              H);
    if (variant == 3)
      matmul<S>(true, false, H, H, N, d + H, G, th_prev.data_ptr<S>(), H, S(0), dw + H * H, H);
    matmul<S>(true, false, H, H, N, d + 2 * H, G, rh.data_ptr<S>(), H, S(0), dw + U1 * H, H);
  });
  return {dg, dh, dw_hh};
}

}  // namespace

T4 mut_forward(const Tensor& xp, const Tensor& h0, const Tensor& w_hh, int64_t variant,
               bool reverse, const OptTensor& batch_sizes, bool save) {
  if (is_half(xp))
    return down(mut_forward(up(xp), up(h0), up(w_hh), variant, reverse, batch_sizes, save),
                xp.scalar_type());
  if (batch_sizes)
    return forward(Steps::packed(*batch_sizes), xp, h0, w_hh, variant, reverse, save);
  const int64_t T = xp.size(0), B = xp.size(1);
  auto [y, h, gates, rh] = forward(Steps::dense(T, B), xp, h0, w_hh, variant, reverse, save);
  if (!save) return {as_steps(y, T, B), h, gates, rh};
  return {as_steps(y, T, B), h, as_steps(gates, T, B), as_steps(rh, T, B)};
}

T3 mut_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& h0, const Tensor& w_hh,
                const Tensor& y, const Tensor& gates, const Tensor& rh, int64_t variant,
                bool reverse, const OptTensor& batch_sizes) {
  if (is_half(dy))
    return down(mut_backward(up(dy), up(dh_n), up(h0), up(w_hh), up(y), up(gates), up(rh),
                             variant, reverse, batch_sizes),
                dy.scalar_type());
  const auto st = batch_sizes ? Steps::packed(*batch_sizes) : Steps::dense(dy.size(0), dy.size(1));
  auto [dxp, dh0, dw_hh] = backward(st, dy, dh_n, h0, w_hh, y, gates, rh, variant, reverse);
  return {dxp.view(gates.sizes()), dh0, dw_hh};
}

}  // namespace cpu
}  // namespace fusedrnn
