// CPU backend of the layer-normalised GRU's recurrent part (contract: csrc/layer_norm_ops.h).
// Per step: h W_hh^T into the gh rows (packed once for all steps), then one pass per row
// (pointwise.h lngru_forward: gh's statistics and the cell). Backward per step: the row pass
// (the cell's backward, then LN(gh)'s) and dh_{t-1} = z dh + dgh W_hh; dW_hh and the gain's and
// bias's gradients are reductions after the loop. fp16/bf16 are computed in fp32 (gh and stats
// stay fp32, the accumulation type).
#include "cpu/common.h"
#include "cpu/matmul.h"
#include "cpu/pointwise.h"
#include "layer_norm_ops.h"

namespace fusedrnn {
namespace cpu {

namespace {

template <class S>
const S* opt_ptr(const OptTensor& t) {
  return t ? t->data_ptr<S>() : nullptr;
}

T5 forward(const Steps& st, const Tensor& xp_, const Tensor& h0, const Tensor& w_hh_,
           const Tensor& g_hh_, const OptTensor& b_hh_, bool reverse, bool save) {
  const auto w_hh = w_hh_.contiguous(), g_hh = g_hh_.contiguous();
  const OptTensor b_hh = b_hh_ ? OptTensor(b_hh_->contiguous()) : OptTensor();
  const int64_t H = w_hh.size(1), G = 3 * H, N = st.N;
  const auto xp = contiguous_big(xp_).view({N, G});
  const auto opt = xp.options();
  auto y = empty_big({N, H}, opt);
  const int64_t rows = save ? N : st.B;  // saved for all rows, or one step's scratch
  auto gates = empty_big({rows, G}, opt), gh = empty_big({rows, G}, opt);
  auto stats = at::empty({rows, 2}, opt);
  auto h = h0.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "ln_gru_forward_cpu", [&] {
    using S = scalar_t;
    const Weight<S> w(true, H, G, w_hh.data_ptr<S>(), H, N);
    for (int64_t s = 0; s < st.T; ++s) {
      const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
      const int64_t r = save ? off : 0;
      S* ght = gh.data_ptr<S>() + r * G;
      w.mul(n, false, h.data_ptr<S>(), H, S(0), ght, G);
      pointwise<S>().lngru_forward(n, H, xp.data_ptr<S>() + off * G, ght, g_hh.data_ptr<S>(),
                                   opt_ptr<S>(b_hh), h.data_ptr<S>(),
                                   gates.data_ptr<S>() + r * G, stats.data_ptr<S>() + r * 2,
                                   y.data_ptr<S>() + off * H);
    }
  });
  if (!save) {
    auto none = [&] { return at::empty({0}, opt); };  // distinct tensors: outputs never alias
    return {y, h, none(), none(), none()};
  }
  return {y, h, gates, gh, stats};
}

T5 backward(const Steps& st, const Tensor& dy_, const Tensor& dh_n, const Tensor& h0,
            const Tensor& w_hh_, const Tensor& g_hh_, const OptTensor& b_hh_, const Tensor& y_,
            const Tensor& gates_, const Tensor& gh_, const Tensor& stats_, bool reverse) {
  const auto w_hh = w_hh_.contiguous(), g_hh = g_hh_.contiguous();
  const OptTensor b_hh = b_hh_ ? OptTensor(b_hh_->contiguous()) : OptTensor();
  const int64_t H = w_hh.size(1), G = 3 * H, N = st.N;
  const auto opt = dy_.options();
  if (N == 0)
    return {at::zeros({N, G}, opt), dh_n.clone(), at::zeros_like(w_hh), at::zeros_like(g_hh),
            at::zeros_like(g_hh)};
  auto flat = [&](const Tensor& t) { return contiguous_big(t).view({N, t.size(-1)}); };
  auto dy = flat(dy_), y = flat(y_), gates = flat(gates_), gh = flat(gh_), stats = flat(stats_);
  auto dh = dh_n.contiguous().clone();
  auto da = empty_big({N, G}, opt), dhh = empty_big({N, G}, opt), dgh = empty_big({N, G}, opt);
  auto h_prev = previous_rows(y, h0.contiguous(), st, reverse);
  Tensor dw_hh;
  {
    const WeightBuffers sized_by_weights;  // the cache's rule (big_buffer.h)
    dw_hh = empty_big({G, H}, opt);
  }
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "ln_gru_backward_cpu", [&] {
    using S = scalar_t;
    const Weight<S> w(false, G, H, w_hh.data_ptr<S>(), H, N);  // dh_{t-1} += dgh W_hh
    for (int64_t s = st.T - 1; s >= 0; --s) {
      const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
      S* dght = dgh.data_ptr<S>() + off * G;
      pointwise<S>().lngru_backward(n, H, gates.data_ptr<S>() + off * G,
                                    gh.data_ptr<S>() + off * G, stats.data_ptr<S>() + off * 2,
                                    g_hh.data_ptr<S>(), opt_ptr<S>(b_hh),
                                    h_prev.data_ptr<S>() + off * H, dh.data_ptr<S>(),
                                    dy.data_ptr<S>() + off * H, da.data_ptr<S>() + off * G,
                                    dhh.data_ptr<S>() + off * G, dght);
      w.mul(n, false, dght, G, S(1), dh.data_ptr<S>(), H);
    }
    matmul<S>(true, false, G, H, N, dgh.data_ptr<S>(), G, h_prev.data_ptr<S>(), H, S(0),
              dw_hh.data_ptr<S>(), H);
  });
  const auto xhat = (gh - stats.narrow(1, 0, 1)) * stats.narrow(1, 1, 1);
  return {da, dh, dw_hh, (dhh * xhat).sum(0), dhh.sum(0)};
}

Tensor up_(const Tensor& t) { return is_half(t) ? up(t) : t; }

}  // namespace

T5 ln_gru_forward(const Tensor& xp, const Tensor& h0, const Tensor& w_hh, const Tensor& g_hh,
                  const OptTensor& b_hh, bool reverse, const OptTensor& batch_sizes, bool save) {
  const bool half = is_half(xp);
  const auto st = batch_sizes ? Steps::packed(*batch_sizes) : Steps::dense(xp.size(0), xp.size(1));
  auto r = forward(st, up_(xp), up_(h0), up_(w_hh), up_(g_hh), half ? up(b_hh) : b_hh, reverse,
                   save);
  auto& [y, h, gates, gh, stats] = r;
  if (half) {
    for (Tensor* t : {&y, &h, &gates}) *t = t->to(xp.scalar_type());
  }
  if (!batch_sizes) {
    const int64_t T = xp.size(0), B = xp.size(1);
    y = as_steps(y, T, B);
    if (save)
      for (Tensor* t : {&gates, &gh, &stats}) *t = as_steps(*t, T, B);
  }
  return r;
}

T5 ln_gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& h0, const Tensor& w_hh,
                   const Tensor& g_hh, const OptTensor& b_hh, const Tensor& y,
                   const Tensor& gates, const Tensor& gh, const Tensor& stats, bool reverse,
                   const OptTensor& batch_sizes) {
  const bool half = is_half(dy);
  const auto st = batch_sizes ? Steps::packed(*batch_sizes) : Steps::dense(dy.size(0), dy.size(1));
  auto r = backward(st, up_(dy), up_(dh_n), up_(h0), up_(w_hh), up_(g_hh),
                    half ? up(b_hh) : b_hh, up_(y), up_(gates), gh, stats, reverse);
  if (half) r = down(r, dy.scalar_type());
  std::get<0>(r) = std::get<0>(r).view(gh.sizes());
  return r;
}

}  // namespace cpu
}  // namespace fusedrnn
