// CPU backend, LSTM: the input projection (hoisted or per step, matmul.h: InputProjection), per
// step the recurrent GEMM (W_hh packed once per call) with the cell update (csrc/cells) fused
// into it (lstm_step.h; fp32 on AVX-512 or AVX2+FMA, without projection) or, elsewhere, the GEMM into the
// saved-gates buffer plus one fused pointwise pass; backward sweeps time in reverse, then the
// weight gradients, dx and db as single GEMMs over all rows. Thin batches run each sweep in one
// parallel region (lstm_sweep.h). fp32 GEMMs are the backend's own (gemm.h). Dense and packed
// input share one implementation (csrc/cpu/common.h: Steps). With a projection (w_hr [P,H],
// torch.nn's proj_size = P) each step adds the GEMM h = m W_hr^T, m = o * tanh(c), and the
// recurrence runs on h [B,P]. Without save (inference) the steps run in chunks whose gates and
// cells go to a bounded scratch (chunks.h). Shapes and saved tensors: csrc/ops.h.
#include "cpu/bidir_concurrent.h"
#include "cpu/chunks.h"
#include "cpu/common.h"
#include "cpu/lstm_step.h"
#include "cpu/lstm_sweep.h"
#include "cpu/matmul.h"
#include "cpu/pointwise.h"

namespace fusedrnn {
namespace cpu {

namespace {

// Row offsets and counts of the steps in the order a sweep processes them (backward: from the
// last step the forward processed).
std::pair<std::vector<int64_t>, std::vector<int64_t>> processing_order(const Steps& st,
                                                                       bool reverse,
                                                                       bool backward) {
  std::vector<int64_t> off(st.T), cnt(st.T);
  for (int64_t s = 0; s < st.T; ++s) {
    const int64_t t = time_of(backward ? st.T - 1 - s : s, st.T, reverse);
    off[s] = st.offset[t], cnt[s] = st.count[t];
  }
  return {off, cnt};
}

// x [N,I] -> y [N,P], cells [N,H], gates [N,4H]; h [B,P], c [B,H] enter as the initial states
// and leave as the final ones (a row keeps the state of its last active step). P = H without a
// projection (w_hr undefined). The steps run chunk by chunk (chunks.h: chunks_of); save=false:
// gates and cells are the scratch of one chunk, rows counted from the chunk's first row.
template <class S>
void forward_steps(const Steps& all, const std::vector<StepChunk>& chunks, const Tensor& x,
                   const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                   const OptTensor& b_hh, const Tensor& w_hr, bool reverse, bool save, Tensor& y,
                   Tensor& gates, Tensor& cells_, Tensor& h, Tensor& c) {
  const int64_t P = w_hh.size(1), G = w_hh.size(0), H = G / 4, I = w_ih.size(1);
  const bool proj = w_hr.defined();
  if (all.N == 0) return;
  // Without a projection, fp32 steps run fused where the CPU allows and it pays (lstm_step.h:
  // lstm_step_for; the recurrent GEMM with the cell update in its epilogue), else as a GEMM plus
  // a pointwise pass; W_hh is packed (if at all) once for all steps. Fewer rows than
  // kPackMinRows in all (a single step at B <= 16) do not repay packing W_hh into the fused
  // step's panels: the GEMM reads it as stored there (matmul.h).
  const LstmStepKernel* fused = nullptr;
  if constexpr (std::is_same_v<S, float>)
    fused = proj || all.N < kPackMinRows ? nullptr : lstm_step_for(all.B, H);
  auto bias = b_ih ? (*b_ih + *b_hh).contiguous() : Tensor();
  auto m = proj ? at::empty({all.B, H}, x.options()) : Tensor();  // o * tanh(c) before W_hr
  std::optional<LstmStepWeights> wf;
  std::optional<Weight<S>> whh, whr;
  if (fused) {
    wf.emplace(*fused, reinterpret_cast<const float*>(w_hh.data_ptr<S>()), H, /*lazy=*/true);
  } else {
    whh.emplace(true, P, G, w_hh.data_ptr<S>(), P, all.N);
  }
  if (proj) whr.emplace(true, H, P, w_hr.data_ptr<S>(), H, all.N);
  // Without save, W_ih packed once for all chunks, each chunk's projection one GEMM of its rows
  // (in the cache for its steps).
  std::optional<Weight<S>> wih;
  if (!save) wih.emplace(true, I, G, w_ih.data_ptr<S>(), I, all.N);
  S* ms = proj ? m.data_ptr<S>() : nullptr;
  S* hs = h.data_ptr<S>();
  S* cs = c.data_ptr<S>();
  for (const auto& chunk : chunks) {
    const Steps& st = chunk.st;
    const int64_t r0 = chunk.row0;
    S* gates0 = gates.data_ptr<S>() + (save ? r0 * G : 0);
    S* cells0 = cells_.data_ptr<S>() + (save ? r0 * H : 0);
    S* y0 = y.data_ptr<S>() + r0 * P;
    // The input projection, with both biases, into the gates buffer (bypassing the cache when
    // hoisted and large: the fused step prefetches its rows), or into the chunk's scratch.
    std::optional<InputProjection<S>> in;
    if (save)
      in.emplace(st, x.data_ptr<S>() + r0 * I, I, w_ih.data_ptr<S>(), G,
                 b_ih ? bias.data_ptr<S>() : nullptr, gates0, G, fused != nullptr);
    else
      wih->mul(st.N, false, x.data_ptr<S>() + r0 * I, I, S(0), gates0, G,
               b_ih ? bias.data_ptr<S>() : nullptr);
    const bool hoisted = !save || in->hoisted;
    if constexpr (std::is_same_v<S, float>) {
      // Thin fused steps with the projection hoisted: the whole loop in one parallel region
      // (lstm_sweep.h).
      auto thin = fused && hoisted && st.B <= kThinRows ? lstm_forward_thin_fn() : nullptr;
      if (thin) {
        const auto [off, cnt] = processing_order(st, reverse, false);
        auto hbuf = at::empty({2, st.B, H}, x.options());
        thin(*wf, st.T, off.data(), cnt.data(), gates0, hs, cs, cells0, y0, hbuf.data_ptr<S>());
        continue;
      }
    }
    for (int64_t s = 0; s < st.T; ++s) {
      const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
      S* g = gates0 + off * G;
      S* yt = y0 + off * P;
      S* ct = cells0 + off * H;
      if (in) in->step(off, n);
      if (fused) {
        // h_t goes to y first: the fused step reads all of h_{t-1} while it writes. (fused is
        // set only when S is float; the casts are identities then.)
        auto f = [](S* p) { return reinterpret_cast<float*>(p); };
        fused->step(*wf, n, f(hs), f(g), f(cs), f(ct), f(yt));
        std::copy(yt, yt + n * H, hs);
        continue;
      }
      S* out = proj ? ms : yt;  // where the cell writes o * tanh(c)
      whh->mul(n, false, hs, P, S(1), g, G);
      pointwise<S>().lstm_forward(n, H, g, cs, ct, out, proj ? nullptr : hs);
      if (proj) {
        whr->mul(n, false, ms, H, S(0), yt, P);
        std::copy(yt, yt + n * P, hs);
      }
    }
  }
}

// dh [B,P], dc [B,H] enter as the gradients of h_n, c_n and leave as those of h0, c0. c_prev
// [N,H]: the cell state each row started from. da [N,4H] receives the gate pre-activation
// gradients; with a projection dht [N,P] receives the total gradient of each h_t (for dW_hr)
// and dm [B,H] is scratch.
template <class S>
void backward_steps(const Steps& st, const Tensor& dy, const Tensor& gates, const Tensor& cells_,
                    const Tensor& c_prev, const Tensor& w_hh, const Tensor& w_hr, bool reverse,
                    Tensor& dh, Tensor& dc, Tensor& da, Tensor& dht, Tensor& dm) {
  const int64_t P = w_hh.size(1), G = w_hh.size(0), H = G / 4;
  const bool proj = w_hr.defined();
  if constexpr (std::is_same_v<S, float>) {
    // Thin steps: the whole sweep in one parallel region, W_hh read as stored (lstm_sweep.h).
    const bool small = double(G) * double(P) * sizeof(S) <= kThinBackwardBytes;
    if (auto thin = proj || st.B > kThinRows || !small ? nullptr : lstm_backward_thin_fn()) {
      const auto [off, cnt] = processing_order(st, reverse, true);
      thin(H, w_hh.data_ptr<S>(), st.T, off.data(), cnt.data(), gates.data_ptr<S>(),
           cells_.data_ptr<S>(), c_prev.data_ptr<S>(), dy.data_ptr<S>(), dh.data_ptr<S>(),
           dc.data_ptr<S>(), da.data_ptr<S>());
      return;
    }
  }
  const Weight<S> whh(false, G, P, w_hh.data_ptr<S>(), P, st.N);  // dh = da W_hh
  std::optional<Weight<S>> whr;                                   // dm = dh W_hr
  if (proj) whr.emplace(false, P, H, w_hr.data_ptr<S>(), H, st.N);
  S* dhs = dh.data_ptr<S>();
  S* dcs = dc.data_ptr<S>();
  for (int64_t s = st.T - 1; s >= 0; --s) {
    const int64_t t = time_of(s, st.T, reverse), n = st.count[t], off = st.offset[t];
    const S* g = gates.data_ptr<S>() + off * G;
    const S* ct = cells_.data_ptr<S>() + off * H;
    const S* cp = c_prev.data_ptr<S>() + off * H;
    const S* dyt = dy.data_ptr<S>() + off * P;
    S* dat = da.data_ptr<S>() + off * G;
    // Gradient reaching o * tanh(c): dh + dy, or (dh + dy) W_hr through the projection.
    const S* dma = dhs;
    const S* dmb = dyt;
    if (proj) {
      S* dh_t = dht.data_ptr<S>() + off * P;
      for (int64_t e = 0; e < n * P; ++e) dh_t[e] = dhs[e] + dyt[e];
      whr->mul(n, false, dh_t, P, S(0), dm.data_ptr<S>(), H);
      dma = dm.data_ptr<S>(), dmb = nullptr;
    }
    pointwise<S>().lstm_backward(n, H, g, ct, cp, dma, dmb, dcs, dat);
    whh.mul(n, false, dat, G, S(0), dhs, P);
  }
}

// gates_into, cells_into (save only, else undefined): where to write the saved tensors
// (bidir_concurrent.h lstm_forward_into) instead of new buffers.
T5 forward(const Steps& st, const Tensor& x_, const Tensor& h0, const Tensor& c0,
           const Tensor& w_ih_, const Tensor& w_hh_, const OptTensor& b_ih, const OptTensor& b_hh,
           const Tensor& w_hr, bool reverse, bool save, const Tensor& gates_into = {},
           const Tensor& cells_into = {}) {
  auto x = x_.contiguous().view({st.N, x_.size(-1)});
  auto w_hh = w_hh_.contiguous(), w_ih = w_ih_.contiguous();
  const int64_t P = w_hh.size(1), H = w_hh.size(0) / 4;
  auto y = empty_big({st.N, P}, x.options());
  // Without save, gates and cells are the scratch of the largest chunk (and come back empty).
  const auto chunks = chunks_of(st, reverse, save, 5 * H * int64_t(x.element_size()));
  const int64_t rows = max_rows(chunks);
  const bool into = save && gates_into.defined();
  auto gates = into ? gates_into.view({rows, 4 * H}) : empty_big({rows, 4 * H}, x.options());
  auto cells_ = into ? cells_into.view({rows, H}) : empty_big({rows, H}, x.options());
  auto h = h0.contiguous().clone(), c = c0.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_forward_cpu", [&] {
    forward_steps<scalar_t>(st, chunks, x, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, save, y, gates,
                            cells_, h, c);
  });
  if (!save) gates = at::empty({0}, x.options()), cells_ = at::empty({0}, x.options());
  return {y, h, c, gates, cells_};
}

T7 backward(const Steps& st, const Tensor& dy_, const Tensor& dh_n, const Tensor& dc_n,
            const Tensor& x_, const Tensor& h0, const Tensor& c0, const Tensor& w_ih_,
            const Tensor& w_hh_, const Tensor& w_hr, const Tensor& y_, const Tensor& gates_,
            const Tensor& cells_in, bool reverse) {
  const int64_t P = w_hh_.size(1), H = w_hh_.size(0) / 4;
  const bool proj = w_hr.defined();
  auto flat = [&](const Tensor& t) { return contiguous_big(t).view({st.N, t.size(-1)}); };
  auto dy = flat(dy_), x = flat(x_), y = flat(y_), gates = flat(gates_), cells_ = flat(cells_in);
  auto w_hh = w_hh_.contiguous(), w_ih = w_ih_.contiguous();
  const int64_t I = w_ih.size(1), G = 4 * H, N = st.N;
  auto dh = dh_n.contiguous().clone(), dc = dc_n.contiguous().clone();
  auto da = empty_big({N, G}, x.options());
  auto dht = proj ? empty_big({N, P}, x.options()) : Tensor();
  auto dm = proj ? at::empty({st.B, H}, x.options()) : Tensor();
  auto c_prev = previous_rows(cells_, c0.contiguous(), st, reverse);
  auto h_prev = previous_rows(y, h0.contiguous(), st, reverse);
  auto dx = empty_big({N, I}, x.options());
  Tensor dw_ih, dw_hh;
  {
    const WeightBuffers sized_by_weights;  // the cache's rule (big_buffer.h)
    dw_ih = empty_big({G, I}, x.options());
    dw_hh = empty_big({G, P}, x.options());
  }
  // dW_hr = sum over rows of dh_t^T m_t, with m = o * tanh(c) recomputed from the saved tensors.
  auto m = proj ? (gates.narrow(1, 3 * H, H) * at::tanh(cells_)).contiguous() : Tensor();
  auto dw_hr = proj ? at::empty({P, H}, x.options()) : at::empty({0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_backward_cpu", [&] {
    using S = scalar_t;
    backward_steps<S>(st, dy, gates, cells_, c_prev, w_hh, w_hr, reverse, dh, dc, da, dht, dm);
    const S* dap = da.data_ptr<S>();
    matmul_weight<S>(false, false, N, I, G, dap, G, w_ih.data_ptr<S>(), I, S(0),
                     dx.data_ptr<S>(), I);
    matmul<S>(true, false, G, I, N, dap, G, x.data_ptr<S>(), I, S(0), dw_ih.data_ptr<S>(), I);
    matmul<S>(true, false, G, P, N, dap, G, h_prev.data_ptr<S>(), P, S(0), dw_hh.data_ptr<S>(),
              P);
    if (proj)
      matmul<S>(true, false, P, H, N, dht.data_ptr<S>(), P, m.data_ptr<S>(), H, S(0),
                dw_hr.data_ptr<S>(), H);
  });
  return {dx.view(x_.sizes()), dh, dc, dw_ih, dw_hh, da.sum(0), dw_hr};
}


}  // namespace

namespace {
T5 forward_shaped(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                  const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                  const OptTensor& batch_sizes, const Tensor& whr, bool save,
                  const Tensor& gates_into, const Tensor& cells_into) {
  if (batch_sizes)
    return forward(Steps::packed(*batch_sizes), x, h0, c0, w_ih, w_hh, b_ih, b_hh, whr, reverse,
                   save, gates_into, cells_into);
  const int64_t T = x.size(0), B = x.size(1);
  auto [y, h, c, gates, cells_] = forward(Steps::dense(T, B), x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                          whr, reverse, save, gates_into, cells_into);
  if (!save) return {as_steps(y, T, B), h, c, gates, cells_};
  return {as_steps(y, T, B), h, c, as_steps(gates, T, B), as_steps(cells_, T, B)};
}
}  // namespace

T5 lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                const OptTensor& batch_sizes, const OptTensor& w_hr, bool save) {
  if (is_half(x))
    return down(lstm_forward(up(x), up(h0), up(c0), up(w_ih), up(w_hh), up(b_ih), up(b_hh),
                             reverse, batch_sizes, up(w_hr), save),
                x.scalar_type());
  auto whr = w_hr ? w_hr->contiguous() : Tensor();
  return forward_shaped(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, whr, save, {},
                        {});
}

T5 lstm_forward_into(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                     const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                     bool reverse, const OptTensor& batch_sizes, const Tensor& gates_into,
                     const Tensor& cells_into) {
  TORCH_CHECK(!is_half(x) && gates_into.is_contiguous() && cells_into.is_contiguous(),
              "lstm_forward_into: fp32/fp64 and contiguous targets only");
  return forward_shaped(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, Tensor(), true,
                        gates_into, cells_into);
}

T7 lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& x,
                 const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                 const Tensor& y, const Tensor& gates, const Tensor& cells_, bool reverse,
                 const OptTensor& batch_sizes, const OptTensor& w_hr) {
  if (is_half(x))
    return down(lstm_backward(up(dy), up(dh_n), up(dc_n), up(x), up(h0), up(c0), up(w_ih),
                              up(w_hh), up(y), up(gates), up(cells_), reverse, batch_sizes,
                              up(w_hr)),
                x.scalar_type());
  const auto st = batch_sizes ? Steps::packed(*batch_sizes) : Steps::dense(x.size(0), x.size(1));
  auto whr = w_hr ? w_hr->contiguous() : Tensor();
  return backward(st, dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, whr, y, gates, cells_, reverse);
}

}  // namespace cpu
}  // namespace fusedrnn
