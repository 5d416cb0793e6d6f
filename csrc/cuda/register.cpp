// CUDA dispatch of the fusedrnn ops: validates the arguments (csrc/validate.h), then runs the
// CUDA kernels (fusedrnn::cuda): stepwise, or persistent by the algorithm argument ("auto" picks
// persistent when W_hh fits on chip and the batch is small: forward and backward each by their
// own bound, see use_persistent). Backends "auto"
// and "cuda" are accepted; "cpu" and "simt" run on CPU tensors only. Compiled in every build;
// registers nothing unless built with CUDA (FUSEDRNN_WITH_CUDA).
#ifdef FUSEDRNN_WITH_CUDA

#include "bidir_ops.h"
#include "stack_ops.h"
#include "cuda/persistent.h"
#include "auto_measured.h"
#include "layer_norm_ops.h"
#include "reset_before_ops.h"
#include "validate.h"

namespace fusedrnn {
namespace {

void check_cuda(const std::string& backend, const char* op) {
  const auto b = parse_backend(backend);
  TORCH_CHECK(b == Backend::Auto || b == Backend::Cuda, op, ": backend '", backend,
              "' runs on CPU tensors only, got CUDA tensors (move them with .cpu() or use "
              "backend 'auto' or 'cuda')");
}

bool persistent(const char* op, const std::string& algorithm, RnnKind kind, bool backward,
                const Sizes& s, const Tensor& x, const OptTensor& w_hr = {}) {
  const auto a = parse_algorithm(algorithm);
  const bool fits =
      a == Algorithm::Auto && !w_hr && cuda::persistent_supported(kind, s.B, s.H, x.scalar_type());
  return use_persistent(op, a, fits, s.B, /*simt=*/false, backward, w_hr);
}

// A single direction's forward: as persistent() but, under "auto" without save (inference),
// the rule an H200 measured (auto_measured.h).
bool persistent_forward(const char* op, const std::string& algorithm, RnnKind kind,
                        const Sizes& s, const Tensor& x, bool save, const OptTensor& w_hr = {}) {
  if (!persistent(op, algorithm, kind, false, s, x, w_hr)) return false;
  if (save || parse_algorithm(algorithm) != Algorithm::Auto) return true;
  const auto t = x.scalar_type();
  return persistent_inference_measured(kind, s.B, s.H, t == at::kHalf || t == at::kBFloat16);
}

T5 lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                std::string backend, const OptTensor& batch_sizes, const OptTensor& w_hr,
                std::string algorithm, bool save) {
  auto s = validate_lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_sizes, w_hr);
  check_cuda(backend, "lstm_forward");
  if (persistent_forward("lstm_forward", algorithm, RnnKind::Lstm, s, x, save, w_hr))
    return cuda::lstm_forward_persistent(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse,
                                         batch_sizes, save);
  return cuda::lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, w_hr,
                            save);
}

T7 lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& x,
                 const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                 const Tensor& y, const Tensor& gates, const Tensor& cells, bool reverse,
                 std::string backend, const OptTensor& batch_sizes, const OptTensor& w_hr,
                 std::string algorithm) {
  auto s = validate_lstm_backward(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells,
                                  batch_sizes, w_hr);
  check_cuda(backend, "lstm_backward");
  if (persistent("lstm_backward", algorithm, RnnKind::Lstm, true, s, x, w_hr)) {
    auto [dx, dh0, dc0, dw_ih, dw_hh, db] = cuda::lstm_backward_persistent(
        dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells, reverse, batch_sizes);
    return {dx, dh0, dc0, dw_ih, dw_hh, db, at::empty({0}, x.options())};  // no projection
  }
  return cuda::lstm_backward(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells, reverse,
                             batch_sizes, w_hr);
}

T4 gru_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
               const OptTensor& b_ih, const OptTensor& b_hh, bool reverse, std::string backend,
               const OptTensor& batch_sizes, std::string algorithm, bool save) {
  auto s = validate_gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes);
  check_cuda(backend, "gru_forward");
  if (persistent_forward("gru_forward", algorithm, RnnKind::Gru, s, x, save))
    return cuda::gru_forward_persistent(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes,
                                        save);
  return cuda::gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, save);
}

T6 gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, const Tensor& gates,
                const Tensor& ghn, bool reverse, std::string backend,
                const OptTensor& batch_sizes, std::string algorithm) {
  auto s = validate_gru_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, batch_sizes);
  check_cuda(backend, "gru_backward");
  if (persistent("gru_backward", algorithm, RnnKind::Gru, true, s, x))
    return cuda::gru_backward_persistent(dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, reverse,
                                         batch_sizes);
  return cuda::gru_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, reverse, batch_sizes);
}

T4 gru_rb_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                  const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                  std::string backend, const OptTensor& batch_sizes, bool save) {
  validate_gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, "gru_rb_forward");
  check_cuda(backend, "gru_rb_forward");
  return cuda::gru_rb_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, save);
}

T6 gru_rb_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                   const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, const Tensor& gates,
                   const Tensor& rh, bool reverse, std::string backend,
                   const OptTensor& batch_sizes) {
  validate_gru_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, rh, batch_sizes,
                        "gru_rb_backward", "rh");
  check_cuda(backend, "gru_rb_backward");
  return cuda::gru_rb_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, rh, reverse,
                               batch_sizes);
}

T4 mut_forward(const Tensor& xp, const Tensor& h0, const Tensor& w_hh, int64_t variant,
               bool reverse, std::string backend, const OptTensor& batch_sizes, bool save) {
  validate_mut_forward(xp, h0, w_hh, variant, batch_sizes);
  check_cuda(backend, "mut_forward");
  return cuda::mut_forward(xp, h0, w_hh, variant, reverse, batch_sizes, save);
}

T3 mut_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& h0, const Tensor& w_hh,
                const Tensor& y, const Tensor& gates, const Tensor& rh, int64_t variant,
                bool reverse, std::string backend, const OptTensor& batch_sizes) {
  validate_mut_backward(dy, dh_n, h0, w_hh, y, gates, rh, variant, batch_sizes);
  check_cuda(backend, "mut_backward");
  return cuda::mut_backward(dy, dh_n, h0, w_hh, y, gates, rh, variant, reverse, batch_sizes);
}

T7 ln_lstm_forward(const Tensor& xp, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
                   const Tensor& g_hh, const Tensor& g_c, const OptTensor& b_c, bool reverse,
                   std::string backend, const OptTensor& batch_sizes, bool save) {
  validate_ln_lstm_forward(xp, h0, c0, w_hh, g_hh, g_c, b_c, batch_sizes);
  check_cuda(backend, "ln_lstm_forward");
  return cuda::ln_lstm_forward(xp, h0, c0, w_hh, g_hh, g_c, b_c, reverse, batch_sizes, save);
}

T7 ln_lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& h0,
                    const Tensor& c0, const Tensor& w_hh, const Tensor& g_hh, const Tensor& g_c,
                    const OptTensor& b_c, const Tensor& y, const Tensor& gates, const Tensor& gh,
                    const Tensor& cells, const Tensor& stats, bool reverse, std::string backend,
                    const OptTensor& batch_sizes) {
  validate_ln_lstm_backward(dy, dh_n, dc_n, h0, c0, w_hh, g_hh, g_c, b_c, y, gates, gh, cells,
                            stats, batch_sizes);
  check_cuda(backend, "ln_lstm_backward");
  return cuda::ln_lstm_backward(dy, dh_n, dc_n, h0, c0, w_hh, g_hh, g_c, b_c, y, gates, gh,
                                cells, stats, reverse, batch_sizes);
}

T5 ln_gru_forward(const Tensor& xp, const Tensor& h0, const Tensor& w_hh, const Tensor& g_hh,
                  const OptTensor& b_hh, bool reverse, std::string backend,
                  const OptTensor& batch_sizes, bool save) {
  validate_ln_gru_forward(xp, h0, w_hh, g_hh, b_hh, batch_sizes);
  check_cuda(backend, "ln_gru_forward");
  return cuda::ln_gru_forward(xp, h0, w_hh, g_hh, b_hh, reverse, batch_sizes, save);
}

T5 ln_gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& h0, const Tensor& w_hh,
                   const Tensor& g_hh, const OptTensor& b_hh, const Tensor& y,
                   const Tensor& gates, const Tensor& gh, const Tensor& stats, bool reverse,
                   std::string backend, const OptTensor& batch_sizes) {
  validate_ln_gru_backward(dy, dh_n, h0, w_hh, g_hh, b_hh, y, gates, gh, stats, batch_sizes);
  check_cuda(backend, "ln_gru_backward");
  return cuda::ln_gru_backward(dy, dh_n, h0, w_hh, g_hh, b_hh, y, gates, gh, stats, reverse,
                               batch_sizes);
}

T2 rnn_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
               const OptTensor& b_ih, const OptTensor& b_hh, std::string nonlinearity,
               bool reverse, std::string backend, const OptTensor& batch_sizes) {
  validate_rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes);
  const bool relu = parse_relu(nonlinearity, "rnn_forward");
  check_cuda(backend, "rnn_forward");
  return cuda::rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, batch_sizes);
}

T5 rnn_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, std::string nonlinearity,
                bool reverse, std::string backend, const OptTensor& batch_sizes) {
  validate_rnn_backward(dy, dh_n, x, h0, w_ih, w_hh, y, batch_sizes);
  const bool relu = parse_relu(nonlinearity, "rnn_backward");
  check_cuda(backend, "rnn_backward");
  return cuda::rnn_backward(dy, dh_n, x, h0, w_ih, w_hh, y, relu, reverse, batch_sizes);
}

// Both directions (bidir_ops.h): one persistent launch where the forward would run persistent
// and the two directions fit side by side, else the two ops one after the other.
T5 lstm_forward_bidir(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                      const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                      const Tensor& w_ih_r, const Tensor& w_hh_r, const OptTensor& b_ih_r,
                      const OptTensor& b_hh_r, std::string backend, const OptTensor& batch_sizes,
                      std::string algorithm, bool save) {
  return lstm_bidir(
      x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r, batch_sizes, save, false,
      [&](const Sizes& s) {
        check_cuda(backend, "lstm_forward_bidir");
        return persistent("lstm_forward_bidir", algorithm, RnnKind::Lstm, false, s, x) &&
               cuda::persistent_plan(RnnKind::Lstm, s.B, s.H, x.scalar_type(), 2).fits;
      },
      [&] {
        return cuda::lstm_forward_persistent_bidir(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ih_r,
                                                 w_hh_r, b_ih_r, b_hh_r, batch_sizes, save);
      },
      [&](bool rev, const Tensor& h, const Tensor& c, const Tensor& wi, const Tensor& wh,
          const OptTensor& bi, const OptTensor& bh) {
        return lstm_forward(x, h, c, wi, wh, bi, bh, rev, backend, batch_sizes, {}, algorithm,
                            save);
      });
}

T4 gru_forward_bidir(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                     const OptTensor& b_ih, const OptTensor& b_hh, const Tensor& w_ih_r,
                     const Tensor& w_hh_r, const OptTensor& b_ih_r, const OptTensor& b_hh_r,
                     std::string backend, const OptTensor& batch_sizes, std::string algorithm,
                     bool save) {
  return gru_bidir(
      x, h0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r, batch_sizes, save, false,
      [&](const Sizes& s) {
        check_cuda(backend, "gru_forward_bidir");
        return persistent("gru_forward_bidir", algorithm, RnnKind::Gru, false, s, x) &&
               cuda::persistent_plan(RnnKind::Gru, s.B, s.H, x.scalar_type(), 2).fits;
      },
      [&] {
        return cuda::gru_forward_persistent_bidir(x, h0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r,
                                                b_ih_r, b_hh_r, batch_sizes, save);
      },
      [&](bool rev, const Tensor& h, const Tensor&, const Tensor& wi, const Tensor& wh,
          const OptTensor& bi, const OptTensor& bh) {
        return gru_forward(x, h, wi, wh, bi, bh, rev, backend, batch_sizes, algorithm, save);
      });
}

// Both directions' backward (bidir_ops.h): one persistent launch where the backward would run persistent
// and the two directions fit side by side, else the two ops one after the other.
T9 lstm_backward_bidir(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& x,
                       const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                       const Tensor& w_hh, const Tensor& w_ih_r, const Tensor& w_hh_r,
                       const Tensor& y, const Tensor& gates, const Tensor& cells,
                       std::string backend, const OptTensor& batch_sizes,
                       std::string algorithm) {
  return lstm_bidir_backward(
      dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, w_ih_r, w_hh_r, y, gates, cells, batch_sizes, false,
      [&](const Sizes& s) {
        check_cuda(backend, "lstm_backward_bidir");
        return persistent("lstm_backward_bidir", algorithm, RnnKind::Lstm, true, s, x) &&
               cuda::persistent_plan(RnnKind::Lstm, s.B, s.H, x.scalar_type(), 2).fits;
      },
      [&] {
        return cuda::lstm_backward_persistent_bidir(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh,
                                                    w_ih_r, w_hh_r, y, gates, cells,
                                                    batch_sizes);
      },
      [&](bool rev, const Tensor& d, const Tensor& dh, const Tensor& dc, const Tensor& h,
          const Tensor& c, const Tensor& wi, const Tensor& wh, const Tensor& yd,
          const Tensor& g, const Tensor& cl) {
        return lstm_backward(d, dh, dc, x, h, c, wi, wh, yd, g, cl, rev, backend, batch_sizes,
                             {}, algorithm);
      });
}

T10 gru_backward_bidir(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                       const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_ih_r,
                       const Tensor& w_hh_r, const Tensor& y, const Tensor& gates,
                       const Tensor& ghn, std::string backend, const OptTensor& batch_sizes,
                       std::string algorithm) {
  return gru_bidir_backward(
      dy, dh_n, x, h0, w_ih, w_hh, w_ih_r, w_hh_r, y, gates, ghn, batch_sizes, false,
      [&](const Sizes& s) {
        check_cuda(backend, "gru_backward_bidir");
        return persistent("gru_backward_bidir", algorithm, RnnKind::Gru, true, s, x) &&
               cuda::persistent_plan(RnnKind::Gru, s.B, s.H, x.scalar_type(), 2).fits;
      },
      [&] {
        return cuda::gru_backward_persistent_bidir(dy, dh_n, x, h0, w_ih, w_hh, w_ih_r, w_hh_r,
                                                   y, gates, ghn, batch_sizes);
      },
      [&](bool rev, const Tensor& d, const Tensor& dh, const Tensor& h, const Tensor& wi,
          const Tensor& wh, const Tensor& yd, const Tensor& g, const Tensor& n) {
        return gru_backward(d, dh, x, h, wi, wh, yd, g, n, rev, backend, batch_sizes,
                            algorithm);
      });
}

// A stack's layers (stack_ops.h): as many as fit as one persistent wavefront (2..4; 3..4 where
// a layer alone runs on a cluster: wave_min_layers), where the single-layer forward would run
// persistent; else a layer at a time.
int wave_layers(const char* op, const std::string& algorithm, RnnKind kind, const Sizes& s,
                const Tensor& x, int remaining) {
  if (!persistent(op, algorithm, kind, false, s, x)) return 1;
  const auto dtype = x.scalar_type();
  return most_wave_layers(
      remaining, wave_min_layers(cuda::persistent_plan(kind, s.B, s.H, dtype), dtype),
      [&](int n) { return cuda::persistent_plan(kind, s.B, s.H, dtype, n, true); });
}

std::tuple<Tensor, Tensor, Tensor> lstm_forward_stack(
    const Tensor& x, const Tensor& h0, const Tensor& c0, at::TensorList weights, bool has_biases,
    std::string backend, const OptTensor& batch_sizes, std::string algorithm) {
  check_cuda(backend, "lstm_forward_stack");
  return lstm_stack(
      x, h0, c0, weights, has_biases, batch_sizes,
      [&](const Sizes& s, int remaining) {
        return wave_layers("lstm_forward_stack", algorithm, RnnKind::Lstm, s, x, remaining);
      },
      [&](const Tensor& xl, const Tensor& h, const Tensor& c, at::TensorList w) {
        return cuda::lstm_forward_persistent_stack(xl, h, c, w, has_biases, batch_sizes);
      },
      [&](const Tensor& xl, const Tensor& h, const Tensor& c, const Tensor& wi, const Tensor& wh,
          const OptTensor& bi, const OptTensor& bh) {
        return lstm_forward(xl, h, c, wi, wh, bi, bh, false, backend, batch_sizes, {}, algorithm,
                            false);
      });
}

std::tuple<Tensor, Tensor> gru_forward_stack(const Tensor& x, const Tensor& h0,
                                             at::TensorList weights, bool has_biases,
                                             std::string backend, const OptTensor& batch_sizes,
                                             std::string algorithm) {
  check_cuda(backend, "gru_forward_stack");
  return gru_stack(
      x, h0, weights, has_biases, batch_sizes,
      [&](const Sizes& s, int remaining) {
        return wave_layers("gru_forward_stack", algorithm, RnnKind::Gru, s, x, remaining);
      },
      [&](const Tensor& xl, const Tensor& h, at::TensorList w) {
        return cuda::gru_forward_persistent_stack(xl, h, w, has_biases, batch_sizes);
      },
      [&](const Tensor& xl, const Tensor& h, const Tensor& wi, const Tensor& wh,
          const OptTensor& bi, const OptTensor& bh) {
        return gru_forward(xl, h, wi, wh, bi, bh, false, backend, batch_sizes, algorithm, false);
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CUDA, m) {
  m.impl("lstm_forward_stack", &lstm_forward_stack);
  m.impl("gru_forward_stack", &gru_forward_stack);
  m.impl("lstm_forward_bidir", &lstm_forward_bidir);
  m.impl("gru_forward_bidir", &gru_forward_bidir);
  m.impl("lstm_backward_bidir", &lstm_backward_bidir);
  m.impl("gru_backward_bidir", &gru_backward_bidir);
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
  m.impl("gru_rb_forward", &gru_rb_forward);
  m.impl("gru_rb_backward", &gru_rb_backward);
  m.impl("mut_forward", &mut_forward);
  m.impl("mut_backward", &mut_backward);
  m.impl("ln_lstm_forward", &ln_lstm_forward);
  m.impl("ln_lstm_backward", &ln_lstm_backward);
  m.impl("ln_gru_forward", &ln_gru_forward);
  m.impl("ln_gru_backward", &ln_gru_backward);
  m.impl("rnn_forward", &rnn_forward);
  m.impl("rnn_backward", &rnn_backward);
}

}  // namespace fusedrnn

#endif  // FUSEDRNN_WITH_CUDA
