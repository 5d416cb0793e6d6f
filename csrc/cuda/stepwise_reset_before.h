// The stepwise launchers of the cells whose reset gate comes before the recurrent product, for
// the backend this translation unit is compiled for (cuda under nvcc, simt as host C++), built on
// the helpers of cuda/stepwise.h; declarations: csrc/reset_before_ops.h.
//   gru_rb_forward / gru_rb_backward: Cho's GRU (contract: csrc/cpu/gru_reset_before.h);
//   mut_forward / mut_backward: MUT1-3 (contract: csrc/cpu/mut.h).
//   forward: the input projection (GRU: XProj, b_ih only; MUT: given), then per step the rz
//            kernel and the n kernel (cuda/grurb_kernels.cuh); without save, r*h and z go to
//            [B,H] scratches and nothing else is stored.
//   backward: per step (reverse processing order) the zn kernel and the r kernel, then dh0, the
//            input side's gradients, dW_hh (r's and z's rows from h_{t-1} or tanh(h_{t-1}), n's
//            from r*h_{t-1}) and the biases as GEMMs and reductions over all rows, in the
//            accumulation type.
#pragma once

// stepwise.h first: it includes ATen before the SIMT layer's CUDA keyword macros.
#include "cuda/stepwise.h"
#include "cuda/grurb_kernels.cuh"
#include "reset_before_ops.h"

namespace fusedrnn {
namespace FRNN_BACKEND_NS {
namespace stepwise {

inline kern::ResetBeforeCell gru_rb_cell() { return {1, false}; }
inline kern::ResetBeforeCell mut_cell(int64_t variant) {
  return {variant == 1 ? 0 : variant == 2 ? 1 : 2, true};
}
// W_hn: the rows after r's and z's products (none for z when z_src == 0).
template <class S> inline const S* w_hn_of(const Tensor& w_hh, const kern::ResetBeforeCell& c) {
  return w_hh.data_ptr<S>() + (c.z_src == 0 ? 1 : 2) * w_hh.size(1) * w_hh.size(1);
}

// The forward's time loop: y [N,H], gates [N,3H] and rh [N,H] (save) or rh [B,H] (scratch)
// allocated by the caller; xproj_for(s): the input side rows of processed step s (stride 3H).
template <class S, class XFor>
void reset_before_forward_steps(const Steps& st, const kern::ResetBeforeCell& cell,
                                const Tensor& h0, const Tensor& w_hh, const S* b_hh, bool save,
                                XFor&& xproj_for, Tensor& y, Tensor& gates, Tensor& rh) {
  const int64_t B = st.B, H = w_hh.size(1);
  auto zbuf = save ? Tensor() : at::empty({B, H}, y.options());
  // MUT3: tanh of each row's latest state, the input of z's product (the n kernel updates it).
  auto th = cell.z_src == 2 ? at::tanh(h0) : Tensor();
  kern::GruRbRzParams<S> prz;
  kern::GruRbNParams<S> pn;
  prz.w_hh = w_hh.data_ptr<S>();
  pn.w_hn = w_hn_of<S>(w_hh, cell);
  prz.b_hh = pn.b_hh = b_hh;
  prz.h0 = pn.h0 = h0.data_ptr<S>();
  prz.th = pn.th = th.defined() ? th.data_ptr<S>() : nullptr;
  prz.H = pn.H = int(H);
  prz.ldz = pn.ldz = int(save ? 3 * H : H);
  prz.cell = pn.cell = cell;
  const auto Lrz = pick_step<S, false>([&](auto P) {
    using Cfg = kern::GruRbCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::grurb_rz_step_kernel<Cfg>);
  });
  const auto Ln = pick_step<S, false>([&](auto P) {
    using Cfg = kern::GruRbCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::grurb_n_step_kernel<Cfg>);
  });
  // The rz kernel's blocks: whole tiles of each gate of the product (r, and z unless MUT1).
  const int64_t rz_units = (cell.z_src == 0 ? 1 : 2) * ((H + Lrz.HT - 1) / Lrz.HT) * Lrz.HT;
  for (int64_t s = 0; s < st.T; ++s) {
    const int64_t n = st.rows(s);
    S* g = save ? step_ptr<S>(gates, st, s) : nullptr;
    S* rht = save ? step_ptr<S>(rh, st, s) : rh.data_ptr<S>();
    S* z = save ? g + H : zbuf.data_ptr<S>();
    prz.B = pn.B = int(n);
    prz.n_prev = pn.n_prev = int(st.rows(s - 1));
    prz.h_prev = pn.h_prev = step_ptr<S>(y, st, s - 1);
    prz.xproj = pn.xproj = xproj_for(s);
    prz.r_out = g;
    prz.z_out = z;
    prz.rh_out = rht;
    FRNN_LAUNCH(Lrz.kernel, Lrz.grid(n, rz_units), Lrz.threads, Lrz.smem, FRNN_CURRENT_STREAM,
                prz);
    pn.rh = rht;
    pn.z = z;
    pn.n_out = g;
    pn.h_out = step_ptr<S>(y, st, s);
    FRNN_LAUNCH(Ln.kernel, Ln.grid(n, H), Ln.threads, Ln.smem, FRNN_CURRENT_STREAM, pn);
  }
}

// The backward's time loop: returns dax [N,3H] (accumulation type); dh_direct [B,H]
// (accumulation type) enters as dh_n and leaves with the direct terms of dh0.
template <class S>
Tensor reset_before_backward_steps(const Steps& st, const kern::ResetBeforeCell& cell,
                                   const Tensor& dy, const Tensor& h0, const Tensor& w_hh,
                                   const Tensor& y, const Tensor& gates, Tensor& dh_direct) {
  const int64_t H = w_hh.size(1);
  auto dax = at::empty({st.N, 3 * H}, dy.options().dtype(acc_dtype<S>()));
  FRNN_POISON(dax);
  kern::GruRbBackwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.w_hn = w_hn_of<S>(w_hh, cell);
  p.h0 = h0.data_ptr<S>();
  p.dh_direct = static_cast<acc_of<S>*>(dh_direct.data_ptr());
  p.H = int(H);
  p.cell = cell;
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
    p.h_cur = step_ptr<S>(y, st, s);
    p.dax_out = step_ptr<acc_of<S>>(dax, st, s);
    FRNN_LAUNCH(Lzn.kernel, Lzn.grid(n, H), Lzn.threads, Lzn.smem, FRNN_CURRENT_STREAM, p);
    FRNN_LAUNCH(Lr.kernel, Lr.grid(n, H), Lr.threads, Lr.smem, FRNN_CURRENT_STREAM, p);
  }
  return dax;
}

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
  auto saved = [&](const Tensor& t) { return save ? st.shaped(t) : at::empty({0}, x.options()); };
  if (st.N == 0) return {st.shaped(y), h0.clone(), saved(gates), saved(rh)};

  XProj xproj(st, x, w_ih, b_ih, save);  // [N, 3H] or a chunk of it, b_ih only
  FRNN_POISON(y);
  FRNN_POISON(gates);
  FRNN_POISON(rh);
  reset_before_forward_steps<S>(st, gru_rb_cell(), h0, w_hh,
                                b_hh ? b_hh->data_ptr<S>() : nullptr, save,
                                [&](int64_t s) { return xproj.for_step<S>(s); }, y, gates, rh);
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
  auto dh_direct = acc_copy<S>(dh_n);
  auto dax = reset_before_backward_steps<S>(st, gru_rb_cell(), dy, h0, w_hh, y, gates, dh_direct);
  // dh0 = [da_r, da_z](each row's first step) W_{hr,hz} + the direct terms, added in the
  // accumulation type (the recurrence's precision); the GEMMs over all rows in the GEMM policy
  // (cuda/hoisted_gemm.h).
  auto rz = [&](const Tensor& t, int64_t dim) { return t.narrow(dim, 0, 2 * H); };
  auto dh0 = recurrent_mm(rz(initial_rows(dax, st), 1), rz(w_hh, 0), dtype, acc)
                 .add_(dh_direct)
                 .to(dtype);
  auto dx = st.shaped(policy_mm(dax, w_ih, dtype, dtype));
  auto dw_ih = policy_mm(dax.t(), x, dtype, dtype);
  auto dw_hh = at::cat({policy_mm(rz(dax, 1).t(), previous_rows(y, h0, st), dtype, dtype),
                        policy_mm(dax.narrow(1, 2 * H, H).t(), rh, dtype, dtype)},
                       0);
  auto db = dax.sum(0).to(dtype);
  return {dx, dh0, dw_ih, dw_hh, db, db.clone()};
}

template <class S>
T4 mut_forward(const Tensor& xp_, const Tensor& h0_, const Tensor& w_hh_, int64_t variant,
               bool reverse, const OptTensor& batch_sizes, bool save) {
  FRNN_DEVICE_GUARD(xp_);
  const Steps st = make_steps(xp_, batch_sizes, reverse);
  const auto xp = flat(xp_, st), h0 = h0_.contiguous(), w_hh = w_hh_.contiguous();
  const int64_t B = st.B, H = w_hh.size(1);
  check_int_range("mut_forward", B, 3, H, H, H);
  auto y = at::empty({st.N, H}, xp.options());
  auto gates = save ? at::empty({st.N, 3 * H}, xp.options()) : at::empty({0}, xp.options());
  auto rh = at::empty({save ? st.N : B, H}, xp.options());
  auto saved = [&](const Tensor& t) { return save ? st.shaped(t) : at::empty({0}, xp.options()); };
  if (st.N == 0) return {st.shaped(y), h0.clone(), saved(gates), saved(rh)};
  FRNN_POISON(y);
  FRNN_POISON(gates);
  FRNN_POISON(rh);
  reset_before_forward_steps<S>(st, mut_cell(variant), h0, w_hh, nullptr, save,
                                [&](int64_t s) { return step_ptr<S>(xp, st, s); }, y, gates, rh);
  return {st.shaped(y), final_rows(y, st), saved(gates), saved(rh)};
}

template <class S>
T3 mut_backward(const Tensor& dy_, const Tensor& dh_n_, const Tensor& h0_, const Tensor& w_hh_,
                const Tensor& y_, const Tensor& gates_, const Tensor& rh_, int64_t variant,
                bool reverse, const OptTensor& batch_sizes) {
  FRNN_DEVICE_GUARD(dy_);
  const Steps st = make_steps(dy_, batch_sizes, reverse);
  const auto dy = flat(dy_, st), dh_n = dh_n_.contiguous(), h0 = h0_.contiguous();
  const auto w_hh = w_hh_.contiguous(), y = flat(y_, st);
  const auto gates = flat(gates_, st), rh = flat(rh_, st);
  const int64_t B = st.B, H = w_hh.size(1);
  check_int_range("mut_backward", B, 3, H, H, H);
  if (st.N == 0) return {at::zeros_like(gates_), dh_n.clone(), at::zeros_like(w_hh)};

  const auto dtype = dy.scalar_type(), acc = acc_dtype<S>();
  auto dh_direct = acc_copy<S>(dh_n);
  const auto cell = mut_cell(variant);
  auto dax = reset_before_backward_steps<S>(st, cell, dy, h0, w_hh, y, gates, dh_direct);
  // dh0 from each row's first step: da_r W_hr, + da_z W_hz (MUT2), + (da_z W_hz) * (1 -
  // tanh(h0)^2) (MUT3), + the direct terms; dW_hh's rows likewise over all rows. dW_hh's GEMMs in
  // the GEMM policy, dh0's in the recurrence's (cuda/hoisted_gemm.h); sums in the accumulation
  // type.
  auto cols = [&](const Tensor& t, int64_t gate) { return t.narrow(1, gate * H, H); };
  auto rows = [&](int64_t gate) { return w_hh.narrow(0, gate * H, H); };
  auto mm = [&](const Tensor& a, const Tensor& b, at::ScalarType out) {
    return policy_mm(a, b, dtype, out);
  };
  auto rmm = [&](const Tensor& a, const Tensor& b) { return recurrent_mm(a, b, dtype, acc); };
  const auto first = initial_rows(dax, st), h_prev = previous_rows(y, h0, st);
  auto dh0 = rmm(cols(first, 0), rows(0)).add_(dh_direct);
  std::vector<Tensor> dw{mm(cols(dax, 0).t(), h_prev, dtype)};
  if (cell.z_src == 1) {
    dh0.add_(rmm(cols(first, 1), rows(1)));
    dw.push_back(mm(cols(dax, 1).t(), h_prev, dtype));
  } else if (cell.z_src == 2) {
    const auto th0 = at::tanh(h0.to(acc));
    dh0.add_(rmm(cols(first, 1), rows(1)).mul_(1 - th0 * th0));
    dw.push_back(mm(cols(dax, 1).t(), at::tanh(h_prev.to(acc)), dtype));
  }
  dw.push_back(mm(cols(dax, 2).t(), rh, dtype));
  return {st.shaped(dax.to(dtype)), dh0.to(dtype), at::cat(dw, 0)};
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

// The MUT ops dispatch on xp's (forward) and dy's (backward) dtype.
#define FRNN_DEFINE_MUT_FORWARD                                                                \
  namespace fusedrnn {                                                                         \
  namespace FRNN_BACKEND_NS {                                                                  \
  T4 mut_forward(const Tensor& xp, const Tensor& h0, const Tensor& w_hh, int64_t variant,      \
                 bool reverse, const OptTensor& batch_sizes, bool save) {                      \
    return FRNN_DTYPE_SWITCH(xp.scalar_type(), "mut_forward", [&] {                            \
      return stepwise::mut_forward<scalar_t>(xp, h0, w_hh, variant, reverse, batch_sizes,      \
                                             save);                                            \
    });                                                                                        \
  }                                                                                            \
  }                                                                                            \
  }

#define FRNN_DEFINE_MUT_BACKWARD                                                               \
  namespace fusedrnn {                                                                         \
  namespace FRNN_BACKEND_NS {                                                                  \
  T3 mut_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& h0, const Tensor& w_hh,  \
                  const Tensor& y, const Tensor& gates, const Tensor& rh, int64_t variant,     \
                  bool reverse, const OptTensor& batch_sizes) {                                \
    return FRNN_DTYPE_SWITCH(dy.scalar_type(), "mut_backward", [&] {                           \
      return stepwise::mut_backward<scalar_t>(dy, dh_n, h0, w_hh, y, gates, rh, variant,       \
                                              reverse, batch_sizes);                           \
    });                                                                                        \
  }                                                                                            \
  }                                                                                            \
  }
