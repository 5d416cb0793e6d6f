// The stepwise launchers of the GRU with the reset gate before the recurrent product (ops
// gru_rb_forward / gru_rb_backward, contract: csrc/cpu/gru_reset_before.h; declarations:
// csrc/gru_rb_ops.h), for the backend this translation unit is compiled for (cuda under nvcc,
// simt as host C++), built on the helpers of cuda/stepwise.h:
//   forward: the input projection (XProj, b_ih only), then per step the rz kernel and the n kernel
//            (cuda/grurb_kernels.cuh); without save, r*h and z go to [B,H] scratches and nothing
//            else is stored.
//   backward: per step (reverse processing order) the zn kernel and the r kernel, then dh0, dx,
//            dW_ih, dW_hh ([r,z] rows from h_{t-1}, n rows from r*h_{t-1}) and the biases as GEMMs
//            and reductions over all rows, in the accumulation type.
#pragma once

// stepwise.h first: it includes ATen before the SIMT layer's CUDA keyword macros.
#include "cuda/stepwise.h"
#include "cuda/grurb_kernels.cuh"
#include "gru_rb_ops.h"

namespace fusedrnn {
namespace FRNN_BACKEND_NS {
namespace stepwise {

template <class S>
T4 gru_rb_forward(const Tensor& x_, const Tensor& h0_, const Tensor& w_ih_, const Tensor& w_hh_,
                  const OptTensor& b_ih_, const OptTensor& b_hh_, bool reverse,
                  const OptTensor& batch_sizes, bool save) {
  FRNN_DEVICE_GUARD(x_);
  const Steps st = make_steps(x_, batch_sizes, reverse);
  const auto x = flat(x_, st), h0 = h0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  const OptTensor b_ih = b_ih_ ? OptTensor(b_ih_->contiguous()) : OptTensor();
  const OptTensor b_hh = b_hh_ ? OptTensor(b_hh_->contiguous()) : OptTensor();
  const int64_t B = st.B, I = x.size(1), H = w_hh.size(1);
  check_int_range("gru_rb_forward", B, 3, H, I, H);
  auto y = at::empty({st.N, H}, x.options());
  auto gates = save ? at::empty({st.N, 3 * H}, x.options()) : at::empty({0}, x.options());
  // r * h_{t-1}: saved for dW_hn, or one step's scratch; z likewise (in gates when saved).
  auto rh = at::empty({save ? st.N : B, H}, x.options());
  auto zbuf = save ? Tensor() : at::empty({B, H}, x.options());
  auto saved = [&](const Tensor& t) { return save ? st.shaped(t) : at::empty({0}, x.options()); };
  if (st.N == 0) return {st.shaped(y), h0.clone(), saved(gates), saved(rh)};

  XProj xproj(st, x, w_ih, b_ih, save);  // [N, 3H] or a chunk of it, b_ih only
  FRNN_POISON(y);
  FRNN_POISON(gates);
  FRNN_POISON(rh);

  kern::GruRbRzParams<S> prz;
  kern::GruRbNParams<S> pn;
  prz.w_hh = pn.w_hh = w_hh.data_ptr<S>();
  prz.b_hh = pn.b_hh = b_hh ? b_hh->data_ptr<S>() : nullptr;
  prz.h0 = pn.h0 = h0.data_ptr<S>();
  prz.H = pn.H = int(H);
  prz.ldz = pn.ldz = int(save ? 3 * H : H);
  const auto Lrz = pick_step<S, false>([&](auto P) {
    using Cfg = kern::GruRbCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::grurb_rz_step_kernel<Cfg>);
  });
  const auto Ln = pick_step<S, false>([&](auto P) {
    using Cfg = kern::GruRbCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::grurb_n_step_kernel<Cfg>);
  });
  for (int64_t s = 0; s < st.T; ++s) {
    const int64_t n = st.rows(s);
    S* g = save ? step_ptr<S>(gates, st, s) : nullptr;
    S* rht = save ? step_ptr<S>(rh, st, s) : rh.data_ptr<S>();
    S* z = save ? g + H : zbuf.data_ptr<S>();
    prz.B = pn.B = int(n);
    prz.n_prev = pn.n_prev = int(st.rows(s - 1));
    prz.h_prev = pn.h_prev = step_ptr<S>(y, st, s - 1);
    prz.xproj = pn.xproj = xproj.for_step<S>(s);
    prz.r_out = g;
    prz.z_out = z;
    prz.rh_out = rht;
    FRNN_LAUNCH(Lrz.kernel, Lrz.grid(n, 2 * H), Lrz.threads, Lrz.smem, FRNN_CURRENT_STREAM, prz);
    pn.rh = rht;
    pn.z = z;
    pn.n_out = g;
    pn.h_out = step_ptr<S>(y, st, s);
    FRNN_LAUNCH(Ln.kernel, Ln.grid(n, H), Ln.threads, Ln.smem, FRNN_CURRENT_STREAM, pn);
  }
  return {st.shaped(y), final_rows(y, st), saved(gates), saved(rh)};
}

template <class S>
T6 gru_rb_backward(const Tensor& dy_, const Tensor& dh_n_, const Tensor& x_, const Tensor& h0_,
                   const Tensor& w_ih_, const Tensor& w_hh_, const Tensor& y_,
                   const Tensor& gates_, const Tensor& rh_, bool reverse,
                   const OptTensor& batch_sizes) {
  FRNN_DEVICE_GUARD(x_);
  const Steps st = make_steps(x_, batch_sizes, reverse);
  const auto dy = flat(dy_, st), dh_n = dh_n_.contiguous();
  const auto x = flat(x_, st), h0 = h0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous(), y = flat(y_, st);
  const auto gates = flat(gates_, st), rh = flat(rh_, st);
  const int64_t B = st.B, I = x.size(1), H = w_hh.size(1), G = 3 * H;
  check_int_range("gru_rb_backward", B, 3, H, I, H);
  if (st.N == 0)
    return {at::zeros_like(x_),   dh_n.clone(),          at::zeros_like(w_ih),
            at::zeros_like(w_hh), at::zeros({G}, x.options()), at::zeros({G}, x.options())};

  // Gate gradients in the accumulation type (see lstm_backward in cuda/stepwise.h).
  const auto dtype = x.scalar_type(), acc = acc_dtype<S>();
  auto dax = at::empty({st.N, G}, x.options().dtype(acc));
  const auto w_hh_a = w_hh.to(acc), w_ih_a = w_ih.to(acc);
  auto dh_direct = acc_copy<S>(dh_n);
  FRNN_POISON(dax);

  kern::GruRbBackwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.h0 = h0.data_ptr<S>();
  p.dh_direct = static_cast<acc_of<S>*>(dh_direct.data_ptr());
  p.H = int(H);
  const auto Lzn = pick_step<S, true>([&](auto P) {
    using Cfg = kern::GruRbCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::grurb_backward_zn_step_kernel<Cfg>);
  });
  const auto Lr = pick_step<S, true>([&](auto P) {
    using Cfg = kern::GruRbCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::grurb_backward_r_step_kernel<Cfg>);
  });
  for (int64_t s = st.T - 1; s >= 0; --s) {
    const int64_t n = st.rows(s);
    p.B = int(n);
    p.n_next = next_rows(st, s);
    p.n_prev = int(st.rows(s - 1));
    p.dy = step_ptr<S>(dy, st, s);
    p.da_next = step_ptr<acc_of<S>>(dax, st, s + 1);
    p.gates = step_ptr<S>(gates, st, s);
    p.h_prev = step_ptr<S>(y, st, s - 1);
    p.dax_out = step_ptr<acc_of<S>>(dax, st, s);
    FRNN_LAUNCH(Lzn.kernel, Lzn.grid(n, H), Lzn.threads, Lzn.smem, FRNN_CURRENT_STREAM, p);
    FRNN_LAUNCH(Lr.kernel, Lr.grid(n, H), Lr.threads, Lr.smem, FRNN_CURRENT_STREAM, p);
  }
  // dh0 = [da_r, da_z](each row's first step) W_{hr,hz} + the direct terms, in the accumulation
  // type.
  auto rz = [&](const Tensor& t, int64_t dim) { return t.narrow(dim, 0, 2 * H); };
  auto dh0 = at::mm(rz(initial_rows(dax, st), 1), rz(w_hh_a, 0)).add_(dh_direct).to(dtype);
  auto dx = st.shaped(at::mm(dax, w_ih_a).to(dtype));
  auto dw_ih = at::mm(dax.t(), x.to(acc)).to(dtype);
  auto dw_hh = at::cat({at::mm(rz(dax, 1).t(), previous_rows(y, h0, st).to(acc)),
                        at::mm(dax.narrow(1, 2 * H, H).t(), rh.to(acc))},
                       0)
                   .to(dtype);
  auto db = dax.sum(0).to(dtype);
  return {dx, dh0, dw_ih, dw_hh, db, db.clone()};
}

}  // namespace stepwise
}  // namespace FRNN_BACKEND_NS
}  // namespace fusedrnn

#define FRNN_DEFINE_GRU_RB_FORWARD                                                             \
  FRNN_DEFINE_STEPWISE_OP(                                                                     \
      T4, gru_rb_forward,                                                                      \
      (const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,              \
       const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,                             \
       const OptTensor& batch_sizes, bool save),                                               \
      (x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, save))

#define FRNN_DEFINE_GRU_RB_BACKWARD                                                            \
  FRNN_DEFINE_STEPWISE_OP(                                                                     \
      T6, gru_rb_backward,                                                                     \
      (const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,                \
       const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, const Tensor& gates,           \
       const Tensor& rh, bool reverse, const OptTensor& batch_sizes),                          \
      (dy, dh_n, x, h0, w_ih, w_hh, y, gates, rh, reverse, batch_sizes))
