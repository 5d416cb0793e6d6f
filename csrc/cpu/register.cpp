// CPU dispatch of the fusedrnn ops: validates the arguments (csrc/validate.h), then runs the CPU
// backend (backend "auto" or "cpu") or the CUDA kernels through the SIMT layer (backend "simt",
// stepwise or persistent by the algorithm argument).
#include <optional>

#include "bidir_ops.h"
#include "stack_ops.h"
#include "cuda/persistent.h"
#include "cpu/big_buffer.h"
#include "cpu/bidir_concurrent.h"
#include "cpu/gru_reset_before.h"
#include "cpu/mut.h"
#include "layer_norm_ops.h"
#include "reset_before_ops.h"
#include "validate.h"

namespace fusedrnn {
namespace {

// True for backend "simt", false for "auto"/"cpu".
bool use_simt(const std::string& backend, const char* op) {
  switch (parse_backend(backend)) {
    case Backend::Simt: return true;
    case Backend::Cuda:
      TORCH_CHECK(false, op, ": backend 'cuda' needs CUDA tensors, got CPU tensors");
    default: return false;
  }
}

// The cache's unit of recurrence (big_buffer.h): one op call, and its activation shapes.
uint64_t call_shape(const Tensor& x, const Tensor& h0, const OptTensor& batch_sizes) {
  return cpu::shape_key({&x, &h0, batch_sizes ? &*batch_sizes : nullptr});
}

bool persistent(const char* op, const std::string& algorithm, const OptTensor& w_hr = {}) {
  return use_persistent(op, parse_algorithm(algorithm), false, 0, /*simt=*/true,
                        /*backward=*/false, w_hr);
}

T5 lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                std::string backend, const OptTensor& batch_sizes, const OptTensor& w_hr,
                std::string algorithm, bool save) {
  validate_lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_sizes, w_hr);
  const cpu::BufferScope buffers(1, call_shape(x, h0, batch_sizes));
  if (!use_simt(backend, "lstm_forward"))
    return cpu::lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, w_hr,
                             save);
  if (persistent("lstm_forward", algorithm, w_hr))
    return simt::lstm_forward_persistent(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse,
                                         batch_sizes, save);
  return simt::lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, w_hr,
                            save);
}

T7 lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& x,
                 const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                 const Tensor& y, const Tensor& gates, const Tensor& cells, bool reverse,
                 std::string backend, const OptTensor& batch_sizes, const OptTensor& w_hr,
                 std::string algorithm) {
  validate_lstm_backward(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells, batch_sizes,
                         w_hr);
  const cpu::BufferScope buffers(2, call_shape(x, h0, batch_sizes));
  if (!use_simt(backend, "lstm_backward"))
    return cpu::lstm_backward(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells, reverse,
                              batch_sizes, w_hr);
  if (persistent("lstm_backward", algorithm, w_hr)) {
    auto [dx, dh0, dc0, dw_ih, dw_hh, db] = simt::lstm_backward_persistent(
        dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells, reverse, batch_sizes);
    return {dx, dh0, dc0, dw_ih, dw_hh, db, at::empty({0}, x.options())};  // no projection
  }
  return simt::lstm_backward(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells, reverse,
                             batch_sizes, w_hr);
}

T4 gru_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
               const OptTensor& b_ih, const OptTensor& b_hh, bool reverse, std::string backend,
               const OptTensor& batch_sizes, std::string algorithm, bool save) {
  validate_gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes);
  const cpu::BufferScope buffers(3, call_shape(x, h0, batch_sizes));
  if (!use_simt(backend, "gru_forward"))
    return cpu::gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, save);
  if (persistent("gru_forward", algorithm))
    return simt::gru_forward_persistent(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes,
                                        save);
  return simt::gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, save);
}

T6 gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, const Tensor& gates,
                const Tensor& ghn, bool reverse, std::string backend,
                const OptTensor& batch_sizes, std::string algorithm) {
  validate_gru_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, batch_sizes);
  const cpu::BufferScope buffers(4, call_shape(x, h0, batch_sizes));
  if (!use_simt(backend, "gru_backward"))
    return cpu::gru_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, reverse, batch_sizes);
  if (persistent("gru_backward", algorithm))
    return simt::gru_backward_persistent(dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, reverse,
                                         batch_sizes);
  return simt::gru_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, reverse, batch_sizes);
}

T2 rnn_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
               const OptTensor& b_ih, const OptTensor& b_hh, std::string nonlinearity,
               bool reverse, std::string backend, const OptTensor& batch_sizes) {
  validate_rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes);
  const bool relu = parse_relu(nonlinearity, "rnn_forward");
  const cpu::BufferScope buffers(5, call_shape(x, h0, batch_sizes));
  if (use_simt(backend, "rnn_forward"))
    return simt::rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, batch_sizes);
  return cpu::rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, batch_sizes);
}

T5 rnn_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, std::string nonlinearity,
                bool reverse, std::string backend, const OptTensor& batch_sizes) {
  validate_rnn_backward(dy, dh_n, x, h0, w_ih, w_hh, y, batch_sizes);
  const bool relu = parse_relu(nonlinearity, "rnn_backward");
  const cpu::BufferScope buffers(6, call_shape(x, h0, batch_sizes));
  if (use_simt(backend, "rnn_backward"))
    return simt::rnn_backward(dy, dh_n, x, h0, w_ih, w_hh, y, relu, reverse, batch_sizes);
  return cpu::rnn_backward(dy, dh_n, x, h0, w_ih, w_hh, y, relu, reverse, batch_sizes);
}

// The reset-before GRU: stepwise kernels only under SIMT (no persistent ones).
T4 gru_rb_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                  const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                  std::string backend, const OptTensor& batch_sizes, bool save) {
  validate_gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, "gru_rb_forward");
  const cpu::BufferScope buffers(7, call_shape(x, h0, batch_sizes));
  if (use_simt(backend, "gru_rb_forward"))
    return simt::gru_rb_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, save);
  return cpu::gru_rb_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, save);
}

T6 gru_rb_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                   const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, const Tensor& gates,
                   const Tensor& rh, bool reverse, std::string backend,
                   const OptTensor& batch_sizes) {
  validate_gru_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, rh, batch_sizes,
                        "gru_rb_backward", "rh");
  const cpu::BufferScope buffers(8, call_shape(x, h0, batch_sizes));
  if (use_simt(backend, "gru_rb_backward"))
    return simt::gru_rb_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, rh, reverse,
                                 batch_sizes);
  return cpu::gru_rb_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, rh, reverse, batch_sizes);
}

T4 mut_forward(const Tensor& xp, const Tensor& h0, const Tensor& w_hh, int64_t variant,
               bool reverse, std::string backend, const OptTensor& batch_sizes, bool save) {
  validate_mut_forward(xp, h0, w_hh, variant, batch_sizes);
  const cpu::BufferScope buffers(9, call_shape(xp, h0, batch_sizes));
  if (use_simt(backend, "mut_forward"))
    return simt::mut_forward(xp, h0, w_hh, variant, reverse, batch_sizes, save);
  return cpu::mut_forward(xp, h0, w_hh, variant, reverse, batch_sizes, save);
}

T3 mut_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& h0, const Tensor& w_hh,
                const Tensor& y, const Tensor& gates, const Tensor& rh, int64_t variant,
                bool reverse, std::string backend, const OptTensor& batch_sizes) {
  validate_mut_backward(dy, dh_n, h0, w_hh, y, gates, rh, variant, batch_sizes);
  const cpu::BufferScope buffers(10, call_shape(dy, h0, batch_sizes));
  if (use_simt(backend, "mut_backward"))
    return simt::mut_backward(dy, dh_n, h0, w_hh, y, gates, rh, variant, reverse, batch_sizes);
  return cpu::mut_backward(dy, dh_n, h0, w_hh, y, gates, rh, variant, reverse, batch_sizes);
}

T7 ln_lstm_forward(const Tensor& xp, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
                   const Tensor& g_hh, const Tensor& g_c, const OptTensor& b_c, bool reverse,
                   std::string backend, const OptTensor& batch_sizes, bool save) {
  validate_ln_lstm_forward(xp, h0, c0, w_hh, g_hh, g_c, b_c, batch_sizes);
  const cpu::BufferScope buffers(11, call_shape(xp, h0, batch_sizes));
  if (use_simt(backend, "ln_lstm_forward"))
    return simt::ln_lstm_forward(xp, h0, c0, w_hh, g_hh, g_c, b_c, reverse, batch_sizes, save);
  return cpu::ln_lstm_forward(xp, h0, c0, w_hh, g_hh, g_c, b_c, reverse, batch_sizes, save);
}

T7 ln_lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& h0,
                    const Tensor& c0, const Tensor& w_hh, const Tensor& g_hh, const Tensor& g_c,
                    const OptTensor& b_c, const Tensor& y, const Tensor& gates, const Tensor& gh,
                    const Tensor& cells, const Tensor& stats, bool reverse, std::string backend,
                    const OptTensor& batch_sizes) {
  validate_ln_lstm_backward(dy, dh_n, dc_n, h0, c0, w_hh, g_hh, g_c, b_c, y, gates, gh, cells,
                            stats, batch_sizes);
  const cpu::BufferScope buffers(12, call_shape(dy, h0, batch_sizes));
  if (use_simt(backend, "ln_lstm_backward"))
    return simt::ln_lstm_backward(dy, dh_n, dc_n, h0, c0, w_hh, g_hh, g_c, b_c, y, gates, gh,
                                  cells, stats, reverse, batch_sizes);
  return cpu::ln_lstm_backward(dy, dh_n, dc_n, h0, c0, w_hh, g_hh, g_c, b_c, y, gates, gh, cells,
                               stats, reverse, batch_sizes);
}

T5 ln_gru_forward(const Tensor& xp, const Tensor& h0, const Tensor& w_hh, const Tensor& g_hh,
                  const OptTensor& b_hh, bool reverse, std::string backend,
                  const OptTensor& batch_sizes, bool save) {
  validate_ln_gru_forward(xp, h0, w_hh, g_hh, b_hh, batch_sizes);
  const cpu::BufferScope buffers(13, call_shape(xp, h0, batch_sizes));
  if (use_simt(backend, "ln_gru_forward"))
    return simt::ln_gru_forward(xp, h0, w_hh, g_hh, b_hh, reverse, batch_sizes, save);
  return cpu::ln_gru_forward(xp, h0, w_hh, g_hh, b_hh, reverse, batch_sizes, save);
}

T5 ln_gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& h0, const Tensor& w_hh,
                   const Tensor& g_hh, const OptTensor& b_hh, const Tensor& y,
                   const Tensor& gates, const Tensor& gh, const Tensor& stats, bool reverse,
                   std::string backend, const OptTensor& batch_sizes) {
  validate_ln_gru_backward(dy, dh_n, h0, w_hh, g_hh, b_hh, y, gates, gh, stats, batch_sizes);
  const cpu::BufferScope buffers(14, call_shape(dy, h0, batch_sizes));
  if (use_simt(backend, "ln_gru_backward"))
    return simt::ln_gru_backward(dy, dh_n, h0, w_hh, g_hh, b_hh, y, gates, gh, stats, reverse,
                                 batch_sizes);
  return cpu::ln_gru_backward(dy, dh_n, h0, w_hh, g_hh, b_hh, y, gates, gh, stats, reverse,
                              batch_sizes);
}

// The CPU backend's bidirectional ops on fp32 / fp64 ("direct"): the op is one call of the
// buffer cache (one BufferScope on the calling thread, whose call state is process-wide) and
// each direction calls the cpu:: function without a scope of its own (two scopes at once on
// two threads would interleave that state and no buffer would recur; the op's validation
// covered both directions); with save, the directions write their saved tensors into the
// halves of one [2, N, ...] buffer each (saved_pair), which the op returns without a copy. The
// directions run side by side where cpu/bidir_concurrent.h says so. Elsewhere (the SIMT layer,
// whose kernels run on its own threads; the half types) each direction is its own op call.
bool direct(const std::string& backend, const Tensor& h0) {
  return parse_backend(backend) != Backend::Simt &&
         (h0.scalar_type() == at::kFloat || h0.scalar_type() == at::kDouble);
}
// (h0 [2, B, H]; shapes are validated before the choice is used.)
bool concurrent(bool direct, int64_t G, const Tensor& h0, const Tensor& w_hh) {
  if (!direct || w_hh.dim() != 2 || h0.dim() != 3) return false;
  return cpu::bidir_concurrent(G, h0.size(1), w_hh.size(1), w_hh.element_size(),
                               at::get_num_threads());
}
struct SavedPair {
  Tensor a, b;  // [2, N, G*H] and [2, N, H], or undefined
};
SavedPair saved_pair(bool into, int64_t G, const Tensor& x, const Tensor& w_hh,
                     const OptTensor& batch_sizes) {
  if (!into || w_hh.dim() != 2 || x.dim() < 2) return {};
  const int64_t H = w_hh.size(1), N = batch_sizes ? x.size(0) : x.size(0) * x.size(1);
  return {cpu::empty_big({2, N, G * H}, x.options()), cpu::empty_big({2, N, H}, x.options())};
}

// Both directions (bidir_ops.h): one launch through the SIMT layer when it runs the persistent
// kernels (backend "simt", algorithm "persistent") and the two directions fit side by side.
T5 lstm_forward_bidir(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                      const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                      const Tensor& w_ih_r, const Tensor& w_hh_r, const OptTensor& b_ih_r,
                      const OptTensor& b_hh_r, std::string backend, const OptTensor& batch_sizes,
                      std::string algorithm, bool save) {
  const bool dir = direct(backend, h0), conc = concurrent(dir, 4, h0, w_hh);
  std::optional<cpu::BufferScope> buffers;  // direct only (see direct)
  if (dir) buffers.emplace(15, call_shape(x, h0, batch_sizes));
  const SavedPair into = saved_pair(dir && save, 4, x, w_hh, batch_sizes);
  return lstm_bidir(
      x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r, batch_sizes, save, conc,
      [&](const Sizes& s) {
        return use_simt(backend, "lstm_forward_bidir") &&
               persistent("lstm_forward_bidir", algorithm) &&
               simt::persistent_plan(RnnKind::Lstm, s.B, s.H, x.scalar_type(), 2).fits;
      },
      [&] {
        return simt::lstm_forward_persistent_bidir(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ih_r,
                                                 w_hh_r, b_ih_r, b_hh_r, batch_sizes, save);
      },
      [&](bool rev, const Tensor& h, const Tensor& c, const Tensor& wi, const Tensor& wh,
          const OptTensor& bi, const OptTensor& bh) {
        if (dir && save)
          return cpu::lstm_forward_into(x, h, c, wi, wh, bi, bh, rev, batch_sizes, into.a[rev],
                                        into.b[rev]);
        if (dir) return cpu::lstm_forward(x, h, c, wi, wh, bi, bh, rev, batch_sizes, {}, save);
        return lstm_forward(x, h, c, wi, wh, bi, bh, rev, backend, batch_sizes, {}, algorithm,
                            save);
      });
}

T4 gru_forward_bidir(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                     const OptTensor& b_ih, const OptTensor& b_hh, const Tensor& w_ih_r,
                     const Tensor& w_hh_r, const OptTensor& b_ih_r, const OptTensor& b_hh_r,
                     std::string backend, const OptTensor& batch_sizes, std::string algorithm,
                     bool save) {
  const bool dir = direct(backend, h0), conc = concurrent(dir, 3, h0, w_hh);
  std::optional<cpu::BufferScope> buffers;  // direct only (see direct)
  if (dir) buffers.emplace(16, call_shape(x, h0, batch_sizes));
  const SavedPair into = saved_pair(dir && save, 3, x, w_hh, batch_sizes);
  return gru_bidir(
      x, h0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r, batch_sizes, save, conc,
      [&](const Sizes& s) {
        return use_simt(backend, "gru_forward_bidir") &&
               persistent("gru_forward_bidir", algorithm) &&
               simt::persistent_plan(RnnKind::Gru, s.B, s.H, x.scalar_type(), 2).fits;
      },
      [&] {
        return simt::gru_forward_persistent_bidir(x, h0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r,
                                                b_ih_r, b_hh_r, batch_sizes, save);
      },
      [&](bool rev, const Tensor& h, const Tensor&, const Tensor& wi, const Tensor& wh,
          const OptTensor& bi, const OptTensor& bh) {
        if (dir && save)
          return cpu::gru_forward_into(x, h, wi, wh, bi, bh, rev, batch_sizes, into.a[rev],
                                       into.b[rev]);
        if (dir) return cpu::gru_forward(x, h, wi, wh, bi, bh, rev, batch_sizes, save);
        return gru_forward(x, h, wi, wh, bi, bh, rev, backend, batch_sizes, algorithm, save);
      });
}

// Both directions' backward (bidir_ops.h): one launch through the SIMT layer as the forward's.
T9 lstm_backward_bidir(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& x,
                       const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                       const Tensor& w_hh, const Tensor& w_ih_r, const Tensor& w_hh_r,
                       const Tensor& y, const Tensor& gates, const Tensor& cells,
                       std::string backend, const OptTensor& batch_sizes,
                       std::string algorithm) {
  const bool dir = direct(backend, h0), conc = concurrent(dir, 4, h0, w_hh);
  std::optional<cpu::BufferScope> buffers;  // direct only (see direct)
  if (dir) buffers.emplace(17, call_shape(x, h0, batch_sizes));
  return lstm_bidir_backward(
      dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, w_ih_r, w_hh_r, y, gates, cells, batch_sizes, conc,
      [&](const Sizes& s) {
        return use_simt(backend, "lstm_backward_bidir") &&
               persistent("lstm_backward_bidir", algorithm) &&
               simt::persistent_plan(RnnKind::Lstm, s.B, s.H, x.scalar_type(), 2).fits;
      },
      [&] {
        return simt::lstm_backward_persistent_bidir(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh,
                                                    w_ih_r, w_hh_r, y, gates, cells,
                                                    batch_sizes);
      },
      [&](bool rev, const Tensor& d, const Tensor& dh, const Tensor& dc, const Tensor& h,
          const Tensor& c, const Tensor& wi, const Tensor& wh, const Tensor& yd,
          const Tensor& g, const Tensor& cl) {
        if (dir)
          return cpu::lstm_backward(d, dh, dc, x, h, c, wi, wh, yd, g, cl, rev, batch_sizes, {});
        return lstm_backward(d, dh, dc, x, h, c, wi, wh, yd, g, cl, rev, backend, batch_sizes,
                             {}, algorithm);
      });
}

T10 gru_backward_bidir(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                       const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_ih_r,
                       const Tensor& w_hh_r, const Tensor& y, const Tensor& gates,
                       const Tensor& ghn, std::string backend, const OptTensor& batch_sizes,
                       std::string algorithm) {
  const bool dir = direct(backend, h0), conc = concurrent(dir, 3, h0, w_hh);
  std::optional<cpu::BufferScope> buffers;  // direct only (see direct)
  if (dir) buffers.emplace(18, call_shape(x, h0, batch_sizes));
  return gru_bidir_backward(
      dy, dh_n, x, h0, w_ih, w_hh, w_ih_r, w_hh_r, y, gates, ghn, batch_sizes, conc,
      [&](const Sizes& s) {
        return use_simt(backend, "gru_backward_bidir") &&
               persistent("gru_backward_bidir", algorithm) &&
               simt::persistent_plan(RnnKind::Gru, s.B, s.H, x.scalar_type(), 2).fits;
      },
      [&] {
        return simt::gru_backward_persistent_bidir(dy, dh_n, x, h0, w_ih, w_hh, w_ih_r, w_hh_r,
                                                   y, gates, ghn, batch_sizes);
      },
      [&](bool rev, const Tensor& d, const Tensor& dh, const Tensor& h, const Tensor& wi,
          const Tensor& wh, const Tensor& yd, const Tensor& g, const Tensor& n) {
        if (dir) return cpu::gru_backward(d, dh, x, h, wi, wh, yd, g, n, rev, batch_sizes);
        return gru_backward(d, dh, x, h, wi, wh, yd, g, n, rev, backend, batch_sizes,
                            algorithm);
      });
}

// A stack's layers (stack_ops.h): as many as fit as one wavefront launch (2..4; 3..4 where a
// layer alone runs on a cluster: wave_min_layers) through the SIMT layer when it runs the
// persistent kernels; else a layer at a time.
int wave_layers(const char* op, const std::string& backend, const std::string& algorithm,
                RnnKind kind, const Sizes& s, const Tensor& x, int remaining) {
  if (!use_simt(backend, op) || !persistent(op, algorithm)) return 1;
  const auto dtype = x.scalar_type();
  return most_wave_layers(
      remaining, wave_min_layers(simt::persistent_plan(kind, s.B, s.H, dtype), dtype),
      [&](int n) { return simt::persistent_plan(kind, s.B, s.H, dtype, n, true); });
}

std::tuple<Tensor, Tensor, Tensor> lstm_forward_stack(
    const Tensor& x, const Tensor& h0, const Tensor& c0, at::TensorList weights, bool has_biases,
    std::string backend, const OptTensor& batch_sizes, std::string algorithm) {
  return lstm_stack(
      x, h0, c0, weights, has_biases, batch_sizes,
      [&](const Sizes& s, int remaining) {
        return wave_layers("lstm_forward_stack", backend, algorithm, RnnKind::Lstm, s, x,
                           remaining);
      },
      [&](const Tensor& xl, const Tensor& h, const Tensor& c, at::TensorList w) {
        return simt::lstm_forward_persistent_stack(xl, h, c, w, has_biases, batch_sizes);
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
  return gru_stack(
      x, h0, weights, has_biases, batch_sizes,
      [&](const Sizes& s, int remaining) {
        return wave_layers("gru_forward_stack", backend, algorithm, RnnKind::Gru, s, x,
                           remaining);
      },
      [&](const Tensor& xl, const Tensor& h, at::TensorList w) {
        return simt::gru_forward_persistent_stack(xl, h, w, has_biases, batch_sizes);
      },
      [&](const Tensor& xl, const Tensor& h, const Tensor& wi, const Tensor& wh,
          const OptTensor& bi, const OptTensor& bh) {
        return gru_forward(xl, h, wi, wh, bi, bh, false, backend, batch_sizes, algorithm, false);
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
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
