// Validation of every op's arguments, shared by the CPU and the CUDA registrations, and the
// choice of the CUDA kernels' algorithm. Each validate_* raises a c10::Error naming the argument
// (csrc/checks.h) and returns the sizes of the call.
#pragma once

#include <string>

#include "checks.h"
#include "ops.h"

namespace fusedrnn {

inline void check_dtype(const char* op, const Tensor& x) {
  auto d = x.scalar_type();
  TORCH_CHECK(d == at::kFloat || d == at::kDouble || d == at::kHalf || d == at::kBFloat16, op,
              ": unsupported dtype ", d, " (float32, float64, float16, bfloat16)");
}

inline bool parse_relu(const std::string& nl, const char* op) {
  TORCH_CHECK(nl == "tanh" || nl == "relu", op, ": nonlinearity must be 'tanh' or 'relu', got '",
              nl, "'");
  return nl == "relu";
}

inline Sizes validate_lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                   const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                                   const OptTensor& b_hh, const OptTensor& batch_sizes,
                                   const OptTensor& w_hr) {
  auto s = check_layer_inputs("lstm_forward", 4, x, h0, &c0, w_ih, w_hh, b_ih, b_hh, batch_sizes,
                              w_hr);
  check_dtype("lstm_forward", x);
  return s;
}

inline Sizes validate_lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n,
                                    const Tensor& x, const Tensor& h0, const Tensor& c0,
                                    const Tensor& w_ih, const Tensor& w_hh, const Tensor& y,
                                    const Tensor& gates, const Tensor& cells,
                                    const OptTensor& batch_sizes, const OptTensor& w_hr) {
  const char* op = "lstm_backward";
  auto s = check_layer_inputs(op, 4, x, h0, &c0, w_ih, w_hh, {}, {}, batch_sizes, w_hr);
  check_dtype(op, x);
  check_grad(op, dy, s.rows(s.P), x, "dy");
  check_grad(op, dh_n, {s.B, s.P}, x, "dh_n");
  check_grad(op, dc_n, {s.B, s.H}, x, "dc_n");
  check_grad(op, y, s.rows(s.P), x, "y");
  check_grad(op, gates, s.rows(4 * s.H), x, "gates");
  check_grad(op, cells, s.rows(s.H), x, "cells");
  return s;
}

// op: "gru_forward"/"gru_backward", or the reset-before GRU's "gru_rb_forward"/"gru_rb_backward",
// whose saved fourth tensor (named `saved`: ghn, or rh = r * h) has the same shape.
inline Sizes validate_gru_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                  const Tensor& w_hh, const OptTensor& b_ih,
                                  const OptTensor& b_hh, const OptTensor& batch_sizes,
                                  const char* op = "gru_forward") {
  auto s = check_layer_inputs(op, 3, x, h0, nullptr, w_ih, w_hh, b_ih, b_hh, batch_sizes);
  check_dtype(op, x);
  return s;
}

inline Sizes validate_gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x,
                                   const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                   const Tensor& y, const Tensor& gates, const Tensor& saved,
                                   const OptTensor& batch_sizes, const char* op = "gru_backward",
                                   const char* saved_name = "ghn") {
  auto s = check_layer_inputs(op, 3, x, h0, nullptr, w_ih, w_hh, {}, {}, batch_sizes);
  check_dtype(op, x);
  check_grad(op, dy, s.rows(s.H), x, "dy");
  check_grad(op, dh_n, {s.B, s.H}, x, "dh_n");
  check_grad(op, y, s.rows(s.H), x, "y");
  check_grad(op, gates, s.rows(3 * s.H), x, "gates");
  check_grad(op, saved, s.rows(s.H), x, saved_name);
  return s;
}

// The MUT ops (csrc/cpu/mut.h): xp [T,B,3H] or packed [N,3H], w_hh [2H,H] (variant 1) or
// [3H,H]; the shape rules of x, h0 and batch_sizes are the other ops' (xp in x's place).
inline Sizes validate_mut_forward(const Tensor& xp, const Tensor& h0, const Tensor& w_hh,
                                  int64_t variant, const OptTensor& batch_sizes,
                                  const char* op = "mut_forward") {
  TORCH_CHECK(variant >= 1 && variant <= 3, op, ": variant must be 1, 2 or 3 (MUT1-3), got ",
              variant);
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(1) >= 1, op, ": w_hh must be 2-D [", variant == 1 ? 2 : 3,
              "*H, H], got ", w_hh.sizes());
  const int64_t H = w_hh.size(1), G = variant == 1 ? 2 : 3;
  TORCH_CHECK(w_hh.size(0) == G * H, op, ": w_hh of MUT", variant, " must be [", G * H, ", ", H,
              "], got ", w_hh.sizes());
  TORCH_CHECK(xp.dim() >= 1 && xp.size(-1) == 3 * H, op, ": xp must have 3*H = ", 3 * H,
              " features (the r, z, n input sides), got ", xp.sizes());
  // x's, h0's and batch_sizes' rules, with xp as x and weights of the right shapes (1 element,
  // broadcast: nothing is allocated).
  const auto one = at::empty({1}, xp.options());
  auto s = check_layer_inputs(op, 1, xp, h0, nullptr, one.expand({H, 3 * H}),
                              one.expand({H, H}), {}, {}, batch_sizes);
  TORCH_CHECK(w_hh.scalar_type() == xp.scalar_type() && w_hh.device() == xp.device(), op,
              ": w_hh has dtype ", w_hh.scalar_type(), " on ", w_hh.device(), " but xp has ",
              xp.scalar_type(), " on ", xp.device());
  check_dtype(op, xp);
  return s;
}

inline Sizes validate_mut_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& h0,
                                   const Tensor& w_hh, const Tensor& y, const Tensor& gates,
                                   const Tensor& rh, int64_t variant,
                                   const OptTensor& batch_sizes) {
  const char* op = "mut_backward";
  // The forward's xp had the gates' shape.
  auto s = validate_mut_forward(gates, h0, w_hh, variant, batch_sizes, op);
  check_grad(op, dy, s.rows(s.H), gates, "dy");
  check_grad(op, dh_n, {s.B, s.H}, gates, "dh_n");
  check_grad(op, y, s.rows(s.H), gates, "y");
  check_grad(op, rh, s.rows(s.H), gates, "rh");
  return s;
}

// The layer-normalised LSTM's ops (csrc/layer_norm_ops.h): xp [T,B,4H] or packed [N,4H] in x's
// place; gh and stats in the accumulation type (fp64 for fp64, else fp32).
inline Sizes validate_ln_lstm_forward(const Tensor& xp, const Tensor& h0, const Tensor& c0,
                                      const Tensor& w_hh, const Tensor& g_hh, const Tensor& g_c,
                                      const OptTensor& b_c, const OptTensor& batch_sizes,
                                      const char* op = "ln_lstm_forward") {
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(1) >= 1 && w_hh.size(0) == 4 * w_hh.size(1), op,
              ": w_hh must be [4*H, H], got ", w_hh.sizes());
  const int64_t H = w_hh.size(1);
  TORCH_CHECK(xp.dim() >= 1 && xp.size(-1) == 4 * H, op, ": xp must have 4*H = ", 4 * H,
              " features (the i, f, g, o input sides), got ", xp.sizes());
  const auto one = at::empty({1}, xp.options());
  auto s = check_layer_inputs(op, 1, xp, h0, &c0, one.expand({H, 4 * H}), one.expand({H, H}),
                              {}, {}, batch_sizes);
  auto param = [&](const Tensor& t, int64_t n, const char* name) {
    TORCH_CHECK(t.dim() == 1 && t.size(0) == n, op, ": ", name, " must be [", n, "], got ",
                t.sizes());
    TORCH_CHECK(t.scalar_type() == xp.scalar_type() && t.device() == xp.device(), op, ": ",
                name, " has dtype ", t.scalar_type(), " on ", t.device(), " but xp has ",
                xp.scalar_type(), " on ", xp.device());
  };
  TORCH_CHECK(w_hh.scalar_type() == xp.scalar_type() && w_hh.device() == xp.device(), op,
              ": w_hh has dtype ", w_hh.scalar_type(), " on ", w_hh.device(), " but xp has ",
              xp.scalar_type(), " on ", xp.device());
  param(g_hh, 4 * H, "g_hh");
  param(g_c, H, "g_c");
  if (b_c) param(*b_c, H, "b_c");
  check_dtype(op, xp);
  return s;
}

inline Sizes validate_ln_lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n,
                                       const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
                                       const Tensor& g_hh, const Tensor& g_c,
                                       const OptTensor& b_c, const Tensor& y,
                                       const Tensor& gates, const Tensor& gh,
                                       const Tensor& cells, const Tensor& stats,
                                       const OptTensor& batch_sizes) {
  const char* op = "ln_lstm_backward";
  auto s = validate_ln_lstm_forward(gates, h0, c0, w_hh, g_hh, g_c, b_c, batch_sizes, op);
  check_grad(op, dy, s.rows(s.H), gates, "dy");
  check_grad(op, dh_n, {s.B, s.H}, gates, "dh_n");
  check_grad(op, dc_n, {s.B, s.H}, gates, "dc_n");
  check_grad(op, y, s.rows(s.H), gates, "y");
  check_grad(op, cells, s.rows(s.H), gates, "cells");
  const auto acc = gates.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto acc_like = at::empty({0}, gates.options().dtype(acc));
  check_grad(op, gh, s.rows(4 * s.H), acc_like, "gh");
  check_grad(op, stats, s.rows(4), acc_like, "stats");
  return s;
}

// The layer-normalised GRU's ops (csrc/layer_norm_ops.h): as the LSTM's, G = 3, no cell.
inline Sizes validate_ln_gru_forward(const Tensor& xp, const Tensor& h0, const Tensor& w_hh,
                                     const Tensor& g_hh, const OptTensor& b_hh,
                                     const OptTensor& batch_sizes,
                                     const char* op = "ln_gru_forward") {
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(1) >= 1 && w_hh.size(0) == 3 * w_hh.size(1), op,
              ": w_hh must be [3*H, H], got ", w_hh.sizes());
  const int64_t H = w_hh.size(1);
  TORCH_CHECK(xp.dim() >= 1 && xp.size(-1) == 3 * H, op, ": xp must have 3*H = ", 3 * H,
              " features (the r, z, n input sides), got ", xp.sizes());
  const auto one = at::empty({1}, xp.options());
  auto s = check_layer_inputs(op, 1, xp, h0, nullptr, one.expand({H, 3 * H}),
                              one.expand({H, H}), {}, {}, batch_sizes);
  TORCH_CHECK(w_hh.scalar_type() == xp.scalar_type() && w_hh.device() == xp.device(), op,
              ": w_hh has dtype ", w_hh.scalar_type(), " on ", w_hh.device(), " but xp has ",
              xp.scalar_type(), " on ", xp.device());
  for (const Tensor* t : {&g_hh, b_hh ? &*b_hh : nullptr}) {
    if (!t) continue;
    const char* name = t == &g_hh ? "g_hh" : "b_hh";
    TORCH_CHECK(t->dim() == 1 && t->size(0) == 3 * H, op, ": ", name, " must be [", 3 * H,
                "], got ", t->sizes());
    TORCH_CHECK(t->scalar_type() == xp.scalar_type() && t->device() == xp.device(), op, ": ",
                name, " has dtype ", t->scalar_type(), " on ", t->device(), " but xp has ",
                xp.scalar_type(), " on ", xp.device());
  }
  check_dtype(op, xp);
  return s;
}

inline Sizes validate_ln_gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& h0,
                                      const Tensor& w_hh, const Tensor& g_hh,
                                      const OptTensor& b_hh, const Tensor& y,
                                      const Tensor& gates, const Tensor& gh,
                                      const Tensor& stats, const OptTensor& batch_sizes) {
  const char* op = "ln_gru_backward";
  auto s = validate_ln_gru_forward(gates, h0, w_hh, g_hh, b_hh, batch_sizes, op);
  check_grad(op, dy, s.rows(s.H), gates, "dy");
  check_grad(op, dh_n, {s.B, s.H}, gates, "dh_n");
  check_grad(op, y, s.rows(s.H), gates, "y");
  const auto acc = gates.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto acc_like = at::empty({0}, gates.options().dtype(acc));
  check_grad(op, gh, s.rows(3 * s.H), acc_like, "gh");
  check_grad(op, stats, s.rows(2), acc_like, "stats");
  return s;
}

inline Sizes validate_rnn_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                  const Tensor& w_hh, const OptTensor& b_ih,
                                  const OptTensor& b_hh, const OptTensor& batch_sizes) {
  auto s = check_layer_inputs("rnn_forward", 1, x, h0, nullptr, w_ih, w_hh, b_ih, b_hh,
                              batch_sizes);
  check_dtype("rnn_forward", x);
  return s;
}

inline Sizes validate_rnn_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x,
                                   const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                   const Tensor& y, const OptTensor& batch_sizes) {
  const char* op = "rnn_backward";
  auto s = check_layer_inputs(op, 1, x, h0, nullptr, w_ih, w_hh, {}, {}, batch_sizes);
  check_dtype(op, x);
  check_grad(op, dy, s.rows(s.H), x, "dy");
  check_grad(op, dh_n, {s.B, s.H}, x, "dh_n");
  check_grad(op, y, s.rows(s.H), x, "y");
  return s;
}

// The CUDA kernels' algorithm (fusedrnn.algorithm in Python).
enum class Algorithm { Auto, Stepwise, Persistent };

inline Algorithm parse_algorithm(const std::string& s) {
  if (s == "auto") return Algorithm::Auto;
  if (s == "stepwise") return Algorithm::Stepwise;
  if (s == "persistent") return Algorithm::Persistent;
  TORCH_CHECK(false, "fusedrnn: unknown algorithm '", s,
              "' (expected auto, stepwise or persistent)");
}

// Largest batch for which "auto" picks the persistent kernels, forward and backward, from the
// models of benchmarks/perf_model.py (sm_90; the stepwise kernels against the persistent ones
// with the cluster forward where the plan takes it; LSTM and GRU, fp32 as TF32 and bf16,
// H = 128..1024): a stepwise step pays a launch and L2 round trips at any batch, a persistent
// one a barrier, but its blocks compute every batch row of their slice, so it grows with B.
// The persistent forward is predicted no slower up to B = 48 at every such size (1.1-4.8x), the
// backward up to B = 24 (0.96-5.6x); tests/test_persistent.py checks these against the models.
// Measured on an H200 (2026-12-04): training at B <= 16 ran 1.2-1.7x faster persistent, at
// B = 64 0.6x, so these stay; one direction's inference forward follows the measurement instead
// (auto_measured.h), since the model was 3-6x optimistic about the persistent step.
constexpr int64_t kPersistentMaxBatchForward = 48, kPersistentMaxBatchBackward = 24;

// Whether to run the persistent kernels. `fits`: W_hh fits on chip for this call (the sizing
// rule of csrc/cuda/persistent.h; packed input is sized by its largest step, B). The persistent
// kernels take dense and packed input but not the LSTM projection (each step would need a second
// product, m W_hr^T, and a second grid-wide exchange): "auto" then runs stepwise, and an explicit
// "persistent" raises naming w_hr. Otherwise "persistent" is honoured even when W_hh does not
// fit, so that the kernels raise their own error naming the limit. Under the SIMT backend "auto"
// means stepwise, so that a test's choice of kernels does not depend on a heuristic.
inline bool use_persistent(const char* op, Algorithm a, bool fits, int64_t B, bool simt,
                           bool backward, const OptTensor& w_hr = {}) {
  if (a == Algorithm::Persistent) {
    TORCH_CHECK(!w_hr, op, ": algorithm 'persistent' does not take the LSTM projection (w_hr); "
                "use algorithm 'stepwise' or 'auto'");
    return true;
  }
  if (a == Algorithm::Stepwise || simt || w_hr) return false;
  return fits && B <= (backward ? kPersistentMaxBatchBackward : kPersistentMaxBatchForward);
}

}  // namespace fusedrnn
