// Both directions of a bidirectional LSTM / GRU layer's forward in one op (inference: nothing
// saved for backward), shared by the CPU and CUDA dispatch (csrc/cpu/register.cpp,
// csrc/cuda/register.cpp).
//
// Contract of fusedrnn::lstm_forward_bidir / gru_forward_bidir: the arguments of lstm_forward /
// gru_forward for each direction (the second direction's weights suffixed _r), with h0 (and c0)
// [2, B, H]: row 0 the forward direction's, row 1 the reverse one's; no projection. Returns
// y [T, B, 2H] (packed: [N, 2H]; features [forward | reverse], torch.nn's layout), h_n (and c_n)
// [2, B, H]. The values are those of the two single-direction ops with save = false, y
// concatenated: the persistent kernels run both in one launch where they are chosen (a
// direction per half of the SMs, or a thread-block cluster each), else the ops run one after
// the other (lstm_bidir / gru_bidir: the body both dispatches share).
#pragma once

#include <tuple>

#include <ATen/ATen.h>

#include "validate.h"

namespace fusedrnn {

// h0 (and c0) [2, B, ...] with both directions: a clear error otherwise.
inline void check_bidir_state(const char* op, const at::Tensor& h0, const at::Tensor* c0) {
  TORCH_CHECK(h0.dim() == 3 && h0.size(0) == 2, op,
              ": h0 must be [2, B, H] (both directions), got ", h0.sizes());
  TORCH_CHECK(!c0 || (c0->dim() == 3 && c0->size(0) == 2), op,
              ": c0 must be [2, B, H] (both directions), got ", c0->sizes());
}

// The body of both dispatches (CPU, CUDA): check and validate both directions, then
//   one_launch(sizes) ? pair() : the two directions through single(...) one after the other,
// single(reverse, h0, c0, w_ih, w_hh, b_ih, b_hh) -> the single-direction op's tuple (save =
// false; GRU: c0 undefined). y of each along the features, the states stacked.
template <class OneLaunch, class Pair, class Single>
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_bidir(
    const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
    const at::Tensor& w_ih_r, const at::Tensor& w_hh_r, const OptTensor& b_ih_r,
    const OptTensor& b_hh_r, const OptTensor& batch_sizes, OneLaunch one_launch, Pair pair,
    Single single) {
  check_bidir_state("lstm_forward_bidir", h0, &c0);
  const Sizes s = validate_lstm_forward(x, h0[0], c0[0], w_ih, w_hh, b_ih, b_hh, batch_sizes, {});
  validate_lstm_forward(x, h0[1], c0[1], w_ih_r, w_hh_r, b_ih_r, b_hh_r, batch_sizes, {});
  if (one_launch(s)) return pair();
  auto f = single(false, h0[0], c0[0], w_ih, w_hh, b_ih, b_hh);
  auto r = single(true, h0[1], c0[1], w_ih_r, w_hh_r, b_ih_r, b_hh_r);
  return {at::cat({std::get<0>(f), std::get<0>(r)}, -1),
          at::stack({std::get<1>(f), std::get<1>(r)}),
          at::stack({std::get<2>(f), std::get<2>(r)})};
}

template <class OneLaunch, class Pair, class Single>
std::tuple<at::Tensor, at::Tensor> gru_bidir(
    const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const OptTensor& b_ih, const OptTensor& b_hh, const at::Tensor& w_ih_r,
    const at::Tensor& w_hh_r, const OptTensor& b_ih_r, const OptTensor& b_hh_r,
    const OptTensor& batch_sizes, OneLaunch one_launch, Pair pair, Single single) {
  check_bidir_state("gru_forward_bidir", h0, nullptr);
  const Sizes s = validate_gru_forward(x, h0[0], w_ih, w_hh, b_ih, b_hh, batch_sizes);
  validate_gru_forward(x, h0[1], w_ih_r, w_hh_r, b_ih_r, b_hh_r, batch_sizes);
  if (one_launch(s)) return pair();
  auto f = single(false, h0[0], at::Tensor(), w_ih, w_hh, b_ih, b_hh);
  auto r = single(true, h0[1], at::Tensor(), w_ih_r, w_hh_r, b_ih_r, b_hh_r);
  return {at::cat({std::get<0>(f), std::get<0>(r)}, -1),
          at::stack({std::get<1>(f), std::get<1>(r)})};
}

}  // namespace fusedrnn
