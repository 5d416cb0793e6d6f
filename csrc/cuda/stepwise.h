// Host orchestration of the stepwise algorithm (DESIGN.md §3), written once and compiled twice:
// by nvcc in csrc/cuda/*.cu (namespace fusedrnn::cuda, CUDA tensors, kernels on the GPU) and by the
// host compiler in csrc/simt/ops_*.cpp (namespace fusedrnn::simt, CPU tensors, the same kernels on
// CPU threads through the SIMT layer). FRNN_BACKEND_NS (csrc/cuda/portable.h) names the namespace.
//
// Contract: the arguments were validated by the dispatcher (csrc/checks.h: shapes, one dtype, one
// device); shapes and saved tensors as in csrc/ops.h. Inputs may be non-contiguous (made contiguous
// here, once). Every output is a fresh contiguous tensor. Dense and packed input (batch_sizes)
// share one code path: every step is launched for its own live rows only (Steps below), so a
// packed batch computes no padding. Per call:
//   forward : one GEMM for the input projection of all N rows (cuda/hoisted_gemm.h: cuBLAS in
//             cuDNN's precision; under SIMT its emulation) with the biases folded in (GRU: b_ih
//             only), then T launches of the fused step kernel;
//             without save (csrc/ops.h) one such GEMM per chunk of steps into a bounded
//             scratch (XProj) and the kernels store no gates / cells / ghn;
//             with the LSTM projection each step adds the GEMM y_t = m_t W_hr^T (same policy).
//   backward: T launches of the fused backward step kernel (reverse processing order), then dh0
//             and dx, dW_ih, dW_hh, db as single GEMMs / reductions over all N rows. With the
//             projection each step first forms dh_t = dy_t + da_{t+1} W_hh and dm_t = dh_t W_hr
//             (ATen GEMMs), and the kernel only does the cell; dW_hr is one GEMM at the end.
//   h_n / dh0 of packed input: each row's state after its last step / gradient at its first
//   step, gathered with one copy per distinct sequence length.
// Buffers are allocated before the time loop (the packed row index of previous_rows, built in
// the backward after it, goes to the device from pinned memory); launches go to the current
// stream, no host sync.
// Freshly allocated buffers the kernels must fully write are poisoned (NaN under SIMT).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <climits>
#include <type_traits>
#include <vector>

#include "cuda/gru_kernels.cuh"
#include "cuda/hoisted_gemm.h"
#include "cuda/lstm_kernels.cuh"
#include "cuda/rnn_kernels.cuh"
#include "ops.h"

#if defined(__CUDACC__)
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>

#include <mutex>
#define FRNN_DEVICE_GUARD(t) c10::cuda::CUDAGuard frnn_device_guard_((t).device())
#else
#define FRNN_DEVICE_GUARD(t) ((void)0)
#endif

namespace fusedrnn {
namespace portable {
// A host tensor the launcher built (pinned under CUDA) copied to like's device without a host
// sync. The copy is asynchronous (ATen records an event so the pinned block is not reused before
// it completes). Under CUDA-graph capture the copy becomes a graph node that reads this host
// memory at every replay, so the block must never be reused: it is then kept for the life of the
// process (the step tables: 4-8 bytes per row).
inline at::Tensor host_to_device(const at::Tensor& host, const at::Tensor& like) {
#if defined(__CUDACC__)
  auto out = host.to(like.device(), host.scalar_type(), /*non_blocking=*/true);
  if (c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None) {
    static std::mutex mu;
    static std::vector<at::Tensor> kept;
    std::lock_guard<std::mutex> lock(mu);
    kept.push_back(host);
  }
  return out;
#else
  return host.to(like.device());
#endif
}
}  // namespace portable
}  // namespace fusedrnn

// FRNN_DTYPE_SWITCH(dtype, "op", [&] { ... scalar_t ... }): runs the lambda with scalar_t bound to
// the C++ type of dtype (float, double, c10::Half, c10::BFloat16).
#define FRNN_DTYPE_CASE(enum_type, type, ...) \
  case enum_type: {                           \
    using scalar_t = type;                    \
    return __VA_ARGS__();                     \
  }
#define FRNN_DTYPE_SWITCH(dtype, op, ...)                                                      \
  [&] {                                                                                        \
    const auto frnn_dtype_ = (dtype);                                                          \
    switch (frnn_dtype_) {                                                                     \
      FRNN_DTYPE_CASE(at::kFloat, float, __VA_ARGS__)                                          \
      FRNN_DTYPE_CASE(at::kDouble, double, __VA_ARGS__)                                        \
      FRNN_DTYPE_CASE(at::kHalf, c10::Half, __VA_ARGS__)                                       \
      FRNN_DTYPE_CASE(at::kBFloat16, c10::BFloat16, __VA_ARGS__)                               \
      default:                                                                                 \
        TORCH_CHECK(false, op, ": unsupported dtype ", frnn_dtype_,                            \
                    " (float32, float64, float16, bfloat16)");                                 \
    }                                                                                          \
  }()

namespace fusedrnn {
namespace FRNN_BACKEND_NS {
namespace stepwise {

template <class S> using acc_of = typename kern::AccType<S>::type;

template <class S> inline at::ScalarType acc_dtype() {
  return c10::CppTypeToScalarType<acc_of<S>>::value;
}

inline void check_int_range(const char* op, int64_t B, int64_t G, int64_t H, int64_t I,
                            int64_t P) {
  TORCH_CHECK(B * G * H < INT_MAX && G * H * P < INT_MAX && G * H * I < INT_MAX &&
                  B * P < INT_MAX, op,
              ": sizes too large for 32-bit indexing in the step kernels (B=", B, ", H=", H,
              ", I=", I, ")");
}

// Row tiles on x (up to 2^31-1 blocks), unit tiles on y (at most 65535: H < 65535 * HT, far
// above what the 32-bit index check admits), so batches of millions of rows launch.
inline dim3 step_grid(int64_t n, int64_t H, int BT, int HT) {
  const int64_t units = (H + HT - 1) / HT, rows = (n + BT - 1) / BT;
  TORCH_CHECK(units <= 65535 && rows <= INT_MAX, "step kernel: grid of ", rows, " x ", units,
              " blocks is beyond the device's limits (H=", H, ", rows=", n, ")");
  return dim3(unsigned(rows), unsigned(units), 1);
}

// A step kernel chosen at run time (its precision) with the launch shape of its tile shape.
template <class P>
struct StepLaunch {
  void (*kernel)(P);
  int BT, HT, threads, smem;
  dim3 grid(int64_t n, int64_t H) const { return step_grid(n, H, BT, HT); }
};
template <class Cfg, class P> inline StepLaunch<P> step_launch(void (*kernel)(P)) {
  return {kernel, Cfg::BT, Cfg::HT, Cfg::kThreads, Cfg::kSmemBytes};
}

// The recurrent product's precision (cuda/tile_mma.cuh), as torch lets cuDNN's RNNs choose:
// fp32 on TF32 tensor cores exactly when rnn_tf32_allowed() (cuda/hoisted_gemm.h), IEEE FFMA
// otherwise; bf16/fp16 on their tensor cores in the forward and on two-term TF32 in the backward
// (the fp32 gate gradients keep about 21 bits); fp64 on FFMA. Read per call, on the host.
template <kern::Prec P> using PrecTag = std::integral_constant<kern::Prec, P>;
// make(PrecTag<P>{}) for the precision of this call, instantiating only those S can have.
template <class S, bool kBackward, class F> inline auto pick_step(F make) {
  using kern::Prec;
  if constexpr (sizeof(S) == 2 && kBackward)
    return make(PrecTag<Prec::kTf32x2>{});
  else if constexpr (sizeof(S) == 2)
    return make(PrecTag<Prec::kHalf>{});
  else if constexpr (std::is_same<S, float>::value)
    return rnn_tf32_allowed() ? make(PrecTag<Prec::kTf32>{}) : make(PrecTag<Prec::kFfma>{});
  else
    return make(PrecTag<Prec::kFfma>{});
}

// The time steps of one call, known on the host (batch_sizes is a CPU tensor), so the loop
// launches each step for its own row count without a device sync. Dense: T steps of B rows,
// step t at rows [t*B, (t+1)*B). Packed: step t has count[t] rows (non-increasing in t, a
// prefix of the batch) at rows [offset[t], offset[t] + count[t]). Step s of the processing
// order is time t = time(s) (reverse: T-1-s).
struct Steps {
  int64_t T = 0, B = 0, N = 0;
  bool packed = false, reverse = false;
  std::vector<int64_t> count, offset;

  int64_t time(int64_t s) const { return reverse ? T - 1 - s : s; }
  // Rows of the s-th processed step; 0 before the first and after the last.
  int64_t rows(int64_t s) const { return s < 0 || s >= T ? 0 : count[time(s)]; }
  int64_t first_row(int64_t s) const { return offset[time(s)]; }
  // A per-row tensor [N,K] as the op returns it: [T,B,K] dense.
  Tensor shaped(const Tensor& t) const { return packed ? t : t.view({T, B, t.size(1)}); }
};

// x: [T,B,I] dense or [N,I] packed (validated by csrc/checks.h).
inline Steps make_steps(const Tensor& x, const OptTensor& batch_sizes, bool reverse) {
  Steps st;
  st.reverse = reverse;
  if (batch_sizes) {
    const auto bs = batch_sizes->contiguous();
    const int64_t* p = bs.data_ptr<int64_t>();
    st.packed = true;
    st.T = bs.numel();
    st.B = st.T ? p[0] : 0;
    for (int64_t t = 0; t < st.T; ++t) st.offset.push_back(st.N), st.count.push_back(p[t]), st.N += p[t];
  } else {
    st.T = x.size(0), st.B = x.size(1), st.N = st.T * st.B;
    for (int64_t t = 0; t < st.T; ++t) st.offset.push_back(t * st.B), st.count.push_back(st.B);
  }
  return st;
}

// [T,B,K] or [N,K] -> contiguous [N,K].
inline Tensor flat(const Tensor& t, const Steps& st) {
  return t.contiguous().view({st.N, t.size(-1)});
}

// Row b of the result = row b of seq [N,K] at the last time step where b is active (each
// sequence's end). One copy per distinct sequence length (dense: one).
inline Tensor rows_at_sequence_end(const Tensor& seq, const Steps& st) {
  auto out = at::empty({st.B, seq.size(1)}, seq.options());
  for (int64_t t = 0; t < st.T; ++t) {
    const int64_t lo = t + 1 < st.T ? st.count[t + 1] : 0, hi = st.count[t];
    if (hi > lo) out.narrow(0, lo, hi - lo).copy_(seq.narrow(0, st.offset[t] + lo, hi - lo));
  }
  return out;
}

// The final state h_n (row b: its state after its last processed step): the sequence's end,
// or time 0 in the reverse direction, where every row is active.
inline Tensor final_rows(const Tensor& seq, const Steps& st) {
  return st.reverse ? seq.narrow(0, 0, st.B).clone() : rows_at_sequence_end(seq, st);
}

// Row b's values at its first processed step (where it read h0): backward's route to dh0.
inline Tensor initial_rows(const Tensor& seq, const Steps& st) {
  return st.reverse ? rows_at_sequence_end(seq, st) : seq.narrow(0, 0, st.B);
}

// For every row (t, b) the state it started from [N,K]: the same row of the previously processed
// step when it was active there, else init[b] ([B,K]). Dense: one concatenation; packed: one
// gather by a row index built on the host (copied to the device from pinned memory, no sync).
inline Tensor previous_rows(const Tensor& seq, const Tensor& init, const Steps& st) {
  const int64_t T = st.T, B = st.B, K = seq.size(1);
  if (!st.packed) {
    auto y = seq.view({T, B, K});
    auto h = init.unsqueeze(0);
    auto out = st.reverse ? at::cat({y.narrow(0, 1, T - 1), h}, 0)
                          : at::cat({h, y.narrow(0, 0, T - 1)}, 0);
    return out.view({st.N, K});
  }
  auto opts = at::TensorOptions().dtype(at::kLong);
#if defined(__CUDACC__)
  opts = opts.pinned_memory(true);
#endif
  auto idx = at::empty({st.N}, opts);
  int64_t* ip = idx.data_ptr<int64_t>();
  for (int64_t s = 0; s < T; ++s) {  // rows of cat([init, seq]): init at 0, seq at B
    const int64_t n = st.rows(s), off = st.first_row(s), np = st.rows(s - 1);
    const int64_t poff = s > 0 ? st.first_row(s - 1) : 0;
    for (int64_t b = 0; b < n; ++b) ip[off + b] = b < np ? B + poff + b : b;
  }
  return at::index_select(at::cat({init, seq}, 0), 0, portable::host_to_device(idx, seq));
}

// x [N,I] -> [N, G*H] in x's dtype: x W_ih^T (+ bias), in the GEMM policy (cuda/hoisted_gemm.h).
inline Tensor input_projection(const Tensor& x, const Tensor& w_ih, const OptTensor& bias) {
  return policy_mm(x, w_ih.t(), x.scalar_type(), x.scalar_type(), bias);
}

// The input projection of a forward's time loop. save: one GEMM over all N rows before the loop
// (an [N, G*H] temporary). Without save (nothing for backward, csrc/ops.h): a scratch of a chunk
// of steps (nosave_chunk_bytes(), at least one step), refilled by one GEMM (on the current
// stream, after the previous chunk's launches) whenever the loop reaches a step it does not
// hold, so the forward keeps no per-row buffer but y. for_step<S>(s): the rows of processed step s (null
// outside the sequence).
struct XProj {
  const Steps& st;
  Tensor x, w_ih;
  OptTensor bias;
  Tensor buf;
  int64_t row0 = 0, rows = 0;  // buf holds rows [row0, row0 + rows) of the projection
  XProj(const Steps& st_, const Tensor& x_, const Tensor& w_ih_, const OptTensor& bias_,
        bool save)
      : st(st_), x(x_), w_ih(w_ih_), bias(bias_) {
    if (save) {
      buf = input_projection(x, w_ih, bias), rows = st.N;
    } else {
      const int64_t row_bytes = w_ih.size(0) * int64_t(w_ih.element_size());
      buf = at::empty({std::max(nosave_chunk_bytes() / row_bytes, st.B), w_ih.size(0)},
                      x.options());
    }
  }
  template <class S> S* for_step(int64_t s) {
    const int64_t n = st.rows(s);
    if (!n) return nullptr;
    const int64_t first = st.first_row(s);
    if (first < row0 || first + n > row0 + rows) fill(s);
    return buf.data_ptr<S>() + (first - row0) * buf.size(1);
  }

 private:
  // Steps s, s+1, ... while they fit: a contiguous range of times, so of rows.
  void fill(int64_t s) {
    int64_t lo = st.first_row(s), hi = lo + st.rows(s);
    for (int64_t e = s + 1; e < st.T; ++e) {
      const int64_t f = st.first_row(e), n = st.rows(e);
      if (std::max(hi, f + n) - std::min(lo, f) > buf.size(0)) break;
      lo = std::min(lo, f), hi = std::max(hi, f + n);
    }
    row0 = lo, rows = hi - lo;
    auto out = buf.narrow(0, 0, rows);
    const auto xs = x.narrow(0, lo, rows);
    if (bias) out.copy_(bias->unsqueeze(0).expand_as(out));
    policy_mm_out(out, xs, w_ih.t(), x.scalar_type(), bias.has_value());
  }
};

// A fresh copy of t in the accumulation type (the in-place carries of the kernels).
template <class S> inline Tensor acc_copy(const Tensor& t) {
  auto out = at::empty(t.sizes(), t.options().dtype(acc_dtype<S>()));
  out.copy_(t);
  return out;
}

// Rows of the next processed step that step s reads (at most its own), and the row pointer of
// a per-row buffer at step s (null for a step outside the sequence).
inline int next_rows(const Steps& st, int64_t s) {
  return int(std::min(st.rows(s + 1), st.rows(s)));
}
template <class S> inline S* step_ptr(const Tensor& t, const Steps& st, int64_t s) {
  return st.rows(s) ? t.data_ptr<S>() + st.first_row(s) * t.size(1) : nullptr;
}

// ---------------------------------------------------------------------------------- LSTM
template <class S>
T5 lstm_forward(const Tensor& x_, const Tensor& h0_, const Tensor& c0_, const Tensor& w_ih_,
                const Tensor& w_hh_, const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                const OptTensor& batch_sizes, const OptTensor& w_hr_, bool save) {
  FRNN_DEVICE_GUARD(x_);
  const Steps st = make_steps(x_, batch_sizes, reverse);
  const auto x = flat(x_, st), h0 = h0_.contiguous(), c0 = c0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  const Tensor w_hr = w_hr_ ? w_hr_->contiguous() : Tensor();
  const bool proj = w_hr.defined();
  const int64_t B = st.B, I = x.size(1), P = w_hh.size(1), H = w_hh.size(0) / 4;
  check_int_range("lstm_forward", B, 4, H, I, P);
  auto y = at::empty({st.N, P}, x.options());
  // Without save: empty, and the kernels store neither (null pointers).
  auto gates = save ? at::empty({st.N, 4 * H}, x.options()) : at::empty({0}, x.options());
  auto cells = save ? at::empty({st.N, H}, x.options()) : at::empty({0}, x.options());
  auto saved = [&](const Tensor& t) { return save ? st.shaped(t) : t; };
  if (st.N == 0) return {st.shaped(y), h0.clone(), c0.clone(), saved(gates), saved(cells)};

  const OptTensor bias = b_ih ? OptTensor(*b_ih + *b_hh) : OptTensor();
  XProj xproj(st, x, w_ih, bias, save);  // [N, 4H] or a chunk of it
  auto c = acc_copy<S>(c0);
  auto m = proj ? at::empty({B, H}, x.options()) : Tensor();  // o * tanh(c) before W_hr
  FRNN_POISON(y);
  FRNN_POISON(gates);
  FRNN_POISON(cells);

  kern::LstmForwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.h0 = h0.data_ptr<S>();
  p.c = static_cast<acc_of<S>*>(c.data_ptr());
  p.H = int(H);
  p.P = int(P);
  const auto L = pick_step<S, false>([&](auto P) {
    using Cfg = kern::LstmForwardCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::lstm_forward_step_kernel<Cfg>);
  });
  for (int64_t s = 0; s < st.T; ++s) {
    const int64_t n = st.rows(s);
    p.B = int(n);
    p.n_prev = int(st.rows(s - 1));
    p.h_prev = step_ptr<S>(y, st, s - 1);
    p.xproj = xproj.for_step<S>(s);
    p.h_out = proj ? m.data_ptr<S>() : step_ptr<S>(y, st, s);
    p.c_out = save ? step_ptr<S>(cells, st, s) : nullptr;
    p.gates_out = save ? step_ptr<S>(gates, st, s) : nullptr;
    FRNN_LAUNCH(L.kernel, L.grid(n, H), L.threads, L.smem,
                FRNN_CURRENT_STREAM, p);
    if (proj) {  // h_t = m W_hr^T, straight into y (ATen GEMM on the current stream)
      auto yt = y.narrow(0, st.first_row(s), n);
      policy_mm_out(yt, m.narrow(0, 0, n), w_hr.t(), x.scalar_type());
    }
  }
  return {st.shaped(y), final_rows(y, st), c.to(x.scalar_type(), false, true), saved(gates),
          saved(cells)};
}

template <class S>
T7 lstm_backward(const Tensor& dy_, const Tensor& dh_n_, const Tensor& dc_n_, const Tensor& x_,
                 const Tensor& h0_, const Tensor& c0_, const Tensor& w_ih_, const Tensor& w_hh_,
                 const Tensor& y_, const Tensor& gates_, const Tensor& cells_, bool reverse,
                 const OptTensor& batch_sizes, const OptTensor& w_hr_) {
  FRNN_DEVICE_GUARD(x_);
  const Steps st = make_steps(x_, batch_sizes, reverse);
  const auto dy = flat(dy_, st), dh_n = dh_n_.contiguous(), dc_n = dc_n_.contiguous();
  const auto x = flat(x_, st), h0 = h0_.contiguous(), c0 = c0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous(), y = flat(y_, st);
  const auto gates = flat(gates_, st), cells = flat(cells_, st);
  const Tensor w_hr = w_hr_ ? w_hr_->contiguous() : Tensor();
  const bool proj = w_hr.defined();
  const int64_t B = st.B, I = x.size(1), P = w_hh.size(1), H = w_hh.size(0) / 4, G = 4 * H;
  check_int_range("lstm_backward", B, 4, H, I, P);
  const auto no_proj = at::empty({0}, x.options());
  const auto dtype = x.scalar_type(), acc = acc_dtype<S>();
  if (st.N == 0)
    return {at::zeros_like(x_), dh_n.clone(), dc_n.clone(), at::zeros_like(w_ih),
            at::zeros_like(w_hh), at::zeros({G}, x.options()),
            proj ? at::zeros_like(w_hr) : no_proj};

  // The gate gradients da stay in the accumulation type, as in the persistent kernels: each step
  // feeds them back through W_hh, and rounding them to bf16 every step drifts the gradients. The
  // GEMMs after the loop are not fed back: they run in the GEMM policy (cuda/hoisted_gemm.h), which
  // takes the half types' da rounded once, as cuDNN does. The projection's per-step products
  // (part of the recurrence) take the recurrence's precision on weights widened once.
  auto da = at::empty({st.N, G}, x.options().dtype(acc));
  auto dc = acc_copy<S>(dc_n);
  const Tensor w_hh_a = proj ? w_hh.to(acc) : Tensor();
  const Tensor w_hr_a = proj ? w_hr.to(acc) : Tensor();
  // With a projection: dht [N,P] the total gradient of every h_t (kept for dW_hr), dm [B,H] the
  // gradient of m = o * tanh(c) (scratch of one step), both in the accumulation type but dm,
  // which the kernel reads as its dy.
  auto dht = proj ? at::empty({st.N, P}, x.options().dtype(acc)) : Tensor();
  auto dm = proj ? at::empty({B, H}, x.options()) : Tensor();
  // Widened once here (no copy for fp32/fp64), so the time loop allocates nothing.
  const Tensor dy_a = proj ? dy.to(acc) : Tensor(), dh_n_a = proj ? dh_n.to(acc) : Tensor();
  auto dm_a = proj && dtype != acc ? at::empty({B, H}, x.options().dtype(acc)) : Tensor();
  FRNN_POISON(da);

  kern::LstmBackwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.c0 = c0.data_ptr<S>();
  p.dc = static_cast<acc_of<S>*>(dc.data_ptr());
  p.H = int(H);
  const auto L = pick_step<S, true>([&](auto P) {
    using Cfg = kern::LstmBackwardCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::lstm_backward_step_kernel<Cfg>);
  });
  for (int64_t s = st.T - 1; s >= 0; --s) {
    const int64_t n = st.rows(s), nn = next_rows(st, s), off = st.first_row(s);
    p.B = int(n);
    if (proj) {  // dh_t = dy_t + (da_{next} W_hh or dh_n at a row's last step); dm = dh_t W_hr
      // Both products are part of the recurrence: its precision (cuda/hoisted_gemm.h), as the
      // step kernels', on fp32 (or fp64) operands widened before the loop.
      auto dh_t = dht.narrow(0, off, n), dy_t = dy_a.narrow(0, off, n);
      if (nn > 0) {
        auto out = dh_t.narrow(0, 0, nn);
        out.copy_(dy_t.narrow(0, 0, nn));
        policy_mm_out(out, da.narrow(0, st.first_row(s + 1), nn), w_hh_a, dtype,
                      /*accumulate=*/true, /*recurrent=*/true);
      }
      if (nn < n) {
        auto out = dh_t.narrow(0, nn, n - nn);
        at::add_out(out, dy_t.narrow(0, nn, n - nn), dh_n_a.narrow(0, nn, n - nn));
      }
      auto dm_t = dm.narrow(0, 0, n);
      auto dm_at = dtype == acc ? dm_t : dm_a.narrow(0, 0, n);
      policy_mm_out(dm_at, dh_t, w_hr_a, dtype, /*accumulate=*/false, /*recurrent=*/true);
      if (dtype != acc) dm_t.copy_(dm_at);
      p.dy = dm.data_ptr<S>();
      p.dh_n = nullptr;
      p.da_next = nullptr;
      p.n_next = 0;
    } else {
      p.dy = step_ptr<S>(dy, st, s);
      p.dh_n = dh_n.data_ptr<S>();
      p.da_next = step_ptr<acc_of<S>>(da, st, s + 1);
      p.n_next = int(nn);
    }
    p.gates = step_ptr<S>(gates, st, s);
    p.c_t = step_ptr<S>(cells, st, s);
    p.c_prev = step_ptr<S>(cells, st, s - 1);
    p.n_prev = int(st.rows(s - 1));
    p.da_out = step_ptr<acc_of<S>>(da, st, s);
    FRNN_LAUNCH(L.kernel, L.grid(n, H), L.threads, L.smem,
                FRNN_CURRENT_STREAM, p);
  }
  // The GEMMs over all rows, in the GEMM policy (dh0: the recurrence's; cuda/hoisted_gemm.h).
  auto dh0 = recurrent_mm(initial_rows(da, st), w_hh, dtype, dtype);
  auto dx = st.shaped(policy_mm(da, w_ih, dtype, dtype));
  auto dw_ih = policy_mm(da.t(), x, dtype, dtype);
  auto dw_hh = policy_mm(da.t(), previous_rows(y, h0, st), dtype, dtype);
  // dW_hr = sum over rows of dh_t^T m_t, m = o * tanh(c) recomputed from the saved tensors.
  auto dw_hr = proj ? policy_mm(dht.t(), gates.narrow(1, 3 * H, H) * at::tanh(cells), dtype, dtype)
                    : no_proj;
  return {dx, dh0, dc.to(dtype, false, true), dw_ih, dw_hh, da.sum(0).to(dtype), dw_hr};
}

// ---------------------------------------------------------------------------------- GRU
template <class S>
T4 gru_forward(const Tensor& x_, const Tensor& h0_, const Tensor& w_ih_, const Tensor& w_hh_,
               const OptTensor& b_ih_, const OptTensor& b_hh_, bool reverse,
               const OptTensor& batch_sizes, bool save) {
  FRNN_DEVICE_GUARD(x_);
  const Steps st = make_steps(x_, batch_sizes, reverse);
  const auto x = flat(x_, st), h0 = h0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  const OptTensor b_ih = b_ih_ ? OptTensor(b_ih_->contiguous()) : OptTensor();
  const OptTensor b_hh = b_hh_ ? OptTensor(b_hh_->contiguous()) : OptTensor();
  const int64_t B = st.B, I = x.size(1), H = w_hh.size(1);
  check_int_range("gru_forward", B, 3, H, I, H);
  auto y = at::empty({st.N, H}, x.options());
  // Without save: empty, and the kernels store neither (null pointers).
  auto gates = save ? at::empty({st.N, 3 * H}, x.options()) : at::empty({0}, x.options());
  auto ghn = save ? at::empty({st.N, H}, x.options()) : at::empty({0}, x.options());
  auto saved = [&](const Tensor& t) { return save ? st.shaped(t) : t; };
  if (st.N == 0) return {st.shaped(y), h0.clone(), saved(gates), saved(ghn)};

  XProj xproj(st, x, w_ih, b_ih, save);  // [N, 3H] or a chunk of it, b_ih only
  FRNN_POISON(y);
  FRNN_POISON(gates);
  FRNN_POISON(ghn);

  kern::GruForwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.b_hh = b_hh ? b_hh->data_ptr<S>() : nullptr;
  p.h0 = h0.data_ptr<S>();
  p.H = int(H);
  const auto L = pick_step<S, false>([&](auto P) {
    using Cfg = kern::GruForwardCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::gru_forward_step_kernel<Cfg>);
  });
  for (int64_t s = 0; s < st.T; ++s) {
    const int64_t n = st.rows(s);
    p.B = int(n);
    p.n_prev = int(st.rows(s - 1));
    p.h_prev = step_ptr<S>(y, st, s - 1);
    p.xproj = xproj.for_step<S>(s);
    p.h_out = step_ptr<S>(y, st, s);
    p.gates_out = save ? step_ptr<S>(gates, st, s) : nullptr;
    p.ghn_out = save ? step_ptr<S>(ghn, st, s) : nullptr;
    FRNN_LAUNCH(L.kernel, L.grid(n, H), L.threads, L.smem,
                FRNN_CURRENT_STREAM, p);
  }
  return {st.shaped(y), final_rows(y, st), saved(gates), saved(ghn)};
}

template <class S>
T6 gru_backward(const Tensor& dy_, const Tensor& dh_n_, const Tensor& x_, const Tensor& h0_,
                const Tensor& w_ih_, const Tensor& w_hh_, const Tensor& y_, const Tensor& gates_,
                const Tensor& ghn_, bool reverse, const OptTensor& batch_sizes) {
  FRNN_DEVICE_GUARD(x_);
  const Steps st = make_steps(x_, batch_sizes, reverse);
  const auto dy = flat(dy_, st), dh_n = dh_n_.contiguous();
  const auto x = flat(x_, st), h0 = h0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous(), y = flat(y_, st);
  const auto gates = flat(gates_, st), ghn = flat(ghn_, st);
  const int64_t B = st.B, I = x.size(1), H = w_hh.size(1), G = 3 * H;
  check_int_range("gru_backward", B, 3, H, I, H);
  if (st.N == 0)
    return {at::zeros_like(x_),   dh_n.clone(),          at::zeros_like(w_ih),
            at::zeros_like(w_hh), at::zeros({G}, x.options()), at::zeros({G}, x.options())};

  // Gate gradients in the accumulation type (see lstm_backward).
  const auto dtype = x.scalar_type(), acc = acc_dtype<S>();
  auto dax = at::empty({st.N, G}, x.options().dtype(acc));
  auto dah = at::empty({st.N, G}, x.options().dtype(acc));
  auto dh_direct = acc_copy<S>(dh_n);
  FRNN_POISON(dax);
  FRNN_POISON(dah);

  kern::GruBackwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.h0 = h0.data_ptr<S>();
  p.dh_direct = static_cast<acc_of<S>*>(dh_direct.data_ptr());
  p.H = int(H);
  const auto L = pick_step<S, true>([&](auto P) {
    using Cfg = kern::GruBackwardCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::gru_backward_step_kernel<Cfg>);
  });
  for (int64_t s = st.T - 1; s >= 0; --s) {
    const int64_t n = st.rows(s);
    p.B = int(n);
    p.n_next = next_rows(st, s);
    p.n_prev = int(st.rows(s - 1));
    p.dy = step_ptr<S>(dy, st, s);
    p.dah_next = step_ptr<acc_of<S>>(dah, st, s + 1);
    p.gates = step_ptr<S>(gates, st, s);
    p.ghn = step_ptr<S>(ghn, st, s);
    p.h_prev = step_ptr<S>(y, st, s - 1);
    p.dax_out = step_ptr<acc_of<S>>(dax, st, s);
    p.dah_out = step_ptr<acc_of<S>>(dah, st, s);
    FRNN_LAUNCH(L.kernel, L.grid(n, H), L.threads, L.smem,
                FRNN_CURRENT_STREAM, p);
  }
  // dh0 = dah(each row's first step) W_hh + the direct term z * dh, added in the accumulation type.
  // The GEMMs over all rows, in the GEMM policy (dh0: the recurrence's; cuda/hoisted_gemm.h).
  auto dh0 = recurrent_mm(initial_rows(dah, st), w_hh, dtype, acc).add_(dh_direct).to(dtype);
  auto dx = st.shaped(policy_mm(dax, w_ih, dtype, dtype));
  auto dw_ih = policy_mm(dax.t(), x, dtype, dtype);
  auto dw_hh = policy_mm(dah.t(), previous_rows(y, h0, st), dtype, dtype);
  return {dx, dh0, dw_ih, dw_hh, dax.sum(0).to(dtype), dah.sum(0).to(dtype)};
}

// ---------------------------------------------------------------------------------- RNN
template <class S>
T2 rnn_forward(const Tensor& x_, const Tensor& h0_, const Tensor& w_ih_, const Tensor& w_hh_,
               const OptTensor& b_ih, const OptTensor& b_hh, bool relu, bool reverse,
               const OptTensor& batch_sizes) {
  FRNN_DEVICE_GUARD(x_);
  const Steps st = make_steps(x_, batch_sizes, reverse);
  const auto x = flat(x_, st), h0 = h0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  const int64_t B = st.B, I = x.size(1), H = w_hh.size(1);
  check_int_range("rnn_forward", B, 1, H, I, H);
  auto y = at::empty({st.N, H}, x.options());
  if (st.N == 0) return {st.shaped(y), h0.clone()};

  const OptTensor bias = b_ih ? OptTensor(*b_ih + *b_hh) : OptTensor();
  const auto xproj = input_projection(x, w_ih, bias);  // [N, H]
  FRNN_POISON(y);

  kern::RnnForwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.h0 = h0.data_ptr<S>();
  p.H = int(H);
  const auto L = pick_step<S, false>([&](auto P) {
    using Cfg = kern::RnnForwardCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(relu ? &kern::rnn_forward_step_kernel<Cfg, cells::Act::Relu>
                                 : &kern::rnn_forward_step_kernel<Cfg, cells::Act::Tanh>);
  });
  for (int64_t s = 0; s < st.T; ++s) {
    const int64_t n = st.rows(s);
    p.B = int(n);
    p.n_prev = int(st.rows(s - 1));
    p.h_prev = step_ptr<S>(y, st, s - 1);
    p.xproj = step_ptr<S>(xproj, st, s);
    p.h_out = step_ptr<S>(y, st, s);
    FRNN_LAUNCH(L.kernel, L.grid(n, H), L.threads, L.smem,
                FRNN_CURRENT_STREAM, p);
  }
  return {st.shaped(y), final_rows(y, st)};
}

template <class S>
T5 rnn_backward(const Tensor& dy_, const Tensor& dh_n_, const Tensor& x_, const Tensor& h0_,
                const Tensor& w_ih_, const Tensor& w_hh_, const Tensor& y_, bool relu,
                bool reverse, const OptTensor& batch_sizes) {
  FRNN_DEVICE_GUARD(x_);
  const Steps st = make_steps(x_, batch_sizes, reverse);
  const auto dy = flat(dy_, st), dh_n = dh_n_.contiguous();
  const auto x = flat(x_, st), h0 = h0_.contiguous();
  const auto w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous(), y = flat(y_, st);
  const int64_t B = st.B, I = x.size(1), H = w_hh.size(1);
  check_int_range("rnn_backward", B, 1, H, I, H);
  if (st.N == 0)
    return {at::zeros_like(x_), dh_n.clone(), at::zeros_like(w_ih), at::zeros_like(w_hh),
            at::zeros({H}, x.options())};

  // Gate gradients in the accumulation type (see lstm_backward).
  const auto dtype = x.scalar_type(), acc = acc_dtype<S>();
  auto da = at::empty({st.N, H}, x.options().dtype(acc));
  FRNN_POISON(da);

  kern::RnnBackwardParams<S> p;
  p.w_hh = w_hh.data_ptr<S>();
  p.dh_n = dh_n.data_ptr<S>();
  p.H = int(H);
  p.relu = relu ? 1 : 0;
  const auto L = pick_step<S, true>([&](auto P) {
    using Cfg = kern::RnnBackwardCfg<S, decltype(P)::value>;
    return step_launch<Cfg>(&kern::rnn_backward_step_kernel<Cfg>);
  });
  for (int64_t s = st.T - 1; s >= 0; --s) {
    const int64_t n = st.rows(s);
    p.B = int(n);
    p.n_next = next_rows(st, s);
    p.dy = step_ptr<S>(dy, st, s);
    p.da_next = step_ptr<acc_of<S>>(da, st, s + 1);
    p.h_t = step_ptr<S>(y, st, s);
    p.da_out = step_ptr<acc_of<S>>(da, st, s);
    FRNN_LAUNCH(L.kernel, L.grid(n, H), L.threads, L.smem,
                FRNN_CURRENT_STREAM, p);
  }
  // The GEMMs over all rows, in the GEMM policy (dh0: the recurrence's; cuda/hoisted_gemm.h).
  auto dh0 = recurrent_mm(initial_rows(da, st), w_hh, dtype, dtype);
  auto dx = st.shaped(policy_mm(da, w_ih, dtype, dtype));
  auto dw_ih = policy_mm(da.t(), x, dtype, dtype);
  auto dw_hh = policy_mm(da.t(), previous_rows(y, h0, st), dtype, dtype);
  return {dx, dh0, dw_ih, dw_hh, da.sum(0).to(dtype)};
}

}  // namespace stepwise
}  // namespace FRNN_BACKEND_NS
}  // namespace fusedrnn

// The entry points of csrc/ops.h for this backend: one macro per op, expanded in exactly one
// translation unit each (csrc/cuda/<cell>_<dir>.cu and csrc/simt/ops_<cell>.cpp), so the
// instantiations of the four dtypes are spread over several compiler processes.
#define FRNN_DEFINE_STEPWISE_OP(ret, name, params, args)                                      \
  namespace fusedrnn {                                                                         \
  namespace FRNN_BACKEND_NS {                                                                  \
  ret name params {                                                                            \
    return FRNN_DTYPE_SWITCH(x.scalar_type(), #name,                                           \
                             [&] { return stepwise::name<scalar_t> args; });                   \
  }                                                                                            \
  }                                                                                            \
  }

#define FRNN_DEFINE_LSTM_FORWARD                                                               \
  FRNN_DEFINE_STEPWISE_OP(                                                                     \
      T5, lstm_forward,                                                                        \
      (const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,                \
       const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,         \
       const OptTensor& batch_sizes, const OptTensor& w_hr, bool save),                        \
      (x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, w_hr, save))

#define FRNN_DEFINE_LSTM_BACKWARD                                                              \
  FRNN_DEFINE_STEPWISE_OP(                                                                     \
      T7, lstm_backward,                                                                       \
      (const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& x,              \
       const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,             \
       const Tensor& y, const Tensor& gates, const Tensor& cells, bool reverse,                \
       const OptTensor& batch_sizes, const OptTensor& w_hr),                                   \
      (dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells, reverse, batch_sizes, w_hr))

#define FRNN_DEFINE_GRU_FORWARD                                                                \
  FRNN_DEFINE_STEPWISE_OP(                                                                     \
      T4, gru_forward,                                                                         \
      (const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,              \
       const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,                             \
       const OptTensor& batch_sizes, bool save),                                               \
      (x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, save))

#define FRNN_DEFINE_GRU_BACKWARD                                                               \
  FRNN_DEFINE_STEPWISE_OP(                                                                     \
      T6, gru_backward,                                                                        \
      (const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,                \
       const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, const Tensor& gates,           \
       const Tensor& ghn, bool reverse, const OptTensor& batch_sizes),                         \
      (dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, reverse, batch_sizes))

#define FRNN_DEFINE_RNN_FORWARD                                                                \
  FRNN_DEFINE_STEPWISE_OP(                                                                     \
      T2, rnn_forward,                                                                         \
      (const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,              \
       const OptTensor& b_ih, const OptTensor& b_hh, bool relu, bool reverse,                  \
       const OptTensor& batch_sizes),                                                          \
      (x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, batch_sizes))

#define FRNN_DEFINE_RNN_BACKWARD                                                               \
  FRNN_DEFINE_STEPWISE_OP(                                                                     \
      T5, rnn_backward,                                                                        \
      (const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,                \
       const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, bool relu, bool reverse,       \
       const OptTensor& batch_sizes),                                                          \
      (dy, dh_n, x, h0, w_ih, w_hh, y, relu, reverse, batch_sizes))
