// CPU backend of the layer-normalised LSTM's recurrent part (contract: csrc/layer_norm_ops.h).
// Per step: h W_hh^T into the gh rows (packed once for all steps), then one pass per row
// (pointwise.h lnlstm_forward: gh's statistics, the gates and c', c''s statistics, h').
// Backward per step: the row pass (LN(c') and the cell backward, then LN(gh)'s backward) and
// dh_{t-1} = dgh W_hh; dW_hh and the gains' and bias's gradients are reductions after the loop.
// fp16/bf16 are computed in fp32 (gh and stats stay fp32, the accumulation type).
#include <optional>

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

T7 forward(const Steps& st, const Tensor& xp_, const Tensor& h0, const Tensor& c0,
           const Tensor& w_hh_, const Tensor& g_hh_, const Tensor& g_c_, const OptTensor& b_c_,
           bool reverse, bool save) {
  const auto w_hh = w_hh_.contiguous(), g_hh = g_hh_.contiguous(), g_c = g_c_.contiguous();
  const OptTensor b_c = b_c_ ? OptTensor(b_c_->contiguous()) : OptTensor();
  const int64_t H = w_hh.size(1), G = 4 * H, N = st.N;
  const auto xp = contiguous_big(xp_).view({N, G});
  const auto opt = xp.options();
  auto y = empty_big({N, H}, opt);
  const int64_t rows = save ? N : st.B;  // saved for all rows, or one step's scratch
  auto gates = empty_big({rows, G}, opt), gh = empty_big({rows, G}, opt);
  auto cells = empty_big({rows, H}, opt), stats = at::empty({rows, 4}, opt);
  auto h = h0.contiguous().clone(), c = c0.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "ln_lstm_forward_cpu", [&] {
    using S = scalar_t;
    const Weight<S> w(true, H, G, w_hh.data_ptr<S>(), H, N);
    for (int64_t s = 0; s < st.T; ++s) {
      const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
      const int64_t r = save ? off : 0;
      S* ght = gh.data_ptr<S>() + r * G;
      w.mul(n, false, h.data_ptr<S>(), H, S(0), ght, G);
      pointwise<S>().lnlstm_forward(n, H, xp.data_ptr<S>() + off * G, ght, g_hh.data_ptr<S>(),
                                    g_c.data_ptr<S>(), opt_ptr<S>(b_c), c.data_ptr<S>(),
                                    gates.data_ptr<S>() + r * G, cells.data_ptr<S>() + r * H,
                                    stats.data_ptr<S>() + r * 4, h.data_ptr<S>(),
                                    y.data_ptr<S>() + off * H);
    }
  });
  if (!save) {
    auto none = [&] { return at::empty({0}, opt); };  // distinct tensors: outputs never alias
    return {y, h, c, none(), none(), none(), none()};
  }
  return {y, h, c, gates, gh, cells, stats};
}

T7 backward(const Steps& st, const Tensor& dy_, const Tensor& dh_n, const Tensor& dc_n,
            const Tensor& h0, const Tensor& c0, const Tensor& w_hh_, const Tensor& g_hh_,
            const Tensor& g_c_, const OptTensor& b_c_, const Tensor& y_, const Tensor& gates_,
            const Tensor& gh_, const Tensor& cells_, const Tensor& stats_, bool reverse) {
  const auto w_hh = w_hh_.contiguous(), g_hh = g_hh_.contiguous(), g_c = g_c_.contiguous();
  const OptTensor b_c = b_c_ ? OptTensor(b_c_->contiguous()) : OptTensor();
  const int64_t H = w_hh.size(1), G = 4 * H, N = st.N;
  const auto opt = dy_.options();
  if (N == 0)
    return {at::zeros({N, G}, opt), dh_n.clone(), dc_n.clone(), at::zeros_like(w_hh),
            at::zeros_like(g_hh), at::zeros_like(g_c), at::zeros_like(g_c)};
  auto flat = [&](const Tensor& t) { return contiguous_big(t).view({N, t.size(-1)}); };
  auto dy = flat(dy_), y = flat(y_), gates = flat(gates_), gh = flat(gh_), cells = flat(cells_);
  auto stats = flat(stats_);
  auto dh = dh_n.contiguous().clone(), dc = dc_n.contiguous().clone();
  auto da = empty_big({N, G}, opt), dgh = empty_big({N, G}, opt), dyc = empty_big({N, H}, opt);
  auto h_prev = previous_rows(y, h0.contiguous(), st, reverse);
  auto c_prev = previous_rows(cells, c0.contiguous(), st, reverse);
  Tensor dw_hh;
  {
    const WeightBuffers sized_by_weights;  // the cache's rule (big_buffer.h)
    dw_hh = empty_big({G, H}, opt);
  }
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "ln_lstm_backward_cpu", [&] {
    using S = scalar_t;
    const Weight<S> w(false, G, H, w_hh.data_ptr<S>(), H, N);  // dh_{t-1} = dgh W_hh
    for (int64_t s = st.T - 1; s >= 0; --s) {
      const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
      S* dght = dgh.data_ptr<S>() + off * G;
      pointwise<S>().lnlstm_backward(
          n, H, gates.data_ptr<S>() + off * G, gh.data_ptr<S>() + off * G,
          cells.data_ptr<S>() + off * H, c_prev.data_ptr<S>() + off * H,
          stats.data_ptr<S>() + off * 4, g_hh.data_ptr<S>(), g_c.data_ptr<S>(), opt_ptr<S>(b_c),
          dh.data_ptr<S>(), dy.data_ptr<S>() + off * H, dc.data_ptr<S>(),
          da.data_ptr<S>() + off * G, dght, dyc.data_ptr<S>() + off * H);
      w.mul(n, false, dght, G, S(0), dh.data_ptr<S>(), H);
    }
    matmul<S>(true, false, G, H, N, dgh.data_ptr<S>(), G, h_prev.data_ptr<S>(), H, S(0),
              dw_hh.data_ptr<S>(), H);
  });
  auto col = [&](int64_t j) { return stats.narrow(1, j, 1); };
  const auto xhat = (gh - col(0)) * col(1), chat = (cells - col(2)) * col(3);
  return {da, dh, dc, dw_hh, (da * xhat).sum(0), (dyc * chat).sum(0), dyc.sum(0)};
}

// The half types: computed in fp32; gh and stats stay fp32 (the accumulation type).
Tensor up_(const Tensor& t) { return is_half(t) ? up(t) : t; }

}  // namespace

T7 ln_lstm_forward(const Tensor& xp, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
                   const Tensor& g_hh, const Tensor& g_c, const OptTensor& b_c, bool reverse,
                   const OptTensor& batch_sizes, bool save) {
  const bool half = is_half(xp);
  const auto st = batch_sizes ? Steps::packed(*batch_sizes) : Steps::dense(xp.size(0), xp.size(1));
  auto r = forward(st, up_(xp), up_(h0), up_(c0), up_(w_hh), up_(g_hh), up_(g_c),
                   half ? up(b_c) : b_c, reverse, save);
  auto& [y, h, c, gates, gh, cells, stats] = r;
  if (half) {
    for (Tensor* t : {&y, &h, &c, &gates, &cells}) *t = t->to(xp.scalar_type());
  }
  if (save && !batch_sizes) {
    const int64_t T = xp.size(0), B = xp.size(1);
    for (Tensor* t : {&gates, &gh, &cells, &stats}) *t = as_steps(*t, T, B);
  }
  if (!batch_sizes) y = as_steps(y, xp.size(0), xp.size(1));
  return r;
}

T7 ln_lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& h0,
                    const Tensor& c0, const Tensor& w_hh, const Tensor& g_hh, const Tensor& g_c,
                    const OptTensor& b_c, const Tensor& y, const Tensor& gates, const Tensor& gh,
                    const Tensor& cells, const Tensor& stats, bool reverse,
                    const OptTensor& batch_sizes) {
  const bool half = is_half(dy);
  const auto st = batch_sizes ? Steps::packed(*batch_sizes) : Steps::dense(dy.size(0), dy.size(1));
  auto r = backward(st, up_(dy), up_(dh_n), up_(dc_n), up_(h0), up_(c0), up_(w_hh), up_(g_hh),
                    up_(g_c), half ? up(b_c) : b_c, up_(y), up_(gates), gh, up_(cells), stats,
                    reverse);
  if (half) r = down(r, dy.scalar_type());
  std::get<0>(r) = std::get<0>(r).view(gh.sizes());
  return r;
}

}  // namespace cpu
}  // namespace fusedrnn
