// The stepwise launchers of the layer-normalised LSTM (ops ln_lstm_forward / ln_lstm_backward,
// contract and declarations: csrc/layer_norm_ops.h) for the backend this translation unit is
// compiled for (cuda under nvcc, simt as host C++), built on the helpers of cuda/stepwise.h:
//   forward: per step the product kernel (h W_hh^T into gh) and the row kernel
//            (cuda/ln_lstm_kernels.cuh); c is carried per row in the accumulation type; without
//            save, gh is one step's scratch and nothing else is stored.
//   backward: per step (reverse processing order) the row kernel and the product kernel
//            (dh_{t-1} = dgh W_hh); then dW_hh = dgh^T h_{t-1} and the gains' and b_c's
//            gradients as reductions over all rows, in the accumulation type.
#pragma once

// stepwise.h first: it includes ATen before the SIMT layer's CUDA keyword macros.
#include "cuda/stepwise.h"
#include "cuda/ln_lstm_kernels.cuh"
#include "layer_norm_ops.h"

namespace fusedrnn {
namespace FRNN_BACKEND_NS {
namespace stepwise {

template <class S>
T7 ln_lstm_forward(const Tensor& xp_, const Tensor& h0_, const Tensor& c0_, const Tensor& w_hh_,
                   const Tensor& g_hh_, const Tensor& g_c_, const OptTensor& b_c_, bool reverse,
                   const OptTensor& batch_sizes, bool save) {
  using A = acc_of<S>;
  FRNN_DEVICE_GUARD(xp_);
  const Steps st = make_steps(xp_, batch_sizes, reverse);
  const auto xp = flat(xp_, st), h0 = h0_.contiguous(), c0 = c0_.contiguous();
  const auto w_hh = w_hh_.contiguous(), g_hh = g_hh_.contiguous(), g_c = g_c_.contiguous();
  const OptTensor b_c = b_c_ ? OptTensor(b_c_->contiguous()) : OptTensor();
  const int64_t B = st.B, H = w_hh.size(1), G = 4 * H, N = st.N;
  check_int_range("ln_lstm_forward", B, 4, H, H, H);
  const auto opt = xp.options(), acc = opt.dtype(acc_dtype<S>());
  auto none = [&](const at::TensorOptions& o) { return at::empty({0}, o); };
  auto y = at::empty({N, H}, opt);
  auto gates = save ? at::empty({N, G}, opt) : none(opt);
  auto cells = save ? at::empty({N, H}, opt) : none(opt);
  auto gh = at::empty({save ? N : B, G}, acc);
  auto stats = save ? at::empty({N, 4}, acc) : none(acc);
  auto c = acc_copy<S>(c0);
  auto saved = [&](const Tensor& t) { return save ? st.shaped(t) : t; };
  if (N == 0)
    return {st.shaped(y), h0.clone(), c0.clone(), saved(gates), saved(gh), saved(cells),
            saved(stats)};
  FRNN_POISON(y);
  FRNN_POISON(gates);
  FRNN_POISON(cells);

  kern::LnProductParams<S> pp{};
  pp.h0 = h0.data_ptr<S>();
  pp.w_hh = w_hh.data_ptr<S>();
  pp.H = int(H);
  pp.G = 4;
  kern::LnRowForwardParams<S> pr{};
  pr.g_hh = g_hh.data_ptr<S>();
  pr.g_c = g_c.data_ptr<S>();
  pr.b_c = b_c ? b_c->data_ptr<S>() : nullptr;
  pr.c_state = static_cast<A*>(c.data_ptr());
  pr.H = int(H);
  const auto Lp = pick_step<S, false>([&](auto P) {
    using Cfg = kern::LnCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::ln_product_kernel<Cfg>);
  });
  const int row_smem = kern::kLnRowThreads * int(sizeof(A));
  for (int64_t s = 0; s < st.T; ++s) {
    const int64_t n = st.rows(s);
    pp.B = int(n);
    pp.n_prev = int(st.rows(s - 1));
    pp.h_prev = step_ptr<S>(y, st, s - 1);
    pp.out = save ? step_ptr<A>(gh, st, s) : static_cast<A*>(gh.data_ptr());
    FRNN_LAUNCH(Lp.kernel, Lp.grid(n, G), Lp.threads, Lp.smem, FRNN_CURRENT_STREAM, pp);
    pr.xp = step_ptr<S>(xp, st, s);
    pr.gh = pp.out;
    pr.gates_out = save ? step_ptr<S>(gates, st, s) : nullptr;
    pr.cells_out = save ? step_ptr<S>(cells, st, s) : nullptr;
    pr.stats_out = save ? step_ptr<A>(stats, st, s) : nullptr;
    pr.h_out = step_ptr<S>(y, st, s);
    FRNN_LAUNCH(kern::lnlstm_row_forward_kernel<S>, dim3(unsigned(n)), kern::kLnRowThreads,
                row_smem, FRNN_CURRENT_STREAM, pr);
  }
  if (!save) gh = none(acc);
  // c: each row's state after its last step (rows that never ran keep c0).
  return {st.shaped(y), final_rows(y, st), c.to(xp.scalar_type()), saved(gates), saved(gh),
          saved(cells), saved(stats)};
}

template <class S>
T7 ln_lstm_backward(const Tensor& dy_, const Tensor& dh_n, const Tensor& dc_n, const Tensor& h0_,
                    const Tensor& c0_, const Tensor& w_hh_, const Tensor& g_hh_,
                    const Tensor& g_c_, const OptTensor& b_c_, const Tensor& y_,
                    const Tensor& gates_, const Tensor& gh_, const Tensor& cells_,
                    const Tensor& stats_, bool reverse, const OptTensor& batch_sizes) {
  using A = acc_of<S>;
  FRNN_DEVICE_GUARD(dy_);
  const Steps st = make_steps(dy_, batch_sizes, reverse);
  const auto dy = flat(dy_, st), y = flat(y_, st), gates = flat(gates_, st);
  const auto gh = flat(gh_, st), cells = flat(cells_, st), stats = flat(stats_, st);
  const auto h0 = h0_.contiguous(), c0 = c0_.contiguous();
  const auto w_hh = w_hh_.contiguous(), g_hh = g_hh_.contiguous(), g_c = g_c_.contiguous();
  const OptTensor b_c = b_c_ ? OptTensor(b_c_->contiguous()) : OptTensor();
  const int64_t B = st.B, H = w_hh.size(1), G = 4 * H, N = st.N;
  check_int_range("ln_lstm_backward", B, 4, H, H, H);
  const auto dtype = dy.scalar_type();
  const auto acc = dy.options().dtype(acc_dtype<S>());
  if (N == 0)
    return {at::zeros_like(gates_), dh_n.clone(), dc_n.clone(), at::zeros_like(w_hh),
            at::zeros_like(g_hh),   at::zeros_like(g_c), at::zeros_like(g_c)};
  auto dh = acc_copy<S>(dh_n), dc = acc_copy<S>(dc_n);
  auto dax = at::empty({N, G}, acc), dgh = at::empty({N, G}, acc), dyc = at::empty({N, H}, acc);
  FRNN_POISON(dax);
  FRNN_POISON(dgh);

  kern::LnRowBackwardParams<S> pr{};
  pr.dh_carry = static_cast<A*>(dh.data_ptr());
  pr.dc_carry = static_cast<A*>(dc.data_ptr());
  pr.c0 = c0.data_ptr<S>();
  pr.g_hh = g_hh.data_ptr<S>();
  pr.g_c = g_c.data_ptr<S>();
  pr.b_c = b_c ? b_c->data_ptr<S>() : nullptr;
  pr.H = int(H);
  kern::LnProductParams<S> pp{};
  pp.w_hh = w_hh.data_ptr<S>();
  pp.out = static_cast<A*>(dh.data_ptr());
  pp.H = int(H);
  pp.G = 4;
  const auto Lp = pick_step<S, true>([&](auto P) {
    using Cfg = kern::LnCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::ln_product_back_kernel<Cfg>);
  });
  const int row_smem = kern::kLnRowThreads * int(sizeof(A));
  for (int64_t s = st.T - 1; s >= 0; --s) {
    const int64_t n = st.rows(s);
    pr.dy = step_ptr<S>(dy, st, s);
    pr.gates = step_ptr<S>(gates, st, s);
    pr.gh = step_ptr<A>(gh, st, s);
    pr.cells = step_ptr<S>(cells, st, s);
    pr.cells_prev = step_ptr<S>(cells, st, s - 1);
    pr.n_prev = int(st.rows(s - 1));
    pr.stats = step_ptr<A>(stats, st, s);
    pr.dax = step_ptr<A>(dax, st, s);
    pr.dgh = step_ptr<A>(dgh, st, s);
    pr.dyc = step_ptr<A>(dyc, st, s);
    FRNN_LAUNCH(kern::lnlstm_row_backward_kernel<S>, dim3(unsigned(n)), kern::kLnRowThreads,
                row_smem, FRNN_CURRENT_STREAM, pr);
    pp.B = int(n);
    pp.dgh = pr.dgh;
    FRNN_LAUNCH(Lp.kernel, Lp.grid(n, H), Lp.threads, Lp.smem, FRNN_CURRENT_STREAM, pp);
  }
  auto col = [&](int64_t j) { return stats.narrow(1, j, 1); };
  const auto xhat = (gh - col(0)) * col(1), chat = (cells.to(acc_dtype<S>()) - col(2)) * col(3);
  // In the GEMM policy (cuda/hoisted_gemm.h).
  auto dw_hh = policy_mm(dgh.t(), previous_rows(y, h0, st), dtype, dtype);
  return {st.shaped(dax.to(dtype)),
          dh.to(dtype),
          dc.to(dtype),
          dw_hh,
          (dax * xhat).sum(0).to(dtype),
          (dyc * chat).sum(0).to(dtype),
          dyc.sum(0).to(dtype)};
}

}  // namespace stepwise
}  // namespace FRNN_BACKEND_NS
}  // namespace fusedrnn

// The ops dispatch on xp's (forward) and dy's (backward) dtype.
#define FRNN_DEFINE_LN_LSTM_FORWARD                                                            \
  namespace fusedrnn {                                                                         \
  namespace FRNN_BACKEND_NS {                                                                  \
  T7 ln_lstm_forward(const Tensor& xp, const Tensor& h0, const Tensor& c0, const Tensor& w_hh, \
                     const Tensor& g_hh, const Tensor& g_c, const OptTensor& b_c, bool reverse, \
                     const OptTensor& batch_sizes, bool save) {                                \
    return FRNN_DTYPE_SWITCH(xp.scalar_type(), "ln_lstm_forward", [&] {                        \
      return stepwise::ln_lstm_forward<scalar_t>(xp, h0, c0, w_hh, g_hh, g_c, b_c, reverse,    \
                                                 batch_sizes, save);                           \
    });                                                                                        \
  }                                                                                            \
  }                                                                                            \
  }

#define FRNN_DEFINE_LN_LSTM_BACKWARD                                                           \
  namespace fusedrnn {                                                                         \
  namespace FRNN_BACKEND_NS {                                                                  \
  T7 ln_lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n,                \
                      const Tensor& h0, const Tensor& c0, const Tensor& w_hh,                  \
                      const Tensor& g_hh, const Tensor& g_c, const OptTensor& b_c,             \
                      const Tensor& y, const Tensor& gates, const Tensor& gh,                  \
                      const Tensor& cells, const Tensor& stats, bool reverse,                  \
                      const OptTensor& batch_sizes) {                                          \
    return FRNN_DTYPE_SWITCH(dy.scalar_type(), "ln_lstm_backward", [&] {                       \
      return stepwise::ln_lstm_backward<scalar_t>(dy, dh_n, dc_n, h0, c0, w_hh, g_hh, g_c,     \
                                                  b_c, y, gates, gh, cells, stats, reverse,    \
                                                  batch_sizes);                                \
    });                                                                                        \
  }                                                                                            \
  }                                                                                            \
  }
