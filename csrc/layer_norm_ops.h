// The layer-normalised cells' recurrent parts, declared for every backend: fusedrnn::cpu
// (csrc/cpu/layer_norm_{lstm,gru}.cpp), fusedrnn::simt (CPU tensors,
// csrc/simt/ops_ln_{lstm,gru}.cpp) and fusedrnn::cuda (CUDA tensors, csrc/cuda/ln_{lstm,gru}_*.cu,
// built with CUDA only).
//
// The LSTM (fusedrnn.LayerNormLSTM; cell math: csrc/cells/layer_norm_lstm.h):
// ln_lstm_forward(xp, h0, c0, w_hh, g_hh, g_c, b_c, reverse, batch_sizes, save)
//   -> (y, h_n, c_n, gates, gh, cells, stats)
// ln_lstm_backward(dy, dh_n, dc_n, h0, c0, w_hh, g_hh, g_c, b_c, y, gates, gh, cells, stats,
//                  reverse, batch_sizes) -> (dxp, dh0, dc0, dw_hh, dg_hh, dg_c, db_c)
// Per step: a = xp + g_hh * LN(h W_hh^T) (gate order i, f, g, o), c' = f c + i g,
// h' = o tanh(g_c * LN(c') + b_c). xp [T,B,4H] (packed: [N,4H]) is the input side, biases
// included (fusedrnn/functional.py forms g_ih * LN(x W_ih^T) + b). h0, c0 [B,H]; w_hh [4H,H];
// g_hh [4H]; g_c, b_c [H] (b_c may be absent: zero). Outputs y [T,B,H] (or [N,H]), h_n, c_n
// [B,H]; saved for backward (empty [0] when save is false): gates [T,B,4H] the activations
// i, f, g, o, cells [T,B,H] c', and, in the accumulation type (fp32 for fp16/bf16/fp32, fp64
// for fp64), gh [T,B,4H] the raw products h W_hh^T and stats [T,B,4] (mean and 1/sqrt(var+eps)
// of gh's row and of c''s, eps = 1e-5). Gradients have their inputs' shapes (dxp: xp's, db_c:
// [H] also without b_c). Packed input as the other ops (csrc/ops.h). Inputs may be
// non-contiguous; outputs are contiguous and never alias the inputs.
//
// The GRU (fusedrnn.LayerNormGRU; torch.nn.GRU's cell, reset after, with both products
// normalised; cell math: cells/cells.h gru_* and cells/layer_norm.h):
// ln_gru_forward(xp, h0, w_hh, g_hh, b_hh, reverse, batch_sizes, save)
//   -> (y, h_n, gates, gh, stats)
// ln_gru_backward(dy, dh_n, h0, w_hh, g_hh, b_hh, y, gates, gh, stats, reverse, batch_sizes)
//   -> (dxp, dh0, dw_hh, dg_hh, db_hh)
// Per step, gate order r, z, n: hh = g_hh * LN(h W_hh^T) + b_hh, r = sigmoid(xp_r + hh_r),
// z = sigmoid(xp_z + hh_z), n = tanh(xp_n + r * hh_n), h' = (1 - z) n + z h. xp [T,B,3H] (packed
// [N,3H]) = g_ih * LN(x W_ih^T) + b_ih; w_hh [3H,H]; g_hh [3H]; b_hh [3H] or absent (zero).
// Saved: gates [T,B,3H] r, z, n; in the accumulation type gh [T,B,3H] (h W_hh^T) and stats
// [T,B,2] (mean and rstd of gh's row). db_hh is [3H] also without b_hh. Otherwise as above.
#pragma once

#include "ops.h"

namespace fusedrnn {
#define FRNN_DECLARE_LN_LSTM(ns)                                                               \
  namespace ns {                                                                               \
  T7 ln_lstm_forward(const Tensor& xp, const Tensor& h0, const Tensor& c0, const Tensor& w_hh, \
                     const Tensor& g_hh, const Tensor& g_c, const OptTensor& b_c, bool reverse, \
                     const OptTensor& batch_sizes, bool save);                                 \
  T7 ln_lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n,                \
                      const Tensor& h0, const Tensor& c0, const Tensor& w_hh,                  \
                      const Tensor& g_hh, const Tensor& g_c, const OptTensor& b_c,             \
                      const Tensor& y, const Tensor& gates, const Tensor& gh,                  \
                      const Tensor& cells, const Tensor& stats, bool reverse,                  \
                      const OptTensor& batch_sizes);                                           \
  }
#define FRNN_DECLARE_LN_GRU(ns)                                                                \
  namespace ns {                                                                               \
  T5 ln_gru_forward(const Tensor& xp, const Tensor& h0, const Tensor& w_hh, const Tensor& g_hh, \
                    const OptTensor& b_hh, bool reverse, const OptTensor& batch_sizes,         \
                    bool save);                                                                \
  T5 ln_gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& h0,                   \
                     const Tensor& w_hh, const Tensor& g_hh, const OptTensor& b_hh,            \
                     const Tensor& y, const Tensor& gates, const Tensor& gh,                   \
                     const Tensor& stats, bool reverse, const OptTensor& batch_sizes);         \
  }
FRNN_DECLARE_LN_LSTM(cpu)
FRNN_DECLARE_LN_LSTM(simt)
FRNN_DECLARE_LN_LSTM(cuda)
FRNN_DECLARE_LN_GRU(cpu)
FRNN_DECLARE_LN_GRU(simt)
FRNN_DECLARE_LN_GRU(cuda)
#undef FRNN_DECLARE_LN_LSTM
#undef FRNN_DECLARE_LN_GRU
}  // namespace fusedrnn
