// Declarations of the per-backend implementations of the fusedrnn ops (one layer, one direction,
// whole sequence). Every backend implements the same signatures:
//   fusedrnn::cpu   csrc/cpu      CPU tensors, production CPU path
//   fusedrnn::simt  csrc/simt     CPU tensors, runs the CUDA kernels of csrc/cuda on CPU threads
//   fusedrnn::cuda  csrc/cuda     CUDA tensors (only when built with CUDA)
//
// Shapes (G = 4 LSTM, 3 GRU, 1 RNN):
//   x [T,B,I]  h0,c0 [B,H]  w_ih [G*H,I]  w_hh [G*H,H]  b_ih,b_hh [G*H] (optional, both or none)
//   forward returns y [T,B,H] (y[t] = h_t in time order, also when reverse), h_n, c_n [B,H]
//   (fresh tensors, never views of y), and what backward needs:
//     LSTM gates [T,B,4H] = activations i,f,g,o; cells [T,B,H] = c_t
//     GRU  gates [T,B,3H] = activations r,z,n;   ghn [T,B,H] = W_hn h_{t-1} + b_hn
//   backward takes the gradients of the forward's y, h_n (, c_n) and returns the gradients of
//   x, h0 (, c0), w_ih, w_hh and the bias(es): LSTM/RNN one db (the same for b_ih and b_hh),
//   GRU db_ih and db_hh (they differ in the n gate).
// reverse: the layer runs t = T-1 .. 0 (the backward direction of a bidirectional layer).
// save (LSTM, GRU forward): false when nothing will call backward (no input requires grad, or
// grad mode is off): gates and cells / ghn then come back as empty 1-D tensors (0 elements, x's
// dtype and device), and the forward allocates no per-row buffer but y: the input projection
// and the values backward would need go through a scratch of a bounded chunk of steps (CPU:
// csrc/cpu/chunks.h; stepwise CUDA/SIMT: the xproj of a chunk, and the kernels store no gates
// or cells when their pointers are null). y, h_n, c_n are the same either way up to the rounding
// of the input projection's GEMM over a chunk's rows instead of all rows (BLAS and cuBLAS may
// sum another row count in another order; bit-identical for the CPU backend's fp32 dense
// batches of whole register tiles, B a multiple of 8).
// nosave_chunk_bytes(): that chunk's budget, 4 MB (FUSEDRNN_NOSAVE_CHUNK_BYTES overrides it, for
// tests: small values make many chunks of small inputs); a chunk holds at least one step.
// Inputs may be non-contiguous; outputs are contiguous. T may be 0 (h_n = h0, c_n = c0).
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <tuple>

namespace fusedrnn {

using Tensor = at::Tensor;
using OptTensor = c10::optional<at::Tensor>;
using T5 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;
using T6 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;
using T7 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;
using T4 = std::tuple<Tensor, Tensor, Tensor, Tensor>;
using T2 = std::tuple<Tensor, Tensor>;

// Every backend also takes packed input: batch_sizes given, x is [N, I] and every per-row tensor
// (y, gates, cells, ghn, dy, dx) is [N, K] instead of [T, B, K] (csrc/checks.h); h_n / c_n hold
// each row's state after its last active step (reverse: each sequence starts at its own end from
// h0 / c0). And the LSTM projection: w_hr [P, H] given, w_hh is [4H, P], h0, h_n, dh_n and y
// have P features (h = (o * tanh(c)) W_hr^T), and lstm_backward's 7th result is dw_hr (an empty
// tensor without projection).
#define FUSEDRNN_DECLARE_BACKEND(ns)                                                          \
  namespace ns {                                                                              \
  T5 lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,    \
                  const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,           \
                  bool reverse, const OptTensor& batch_sizes, const OptTensor& w_hr,          \
                  bool save);                                                                 \
  T7 lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& x, \
                   const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, \
                   const Tensor& y, const Tensor& gates, const Tensor& cells, bool reverse,   \
                   const OptTensor& batch_sizes, const OptTensor& w_hr);                      \
  T4 gru_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,   \
                 const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,                  \
                 const OptTensor& batch_sizes, bool save);                                    \
  T6 gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,    \
                  const Tensor& w_ih, const Tensor& w_hh, const Tensor& y,                    \
                  const Tensor& gates, const Tensor& ghn, bool reverse,                       \
                  const OptTensor& batch_sizes);                                              \
  T2 rnn_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,   \
                 const OptTensor& b_ih, const OptTensor& b_hh, bool relu, bool reverse,       \
                 const OptTensor& batch_sizes);                                               \
  T5 rnn_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,    \
                  const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, bool relu,         \
                  bool reverse, const OptTensor& batch_sizes);                                \
  }

inline int64_t nosave_chunk_bytes() {
  const char* env = std::getenv("FUSEDRNN_NOSAVE_CHUNK_BYTES");
  return env ? std::max<int64_t>(std::atoll(env), 1) : int64_t(4) << 20;
}

FUSEDRNN_DECLARE_BACKEND(cpu)
FUSEDRNN_DECLARE_BACKEND(simt)
#ifdef FUSEDRNN_WITH_CUDA
FUSEDRNN_DECLARE_BACKEND(cuda)
#endif

}  // namespace fusedrnn
