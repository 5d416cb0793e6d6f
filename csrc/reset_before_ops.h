// Declarations of the stepwise implementations of the cells whose reset gate comes before the
// recurrent product, on the backends that run the CUDA kernels: fusedrnn::simt (CPU tensors,
// csrc/simt/ops_reset_before.cpp) and fusedrnn::cuda (CUDA tensors,
// csrc/cuda/reset_before_*.cu, built with CUDA only):
//   gru_rb_forward / gru_rb_backward: Cho's GRU (contract: csrc/cpu/gru_reset_before.h);
//   mut_forward / mut_backward: MUT1-3 (contract: csrc/cpu/mut.h).
// Kept apart from ops.h so that the kernels' translation units of the other cells do not depend
// on it.
#pragma once

#include "ops.h"

namespace fusedrnn {
using T3 = std::tuple<Tensor, Tensor, Tensor>;

#define FRNN_DECLARE_RESET_BEFORE(ns)                                                          \
  namespace ns {                                                                               \
  T4 gru_rb_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, \
                    const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,                \
                    const OptTensor& batch_sizes, bool save);                                  \
  T6 gru_rb_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,  \
                     const Tensor& w_ih, const Tensor& w_hh, const Tensor& y,                  \
                     const Tensor& gates, const Tensor& rh, bool reverse,                      \
                     const OptTensor& batch_sizes);                                            \
  T4 mut_forward(const Tensor& xp, const Tensor& h0, const Tensor& w_hh, int64_t variant,      \
                 bool reverse, const OptTensor& batch_sizes, bool save);                       \
  T3 mut_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& h0, const Tensor& w_hh,  \
                  const Tensor& y, const Tensor& gates, const Tensor& rh, int64_t variant,     \
                  bool reverse, const OptTensor& batch_sizes);                                 \
  }
FRNN_DECLARE_RESET_BEFORE(cpu)
FRNN_DECLARE_RESET_BEFORE(simt)
FRNN_DECLARE_RESET_BEFORE(cuda)
#undef FRNN_DECLARE_RESET_BEFORE
}  // namespace fusedrnn
