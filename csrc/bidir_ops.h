// Both directions of a bidirectional LSTM / GRU layer in one op, forward and backward, shared by
// the CPU and CUDA dispatch (csrc/cpu/register.cpp, csrc/cuda/register.cpp).
//
// Contract of fusedrnn::lstm_forward_bidir / gru_forward_bidir: the arguments of lstm_forward /
// gru_forward for each direction (the second direction's weights suffixed _r), with h0 (and c0)
// [2, B, H]: row 0 the forward direction's, row 1 the reverse one's; no projection. Returns
// y [T, B, 2H] (packed: [N, 2H]; features [forward | reverse], torch.nn's layout), h_n (and c_n)
// [2, B, H], and with save the tensors backward needs, both directions in one tensor each:
// gates [2, T, B, G*H] and cells (GRU: ghn) [2, T, B, H] (packed: [2, N, ...]); without save
// they are empty ([0]) and the forward keeps nothing per row but y.
// Contract of fusedrnn::lstm_backward_bidir / gru_backward_bidir: dy [T, B, 2H] (packed
// [N, 2H]), dh_n (and dc_n) [2, B, H], the forward's inputs and its y, gates, cells / ghn.
// Returns dx (both directions' sum), dh0 (and dc0) [2, B, H], then each direction's weight and
// bias gradients (LSTM: dw_ih, dw_hh, db = db_ih = db_hh; GRU: dw_ih, dw_hh, db_ih, db_hh).
// The values are those of the single-direction ops (the same saved tensors, dx summed in the
// storage dtype): the persistent kernels run both directions in one launch where they are
// chosen (a direction per half of the SMs; the forward also on a thread-block cluster each),
// else the single-direction ops run one after the other, or on the CPU backend side by side
// where a direction is small (cpu/bidir_concurrent.h) (lstm_bidir ... gru_bidir_backward: the
// bodies both dispatches share).
#pragma once

#include <array>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include "validate.h"

namespace fusedrnn {

using T9 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;
using T10 =
    std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

// A state (h0, c0, dh_n, dc_n) [2, B, ...] with both directions: a clear error otherwise.
inline void check_bidir_rows(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.dim() == 3 && t.size(0) == 2, op, ": ", name,
              " must be [2, B, H] (both directions), got ", t.sizes());
}
inline void check_bidir_state(const char* op, const at::Tensor& h0, const at::Tensor* c0) {
  check_bidir_rows(op, "h0", h0);
  if (c0) check_bidir_rows(op, "c0", *c0);
}
// The saved tensors of both directions ([2, ...], direction-major).
inline void check_bidir_saved(const char* op, const at::Tensor& a, const char* an,
                              const at::Tensor& b, const char* bn) {
  TORCH_CHECK(a.dim() >= 2 && a.size(0) == 2, op, ": ", an,
              " must hold both directions ([2, T, B, ...] or [2, N, ...]), got ", a.sizes());
  TORCH_CHECK(b.dim() >= 2 && b.size(0) == 2, op, ": ", bn,
              " must hold both directions ([2, T, B, ...] or [2, N, ...]), got ", b.sizes());
}
// A per-row tensor of both directions' features (y, dy: [.., 2H]) and its direction k's half.
inline at::Tensor bidir_half(const char* op, const char* name, const at::Tensor& t,
                             const at::Tensor& w_hh, int k) {
  const int64_t H = w_hh.dim() == 2 ? w_hh.size(1) : -1;
  TORCH_CHECK(t.dim() >= 2 && H > 0 && t.size(-1) == 2 * H, op, ": ", name,
              " must have 2H features (both directions; H = ", H, "), got ", t.sizes());
  return t.narrow(-1, k * H, H);
}
// Both directions' saved tensors in one, as the persistent pair writes them; none without save.
// Where the two already lie one after the other in one buffer (the CPU backend's side-by-side
// path writes them so), a view of it, else a copy.
inline at::Tensor stack_saved(bool save, const at::Tensor& f, const at::Tensor& r,
                              const at::Tensor& like) {
  if (!save) return like.new_empty({0});
  if (f.is_contiguous() && r.is_contiguous() && f.sizes() == r.sizes() &&
      f.scalar_type() == r.scalar_type() && f.storage().is_alias_of(r.storage()) &&
      r.storage_offset() == f.storage_offset() + f.numel()) {
    std::vector<int64_t> sizes{2};
    sizes.insert(sizes.end(), f.sizes().begin(), f.sizes().end());
    return f.as_strided(sizes, c10::contiguous_strides(sizes), f.storage_offset());
  }
  return at::stack({f, r});
}

// dir(reverse) for both directions: one after the other, or (concurrent: the CPU backend's
// choice, cpu/bidir_concurrent.h) side by side on two threads of ATen's pool, each call then
// inside a parallel region, where the CPU backend's products and sweeps run on their calling
// thread. The caller's thread-local state (grad mode, dispatch guards) goes with it.
template <class F>
auto run_directions(bool concurrent, const F& dir) -> std::array<decltype(dir(false)), 2> {
  std::array<decltype(dir(false)), 2> out;
  if (!concurrent || at::in_parallel_region() || at::get_num_threads() < 2) {
    out[0] = dir(false);
    out[1] = dir(true);
    return out;
  }
  const at::ThreadLocalState state;
  at::parallel_for(0, 2, 1, [&](int64_t k0, int64_t k1) {
    const at::ThreadLocalStateGuard guard(state);
    for (int64_t k = k0; k < k1; ++k) out[k] = dir(k == 1);
  });
  return out;
}

// The bodies of both dispatches (CPU, CUDA): check and validate both directions, then
//   one_launch(sizes) ? pair() : the two directions through single(...) (run_directions),
// forward: single(reverse, h0, c0, w_ih, w_hh, b_ih, b_hh) -> the single-direction op's tuple
// (with the same save; GRU: c0 undefined); y of each along the features, the states and saved
// tensors stacked.
template <class OneLaunch, class Pair, class Single>
T5 lstm_bidir(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
              const at::Tensor& w_ih, const at::Tensor& w_hh, const OptTensor& b_ih,
              const OptTensor& b_hh, const at::Tensor& w_ih_r, const at::Tensor& w_hh_r,
              const OptTensor& b_ih_r, const OptTensor& b_hh_r, const OptTensor& batch_sizes,
              bool save, bool concurrent, OneLaunch one_launch, Pair pair, Single single) {
  check_bidir_state("lstm_forward_bidir", h0, &c0);
  const Sizes s = validate_lstm_forward(x, h0[0], c0[0], w_ih, w_hh, b_ih, b_hh, batch_sizes, {});
  validate_lstm_forward(x, h0[1], c0[1], w_ih_r, w_hh_r, b_ih_r, b_hh_r, batch_sizes, {});
  if (one_launch(s)) return pair();
  auto [f, r] = run_directions(concurrent, [&](bool rev) {
    return rev ? single(true, h0[1], c0[1], w_ih_r, w_hh_r, b_ih_r, b_hh_r)
               : single(false, h0[0], c0[0], w_ih, w_hh, b_ih, b_hh);
  });
  return {at::cat({std::get<0>(f), std::get<0>(r)}, -1),
          at::stack({std::get<1>(f), std::get<1>(r)}),
          at::stack({std::get<2>(f), std::get<2>(r)}),
          stack_saved(save, std::get<3>(f), std::get<3>(r), x),
          stack_saved(save, std::get<4>(f), std::get<4>(r), x)};
}

template <class OneLaunch, class Pair, class Single>
T4 gru_bidir(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih,
             const at::Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
             const at::Tensor& w_ih_r, const at::Tensor& w_hh_r, const OptTensor& b_ih_r,
             const OptTensor& b_hh_r, const OptTensor& batch_sizes, bool save, bool concurrent,
             OneLaunch one_launch, Pair pair, Single single) {
  check_bidir_state("gru_forward_bidir", h0, nullptr);
  const Sizes s = validate_gru_forward(x, h0[0], w_ih, w_hh, b_ih, b_hh, batch_sizes);
  validate_gru_forward(x, h0[1], w_ih_r, w_hh_r, b_ih_r, b_hh_r, batch_sizes);
  if (one_launch(s)) return pair();
  auto [f, r] = run_directions(concurrent, [&](bool rev) {
    return rev ? single(true, h0[1], at::Tensor(), w_ih_r, w_hh_r, b_ih_r, b_hh_r)
               : single(false, h0[0], at::Tensor(), w_ih, w_hh, b_ih, b_hh);
  });
  return {at::cat({std::get<0>(f), std::get<0>(r)}, -1),
          at::stack({std::get<1>(f), std::get<1>(r)}),
          stack_saved(save, std::get<2>(f), std::get<2>(r), x),
          stack_saved(save, std::get<3>(f), std::get<3>(r), x)};
}

// Backward: single(reverse, dy, dh_n, dc_n, h0, c0, w_ih, w_hh, y, gates, cells) -> the
// single-direction backward op's tuple (GRU: without dc_n and c0, ghn for cells); dx summed.
template <class OneLaunch, class Pair, class Single>
T9 lstm_bidir_backward(const at::Tensor& dy, const at::Tensor& dh_n, const at::Tensor& dc_n,
                       const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                       const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& w_ih_r,
                       const at::Tensor& w_hh_r, const at::Tensor& y, const at::Tensor& gates,
                       const at::Tensor& cells, const OptTensor& batch_sizes, bool concurrent,
                       OneLaunch one_launch, Pair pair, Single single) {
  const char* op = "lstm_backward_bidir";
  check_bidir_state(op, h0, &c0);
  check_bidir_rows(op, "dh_n", dh_n);
  check_bidir_rows(op, "dc_n", dc_n);
  check_bidir_saved(op, gates, "gates", cells, "cells");
  Sizes s{};
  for (int k = 0; k < 2; ++k)
    s = validate_lstm_backward(bidir_half(op, "dy", dy, w_hh, k), dh_n[k], dc_n[k], x, h0[k],
                               c0[k], k ? w_ih_r : w_ih, k ? w_hh_r : w_hh,
                               bidir_half(op, "y", y, w_hh, k), gates[k], cells[k], batch_sizes,
                               {});
  if (one_launch(s)) return pair();
  auto [f, r] = run_directions(concurrent, [&](bool rev) {
    const int k = rev ? 1 : 0;
    return single(rev, bidir_half(op, "dy", dy, w_hh, k), dh_n[k], dc_n[k], h0[k], c0[k],
                  rev ? w_ih_r : w_ih, rev ? w_hh_r : w_hh, bidir_half(op, "y", y, w_hh, k),
                  gates[k], cells[k]);
  });
  return {std::get<0>(f).add_(std::get<0>(r)),
          at::stack({std::get<1>(f), std::get<1>(r)}),
          at::stack({std::get<2>(f), std::get<2>(r)}),
          std::get<3>(f), std::get<4>(f), std::get<5>(f),
          std::get<3>(r), std::get<4>(r), std::get<5>(r)};
}

template <class OneLaunch, class Pair, class Single>
T10 gru_bidir_backward(const at::Tensor& dy, const at::Tensor& dh_n, const at::Tensor& x,
                       const at::Tensor& h0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                       const at::Tensor& w_ih_r, const at::Tensor& w_hh_r, const at::Tensor& y,
                       const at::Tensor& gates, const at::Tensor& ghn,
                       const OptTensor& batch_sizes, bool concurrent, OneLaunch one_launch,
                       Pair pair, Single single) {
  const char* op = "gru_backward_bidir";
  check_bidir_state(op, h0, nullptr);
  check_bidir_rows(op, "dh_n", dh_n);
  check_bidir_saved(op, gates, "gates", ghn, "ghn");
  Sizes s{};
  for (int k = 0; k < 2; ++k)
    s = validate_gru_backward(bidir_half(op, "dy", dy, w_hh, k), dh_n[k], x, h0[k],
                              k ? w_ih_r : w_ih, k ? w_hh_r : w_hh,
                              bidir_half(op, "y", y, w_hh, k), gates[k], ghn[k], batch_sizes, op);
  if (one_launch(s)) return pair();
  auto [f, r] = run_directions(concurrent, [&](bool rev) {
    const int k = rev ? 1 : 0;
    return single(rev, bidir_half(op, "dy", dy, w_hh, k), dh_n[k], h0[k], rev ? w_ih_r : w_ih,
                  rev ? w_hh_r : w_hh, bidir_half(op, "y", y, w_hh, k), gates[k], ghn[k]);
  });
  return {std::get<0>(f).add_(std::get<0>(r)), at::stack({std::get<1>(f), std::get<1>(r)}),
          std::get<2>(f), std::get<3>(f), std::get<4>(f), std::get<5>(f),
          std::get<2>(r), std::get<3>(r), std::get<4>(r), std::get<5>(r)};
}

}  // namespace fusedrnn
