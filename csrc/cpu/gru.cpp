// CPU backend, GRU (reset-after, gates r,z,n): input projection (hoisted or per step,
// matmul.h: InputProjection) into the saved-gates buffer;
// per step the recurrent GEMM into a [B,3H] scratch (kept apart from the input part because the
// reset gate multiplies only W_hn h + b_hn) and one fused pointwise pass (csrc/cells).
// Backward keeps the input-side and recurrent-side gate gradients apart (they differ in the n
// gate) and computes every weight gradient as one GEMM over all rows. Dense and packed input
// share one implementation (Steps). Without save (inference) the steps run in chunks whose
// gates and ghn go to a bounded scratch (chunks.h). Shapes: csrc/ops.h.
#include "cpu/bidir_concurrent.h"
#include "cpu/chunks.h"
#include "cpu/common.h"
#include "cpu/matmul.h"
#include "cpu/pointwise.h"

namespace fusedrnn {
namespace cpu {

namespace {

// x [N,I] -> y, ghn [N,H], gates [N,3H]; h [B,H] enters as h0 and leaves as h_n. The steps run
// chunk by chunk (chunks.h: chunks_of); save=false: gates and ghn are the scratch of one chunk,
// rows counted from the chunk's first row.
template <class S>
void forward_steps(const Steps& all, const std::vector<StepChunk>& chunks, const Tensor& x,
                   const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                   const OptTensor& b_hh, bool reverse, bool save, Tensor& y, Tensor& gates,
                   Tensor& ghn, Tensor& h) {
  const int64_t H = w_hh.size(1), G = 3 * H, I = w_ih.size(1);
  if (all.N == 0) return;
  auto bias = b_ih ? b_ih->contiguous() : Tensor();
  auto gh = at::empty({all.B, G}, x.options());
  const Weight<S> whh(true, H, G, w_hh.data_ptr<S>(), H, all.N);  // packed once for all steps
  const S* bhh = b_hh ? b_hh->data_ptr<S>() : nullptr;
  // Without save, W_ih packed once for all chunks, each chunk's projection one GEMM of its rows.
  std::optional<Weight<S>> wih;
  if (!save) wih.emplace(true, I, G, w_ih.data_ptr<S>(), I, all.N);
  S* ghp = gh.data_ptr<S>();
  S* hs = h.data_ptr<S>();
  for (const auto& chunk : chunks) {
    const Steps& st = chunk.st;
    const int64_t r0 = chunk.row0;
    S* gates0 = gates.data_ptr<S>() + (save ? r0 * G : 0);
    S* ghn0 = ghn.data_ptr<S>() + (save ? r0 * H : 0);
    S* y0 = y.data_ptr<S>() + r0 * H;
    std::optional<InputProjection<S>> in;
    if (save)
      in.emplace(st, x.data_ptr<S>() + r0 * I, I, w_ih.data_ptr<S>(), G,
                 b_ih ? bias.data_ptr<S>() : nullptr, gates0, G);
    else
      wih->mul(st.N, false, x.data_ptr<S>() + r0 * I, I, S(0), gates0, G,
               b_ih ? bias.data_ptr<S>() : nullptr);
    for (int64_t s = 0; s < st.T; ++s) {
      const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
      S* g = gates0 + off * G;
      S* yt = y0 + off * H;
      S* nt = ghn0 + off * H;
      if (in) in->step(off, n);
      whh.mul(n, false, hs, H, S(0), ghp, G);
      pointwise<S>().gru_forward(n, H, g, ghp, bhh, hs, yt, nt);
    }
  }
}

// dh [B,H] enters as the gradient of h_n and leaves as that of h0. h_prev [N,H]: the state
// each row started from. dgx, dgh [N,3H]: input-side and recurrent-side gate gradients.
template <class S>
void backward_steps(const Steps& st, const Tensor& dy, const Tensor& gates, const Tensor& ghn,
                    const Tensor& h_prev, const Tensor& w_hh, bool reverse, Tensor& dh,
                    Tensor& dgx, Tensor& dgh) {
  const int64_t H = w_hh.size(1), G = 3 * H;
  const Weight<S> whh(false, G, H, w_hh.data_ptr<S>(), H, st.N);
  S* dhs = dh.data_ptr<S>();
  for (int64_t s = st.T - 1; s >= 0; --s) {
    const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
    const S* g = gates.data_ptr<S>() + off * G;
    const S* nt = ghn.data_ptr<S>() + off * H;
    const S* hp = h_prev.data_ptr<S>() + off * H;
    const S* dyt = dy.data_ptr<S>() + off * H;
    S* dxt = dgx.data_ptr<S>() + off * G;
    S* dht = dgh.data_ptr<S>() + off * G;
    pointwise<S>().gru_backward(n, H, g, nt, hp, dhs, dyt, dxt, dht);
    // dh_{t-1} = z * dh_t (written above) + dgh_t W_hh
    whh.mul(n, false, dht, G, S(1), dhs, H);
  }
}

// gates_into, ghn_into: as lstm.cpp's forward (bidir_concurrent.h gru_forward_into).
T4 forward(const Steps& st, const Tensor& x_, const Tensor& h0, const Tensor& w_ih_,
           const Tensor& w_hh_, const OptTensor& b_ih, const OptTensor& b_hh_, bool reverse,
           bool save, const Tensor& gates_into = {}, const Tensor& ghn_into = {}) {
  auto x = x_.contiguous().view({st.N, x_.size(-1)});
  auto w_hh = w_hh_.contiguous(), w_ih = w_ih_.contiguous();
  OptTensor b_hh = b_hh_ ? OptTensor(b_hh_->contiguous()) : OptTensor();
  const int64_t H = w_hh.size(1);
  auto y = empty_big({st.N, H}, x.options());
  // Without save, gates and ghn are the scratch of the largest chunk (and come back empty).
  const auto chunks = chunks_of(st, reverse, save, 4 * H * int64_t(x.element_size()));
  const int64_t rows = max_rows(chunks);
  const bool into = save && gates_into.defined();
  auto gates = into ? gates_into.view({rows, 3 * H}) : empty_big({rows, 3 * H}, x.options());
  auto ghn = into ? ghn_into.view({rows, H}) : empty_big({rows, H}, x.options());
  auto h = h0.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_forward_cpu", [&] {
    forward_steps<scalar_t>(st, chunks, x, w_ih, w_hh, b_ih, b_hh, reverse, save, y, gates, ghn,
                            h);
  });
  if (!save) gates = at::empty({0}, x.options()), ghn = at::empty({0}, x.options());
  return {y, h, gates, ghn};
}

T6 backward(const Steps& st, const Tensor& dy_, const Tensor& dh_n, const Tensor& x_,
            const Tensor& h0, const Tensor& w_ih_, const Tensor& w_hh_, const Tensor& y_,
            const Tensor& gates_, const Tensor& ghn_, bool reverse) {
  const int64_t H = w_hh_.size(1);
  auto flat = [&](const Tensor& t) { return contiguous_big(t).view({st.N, t.size(-1)}); };
  auto dy = flat(dy_), x = flat(x_), y = flat(y_), gates = flat(gates_), ghn = flat(ghn_);
  auto w_hh = w_hh_.contiguous(), w_ih = w_ih_.contiguous();
  const int64_t I = w_ih.size(1), G = 3 * H, N = st.N;
  auto dh = dh_n.contiguous().clone();
  auto dgx = empty_big({N, G}, x.options());
  auto dgh = empty_big({N, G}, x.options());
  auto h_prev = previous_rows(y, h0.contiguous(), st, reverse);
  auto dx = empty_big({N, I}, x.options());
  Tensor dw_ih, dw_hh;
  {
    const WeightBuffers sized_by_weights;  // the cache's rule (big_buffer.h)
    dw_ih = empty_big({G, I}, x.options());
    dw_hh = empty_big({G, H}, x.options());
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_backward_cpu", [&] {
    using S = scalar_t;
    backward_steps<S>(st, dy, gates, ghn, h_prev, w_hh, reverse, dh, dgx, dgh);
    const S* gx = dgx.data_ptr<S>();
    matmul_weight<S>(false, false, N, I, G, gx, G, w_ih.data_ptr<S>(), I, S(0),
                     dx.data_ptr<S>(), I);
    matmul<S>(true, false, G, I, N, gx, G, x.data_ptr<S>(), I, S(0), dw_ih.data_ptr<S>(), I);
    matmul<S>(true, false, G, H, N, dgh.data_ptr<S>(), G, h_prev.data_ptr<S>(), H, S(0),
              dw_hh.data_ptr<S>(), H);
  });
  return {dx.view(x_.sizes()), dh, dw_ih, dw_hh, dgx.sum(0), dgh.sum(0)};
}

}  // namespace

namespace {
T4 forward_shaped(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                  const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                  const OptTensor& batch_sizes, bool save, const Tensor& gates_into,
                  const Tensor& ghn_into) {
  if (batch_sizes)
    return forward(Steps::packed(*batch_sizes), x, h0, w_ih, w_hh, b_ih, b_hh, reverse, save,
                   gates_into, ghn_into);
  const int64_t T = x.size(0), B = x.size(1);
  auto [y, h, gates, ghn] = forward(Steps::dense(T, B), x, h0, w_ih, w_hh, b_ih, b_hh, reverse,
                                    save, gates_into, ghn_into);
  if (!save) return {as_steps(y, T, B), h, gates, ghn};
  return {as_steps(y, T, B), h, as_steps(gates, T, B), as_steps(ghn, T, B)};
}
}  // namespace

T4 gru_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
               const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
               const OptTensor& batch_sizes, bool save) {
  if (is_half(x))
    return down(gru_forward(up(x), up(h0), up(w_ih), up(w_hh), up(b_ih), up(b_hh), reverse,
                            batch_sizes, save),
                x.scalar_type());
  return forward_shaped(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, save, {}, {});
}

T4 gru_forward_into(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                    const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                    const OptTensor& batch_sizes, const Tensor& gates_into,
                    const Tensor& ghn_into) {
  TORCH_CHECK(!is_half(x) && gates_into.is_contiguous() && ghn_into.is_contiguous(),
              "gru_forward_into: fp32/fp64 and contiguous targets only");
  return forward_shaped(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, true, gates_into,
                        ghn_into);
}

T6 gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, const Tensor& gates,
                const Tensor& ghn, bool reverse, const OptTensor& batch_sizes) {
  if (is_half(x))
    return down(gru_backward(up(dy), up(dh_n), up(x), up(h0), up(w_ih), up(w_hh), up(y),
                             up(gates), up(ghn), reverse, batch_sizes),
                x.scalar_type());
  const auto st = batch_sizes ? Steps::packed(*batch_sizes) : Steps::dense(x.size(0), x.size(1));
  return backward(st, dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, reverse);
}

}  // namespace cpu
}  // namespace fusedrnn
