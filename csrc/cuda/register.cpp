// CUDA dispatch of the fusedrnn ops: validates inputs (csrc/checks.h), then runs the stepwise
// CUDA kernels (fusedrnn::cuda, csrc/cuda/stepwise.h). Backend "auto" and "cuda" are accepted;
// "cpu" and "simt" run on CPU tensors only and are rejected with a message naming the fix; packed
// input (batch_sizes) and the LSTM projection (w_hr) are not implemented by the CUDA kernels yet.
// Compiled in every build; registers nothing unless built with CUDA (FUSEDRNN_WITH_CUDA).
#ifdef FUSEDRNN_WITH_CUDA

#include "checks.h"
#include "ops.h"

namespace fusedrnn {
namespace {

void check_cuda_backend(const std::string& backend, const char* op) {
  switch (parse_backend(backend)) {
    case Backend::Auto:
    case Backend::Cuda: return;
    case Backend::Cpu:
    case Backend::Simt:
      TORCH_CHECK(false, op, ": backend '", backend,
                  "' runs on CPU tensors only, got CUDA tensors (move them with .cpu() or use "
                  "backend 'auto' or 'cuda')");
  }
}

// Packed sequences and the LSTM projection run on the CPU backend only, for now.
void check_cuda_features(const char* op, const OptTensor& batch_sizes, const OptTensor& w_hr = {}) {
  TORCH_CHECK_NOT_IMPLEMENTED(!batch_sizes, op,
                              ": packed input (batch_sizes) is not supported by backend 'cuda' "
                              "yet; pad the sequence or use CPU tensors");
  TORCH_CHECK_NOT_IMPLEMENTED(!w_hr, op,
                              ": the LSTM projection (w_hr) is not supported by backend 'cuda' "
                              "yet; use CPU tensors");
}

void check_cuda_dtype(const char* op, const Tensor& x) {
  auto d = x.scalar_type();
  TORCH_CHECK(d == at::kFloat || d == at::kDouble || d == at::kHalf || d == at::kBFloat16, op,
              ": unsupported dtype ", d, " (float32, float64, float16, bfloat16)");
}

T5 lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                std::string backend, const OptTensor& batch_sizes, const OptTensor& w_hr) {
  check_layer_inputs("lstm_forward", 4, x, h0, &c0, w_ih, w_hh, b_ih, b_hh, batch_sizes, w_hr);
  check_cuda_dtype("lstm_forward", x);
  check_cuda_backend(backend, "lstm_forward");
  check_cuda_features("lstm_forward", batch_sizes, w_hr);
  return cuda::lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse);
}

T7 lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& x,
                 const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                 const Tensor& y, const Tensor& gates, const Tensor& cells, bool reverse,
                 std::string backend, const OptTensor& batch_sizes, const OptTensor& w_hr) {
  auto s = check_layer_inputs("lstm_backward", 4, x, h0, &c0, w_ih, w_hh, {}, {}, batch_sizes,
                              w_hr);
  check_cuda_dtype("lstm_backward", x);
  check_grad("lstm_backward", dy, s.rows(s.P), x, "dy");
  check_grad("lstm_backward", dh_n, {s.B, s.P}, x, "dh_n");
  check_grad("lstm_backward", dc_n, {s.B, s.H}, x, "dc_n");
  check_grad("lstm_backward", y, s.rows(s.P), x, "y");
  check_grad("lstm_backward", gates, s.rows(4 * s.H), x, "gates");
  check_grad("lstm_backward", cells, s.rows(s.H), x, "cells");
  check_cuda_backend(backend, "lstm_backward");
  check_cuda_features("lstm_backward", batch_sizes, w_hr);
  auto [dx, dh0, dc0, dw_ih, dw_hh, db] =
      cuda::lstm_backward(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells, reverse);
  return {dx, dh0, dc0, dw_ih, dw_hh, db, at::empty({0}, x.options())};  // dw_hr: no projection
}

T4 gru_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
               const OptTensor& b_ih, const OptTensor& b_hh, bool reverse, std::string backend,
               const OptTensor& batch_sizes) {
  check_layer_inputs("gru_forward", 3, x, h0, nullptr, w_ih, w_hh, b_ih, b_hh, batch_sizes);
  check_cuda_dtype("gru_forward", x);
  check_cuda_backend(backend, "gru_forward");
  check_cuda_features("gru_forward", batch_sizes);
  return cuda::gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse);
}

T6 gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, const Tensor& gates,
                const Tensor& ghn, bool reverse, std::string backend,
                const OptTensor& batch_sizes) {
  auto s = check_layer_inputs("gru_backward", 3, x, h0, nullptr, w_ih, w_hh, {}, {}, batch_sizes);
  check_cuda_dtype("gru_backward", x);
  check_grad("gru_backward", dy, s.rows(s.H), x, "dy");
  check_grad("gru_backward", dh_n, {s.B, s.H}, x, "dh_n");
  check_grad("gru_backward", y, s.rows(s.H), x, "y");
  check_grad("gru_backward", gates, s.rows(3 * s.H), x, "gates");
  check_grad("gru_backward", ghn, s.rows(s.H), x, "ghn");
  check_cuda_backend(backend, "gru_backward");
  check_cuda_features("gru_backward", batch_sizes);
  return cuda::gru_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, reverse);
}

bool parse_relu(const std::string& nl, const char* op) {
  TORCH_CHECK(nl == "tanh" || nl == "relu", op, ": nonlinearity must be 'tanh' or 'relu', got '",
              nl, "'");
  return nl == "relu";
}

T2 rnn_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
               const OptTensor& b_ih, const OptTensor& b_hh, std::string nonlinearity,
               bool reverse, std::string backend, const OptTensor& batch_sizes) {
  check_layer_inputs("rnn_forward", 1, x, h0, nullptr, w_ih, w_hh, b_ih, b_hh, batch_sizes);
  check_cuda_dtype("rnn_forward", x);
  bool relu = parse_relu(nonlinearity, "rnn_forward");
  check_cuda_backend(backend, "rnn_forward");
  check_cuda_features("rnn_forward", batch_sizes);
  return cuda::rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse);
}

T5 rnn_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, std::string nonlinearity,
                bool reverse, std::string backend, const OptTensor& batch_sizes) {
  auto s = check_layer_inputs("rnn_backward", 1, x, h0, nullptr, w_ih, w_hh, {}, {}, batch_sizes);
  check_cuda_dtype("rnn_backward", x);
  check_grad("rnn_backward", dy, s.rows(s.H), x, "dy");
  check_grad("rnn_backward", dh_n, {s.B, s.H}, x, "dh_n");
  check_grad("rnn_backward", y, s.rows(s.H), x, "y");
  bool relu = parse_relu(nonlinearity, "rnn_backward");
  check_cuda_backend(backend, "rnn_backward");
  check_cuda_features("rnn_backward", batch_sizes);
  return cuda::rnn_backward(dy, dh_n, x, h0, w_ih, w_hh, y, relu, reverse);
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CUDA, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
  m.impl("rnn_forward", &rnn_forward);
  m.impl("rnn_backward", &rnn_backward);
}

}  // namespace fusedrnn

#endif  // FUSEDRNN_WITH_CUDA
