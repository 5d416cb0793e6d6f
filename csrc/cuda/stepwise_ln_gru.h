// The stepwise launchers of the layer-normalised GRU (ops ln_gru_forward / ln_gru_backward,
// contract and declarations: csrc/layer_norm_ops.h) for the backend this translation unit is
// compiled for (cuda under nvcc, simt as host C++), built on the helpers of cuda/stepwise.h:
//   forward: per step the product kernel (h W_hh^T into gh) and the row kernel
//            (cuda/ln_gru_kernels.cuh); without save, gh is one step's scratch and nothing else
//            is stored.
//   backward: per step (reverse processing order) the row kernel and the product kernel
//            (dh_{t-1} = dgh W_hh + z dh); then dW_hh = dgh^T h_{t-1} and the gain's and bias's
//            gradients as reductions over all rows, in the accumulation type.
#pragma once

// stepwise.h first: it includes ATen before the SIMT layer's CUDA keyword macros.
#include "cuda/stepwise.h"
#include "cuda/ln_gru_kernels.cuh"
#include "layer_norm_ops.h"

namespace fusedrnn {
namespace FRNN_BACKEND_NS {
namespace stepwise {

template <class S>
T5 ln_gru_forward(const Tensor& xp_, const Tensor& h0_, const Tensor& w_hh_, const Tensor& g_hh_,
                  const OptTensor& b_hh_, bool reverse, const OptTensor& batch_sizes, bool save) {
  using A = acc_of<S>;
  FRNN_DEVICE_GUARD(xp_);
  const Steps st = make_steps(xp_, batch_sizes, reverse);
  const auto xp = flat(xp_, st), h0 = h0_.contiguous();
  const auto w_hh = w_hh_.contiguous(), g_hh = g_hh_.contiguous();
  const OptTensor b_hh = b_hh_ ? OptTensor(b_hh_->contiguous()) : OptTensor();
  const int64_t B = st.B, H = w_hh.size(1), G = 3 * H, N = st.N;
  check_int_range("ln_gru_forward", B, 3, H, H, H);
  const auto opt = xp.options(), acc = opt.dtype(acc_dtype<S>());
  auto none = [&](const at::TensorOptions& o) { return at::empty({0}, o); };
  auto y = at::empty({N, H}, opt);
  auto gates = save ? at::empty({N, G}, opt) : none(opt);
  auto gh = at::empty({save ? N : B, G}, acc);
  auto stats = save ? at::empty({N, 2}, acc) : none(acc);
  auto saved = [&](const Tensor& t) { return save ? st.shaped(t) : t; };
  if (N == 0) return {st.shaped(y), h0.clone(), saved(gates), saved(gh), saved(stats)};
  FRNN_POISON(y);
  FRNN_POISON(gates);

  kern::LnProductParams<S> pp{};
  pp.h0 = h0.data_ptr<S>();
  pp.w_hh = w_hh.data_ptr<S>();
  pp.H = int(H);
  pp.G = 3;
  kern::LnGruRowForwardParams<S> pr{};
  pr.g_hh = g_hh.data_ptr<S>();
  pr.b_hh = b_hh ? b_hh->data_ptr<S>() : nullptr;
  pr.h0 = h0.data_ptr<S>();
  pr.H = int(H);
  const auto Lp = pick_step<S, false>([&](auto P) {
    using Cfg = kern::LnCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::ln_product_kernel<Cfg>);
  });
  const int row_smem = kern::kLnRowThreads * int(sizeof(A));
  for (int64_t s = 0; s < st.T; ++s) {
    const int64_t n = st.rows(s);
    pp.B = int(n);
    pp.n_prev = pr.n_prev = int(st.rows(s - 1));
    pp.h_prev = pr.h_prev = step_ptr<S>(y, st, s - 1);
    pp.out = save ? step_ptr<A>(gh, st, s) : static_cast<A*>(gh.data_ptr());
    FRNN_LAUNCH(Lp.kernel, Lp.grid(n, G), Lp.threads, Lp.smem, FRNN_CURRENT_STREAM, pp);
    pr.xp = step_ptr<S>(xp, st, s);
    pr.gh = pp.out;
    pr.gates_out = save ? step_ptr<S>(gates, st, s) : nullptr;
    pr.stats_out = save ? step_ptr<A>(stats, st, s) : nullptr;
    pr.h_out = step_ptr<S>(y, st, s);
    FRNN_LAUNCH(kern::lngru_row_forward_kernel<S>, dim3(unsigned(n)), kern::kLnRowThreads,
                row_smem, FRNN_CURRENT_STREAM, pr);
  }
  if (!save) gh = none(acc);
  return {st.shaped(y), final_rows(y, st), saved(gates), saved(gh), saved(stats)};
}

template <class S>
T5 ln_gru_backward(const Tensor& dy_, const Tensor& dh_n, const Tensor& h0_, const Tensor& w_hh_,
                   const Tensor& g_hh_, const OptTensor& b_hh_, const Tensor& y_,
                   const Tensor& gates_, const Tensor& gh_, const Tensor& stats_, bool reverse,
                   const OptTensor& batch_sizes) {
  using A = acc_of<S>;
  FRNN_DEVICE_GUARD(dy_);
  const Steps st = make_steps(dy_, batch_sizes, reverse);
  const auto dy = flat(dy_, st), y = flat(y_, st), gates = flat(gates_, st);
  const auto gh = flat(gh_, st), stats = flat(stats_, st), h0 = h0_.contiguous();
  const auto w_hh = w_hh_.contiguous(), g_hh = g_hh_.contiguous();
  const OptTensor b_hh = b_hh_ ? OptTensor(b_hh_->contiguous()) : OptTensor();
  const int64_t B = st.B, H = w_hh.size(1), G = 3 * H, N = st.N;
  check_int_range("ln_gru_backward", B, 3, H, H, H);
  const auto dtype = dy.scalar_type();
  const auto acc = dy.options().dtype(acc_dtype<S>());
  if (N == 0)
    return {at::zeros_like(gates_), dh_n.clone(), at::zeros_like(w_hh), at::zeros_like(g_hh),
            at::zeros_like(g_hh)};
  auto dh = acc_copy<S>(dh_n), direct = at::empty({B, H}, acc);
  auto dax = at::empty({N, G}, acc), dhh = at::empty({N, G}, acc), dgh = at::empty({N, G}, acc);
  FRNN_POISON(dax);
  FRNN_POISON(dgh);

  kern::LnGruRowBackwardParams<S> pr{};
  pr.dh_carry = static_cast<A*>(dh.data_ptr());
  pr.g_hh = g_hh.data_ptr<S>();
  pr.b_hh = b_hh ? b_hh->data_ptr<S>() : nullptr;
  pr.h0 = h0.data_ptr<S>();
  pr.direct = static_cast<A*>(direct.data_ptr());
  pr.H = int(H);
  kern::LnProductParams<S> pp{};
  pp.w_hh = w_hh.data_ptr<S>();
  pp.add = pr.direct;
  pp.out = static_cast<A*>(dh.data_ptr());
  pp.H = int(H);
  pp.G = 3;
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
    pr.stats = step_ptr<A>(stats, st, s);
    pr.h_prev = step_ptr<S>(y, st, s - 1);
    pr.n_prev = int(st.rows(s - 1));
    pr.dax = step_ptr<A>(dax, st, s);
    pr.dhh = step_ptr<A>(dhh, st, s);
    pr.dgh = step_ptr<A>(dgh, st, s);
    FRNN_LAUNCH(kern::lngru_row_backward_kernel<S>, dim3(unsigned(n)), kern::kLnRowThreads,
                row_smem, FRNN_CURRENT_STREAM, pr);
    pp.B = int(n);
    pp.dgh = pr.dgh;
    FRNN_LAUNCH(Lp.kernel, Lp.grid(n, H), Lp.threads, Lp.smem, FRNN_CURRENT_STREAM, pp);
  }
  const auto xhat = (gh - stats.narrow(1, 0, 1)) * stats.narrow(1, 1, 1);
  // In the GEMM policy (cuda/hoisted_gemm.h).
  auto dw_hh = policy_mm(dgh.t(), previous_rows(y, h0, st), dtype, dtype);
  return {st.shaped(dax.to(dtype)), dh.to(dtype), dw_hh, (dhh * xhat).sum(0).to(dtype),
          dhh.sum(0).to(dtype)};
}

}  // namespace stepwise
}  // namespace FRNN_BACKEND_NS
}  // namespace fusedrnn

// The ops dispatch on xp's (forward) and dy's (backward) dtype.
#define FRNN_DEFINE_LN_GRU_FORWARD                                                             \
  namespace fusedrnn {                                                                         \
  namespace FRNN_BACKEND_NS {                                                                  \
  T5 ln_gru_forward(const Tensor& xp, const Tensor& h0, const Tensor& w_hh, const Tensor& g_hh, \
                    const OptTensor& b_hh, bool reverse, const OptTensor& batch_sizes,         \
                    bool save) {                                                               \
    return FRNN_DTYPE_SWITCH(xp.scalar_type(), "ln_gru_forward", [&] {                         \
      return stepwise::ln_gru_forward<scalar_t>(xp, h0, w_hh, g_hh, b_hh, reverse,             \
                                                batch_sizes, save);                            \
    });                                                                                        \
  }                                                                                            \
  }                                                                                            \
  }

#define FRNN_DEFINE_LN_GRU_BACKWARD                                                            \
  namespace fusedrnn {                                                                         \
  namespace FRNN_BACKEND_NS {                                                                  \
  T5 ln_gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& h0,                   \
                     const Tensor& w_hh, const Tensor& g_hh, const OptTensor& b_hh,            \
                     const Tensor& y, const Tensor& gates, const Tensor& gh,                   \
                     const Tensor& stats, bool reverse, const OptTensor& batch_sizes) {        \
    return FRNN_DTYPE_SWITCH(dy.scalar_type(), "ln_gru_backward", [&] {                        \
      return stepwise::ln_gru_backward<scalar_t>(dy, dh_n, h0, w_hh, g_hh, b_hh, y, gates, gh, \
                                                 stats, reverse, batch_sizes);                 \
    });                                                                                        \
  }                                                                                            \
  }                                                                                            \
  }
