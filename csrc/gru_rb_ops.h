// Declarations of the stepwise implementations of the reset-before GRU ops (gru_rb_forward /
// gru_rb_backward; contract: csrc/cpu/gru_reset_before.h) on the backends that run the CUDA
// kernels: fusedrnn::simt (CPU tensors, csrc/simt/ops_gru_rb.cpp) and fusedrnn::cuda (CUDA
// tensors, csrc/cuda/gru_rb_*.cu, built with CUDA only). Kept apart from ops.h so that the
// kernels' translation units of the other cells do not depend on it.
#pragma once

#include "ops.h"

namespace fusedrnn {
#define FRNN_DECLARE_GRU_RB(ns)                                                                \
  namespace ns {                                                                               \
  T4 gru_rb_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, \
                    const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,                \
                    const OptTensor& batch_sizes, bool save);                                  \
  T6 gru_rb_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,  \
                     const Tensor& w_ih, const Tensor& w_hh, const Tensor& y,                  \
                     const Tensor& gates, const Tensor& rh, bool reverse,                      \
                     const OptTensor& batch_sizes);                                            \
  }
FRNN_DECLARE_GRU_RB(simt)
FRNN_DECLARE_GRU_RB(cuda)
#undef FRNN_DECLARE_GRU_RB
}  // namespace fusedrnn
