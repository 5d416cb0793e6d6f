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
// the other (bidir_by_halves).
#pragma once

#include <tuple>

#include <ATen/ATen.h>

namespace fusedrnn {

// h0 (and c0) [2, B, ...] with both directions: a clear error otherwise.
inline void check_bidir_state(const char* op, const at::Tensor& h0, const at::Tensor* c0) {
  TORCH_CHECK(h0.dim() == 3 && h0.size(0) == 2, op,
              ": h0 must be [2, B, H] (both directions), got ", h0.sizes());
  TORCH_CHECK(!c0 || (c0->dim() == 3 && c0->size(0) == 2), op,
              ": c0 must be [2, B, H] (both directions), got ", c0->sizes());
}

// The two directions one after the other: fwd(dir, h0[dir], c0[dir]) -> the single-direction
// op's (y, h_n, c_n...) tuple (save = false). y [.., H] of each along the features; the states
// stacked. With_cell: LSTM (c_n as well).
template <bool WithCell, class F>
auto bidir_by_halves(F fwd, const at::Tensor& h0, const at::Tensor& c0) {
  auto f = fwd(0, h0[0], WithCell ? c0[0] : at::Tensor());
  auto r = fwd(1, h0[1], WithCell ? c0[1] : at::Tensor());
  auto y = at::cat({std::get<0>(f), std::get<0>(r)}, -1);
  auto h_n = at::stack({std::get<1>(f), std::get<1>(r)});
  if constexpr (WithCell)
    return std::make_tuple(y, h_n, at::stack({std::get<2>(f), std::get<2>(r)}));
  else
    return std::make_tuple(y, h_n);
}

}  // namespace fusedrnn
