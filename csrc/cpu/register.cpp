// CPU dispatch of the fusedrnn ops: validates inputs, then routes to the CPU backend
// (backend "auto" or "cpu") or to the SIMT execution of the CUDA kernels (backend "simt").
#include "checks.h"
#include "ops.h"

namespace fusedrnn {
namespace {

bool use_simt(const std::string& backend, const char* op, const OptTensor& batch_sizes,
              const OptTensor& w_hr = {}) {
  switch (parse_backend(backend)) {
    case Backend::Simt:
      TORCH_CHECK_NOT_IMPLEMENTED(!batch_sizes, op,
                                  ": packed input (batch_sizes) is not supported by backend "
                                  "'simt' yet; use 'cpu'");
      TORCH_CHECK_NOT_IMPLEMENTED(!w_hr, op,
                                  ": the LSTM projection (w_hr) is not supported by backend "
                                  "'simt' yet; use 'cpu'");
      return true;
    case Backend::Cuda:
      TORCH_CHECK(false, op, ": backend 'cuda' needs CUDA tensors, got CPU tensors");
    default: return false;
  }
}

void check_cpu_dtype(const char* op, const Tensor& x) {
  auto d = x.scalar_type();
  TORCH_CHECK(d == at::kFloat || d == at::kDouble || d == at::kHalf || d == at::kBFloat16, op,
              ": unsupported dtype ", d, " (float32, float64, float16, bfloat16)");
}

T5 lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                std::string backend, const OptTensor& batch_sizes, const OptTensor& w_hr) {
  check_layer_inputs("lstm_forward", 4, x, h0, &c0, w_ih, w_hh, b_ih, b_hh, batch_sizes, w_hr);
  check_cpu_dtype("lstm_forward", x);
  if (use_simt(backend, "lstm_forward", batch_sizes, w_hr))
    return simt::lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse);
  return cpu::lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, w_hr);
}

T7 lstm_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& x,
                 const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                 const Tensor& y, const Tensor& gates, const Tensor& cells, bool reverse,
                 std::string backend, const OptTensor& batch_sizes, const OptTensor& w_hr) {
  auto s = check_layer_inputs("lstm_backward", 4, x, h0, &c0, w_ih, w_hh, {}, {}, batch_sizes,
                              w_hr);
  check_grad("lstm_backward", dy, s.rows(s.P), x, "dy");
  check_grad("lstm_backward", dh_n, {s.B, s.P}, x, "dh_n");
  check_grad("lstm_backward", dc_n, {s.B, s.H}, x, "dc_n");
  check_grad("lstm_backward", y, s.rows(s.P), x, "y");
  check_grad("lstm_backward", gates, s.rows(4 * s.H), x, "gates");
  check_grad("lstm_backward", cells, s.rows(s.H), x, "cells");
  if (use_simt(backend, "lstm_backward", batch_sizes, w_hr)) {
    auto [dx, dh0, dc0, dw_ih, dw_hh, db] =
        simt::lstm_backward(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells, reverse);
    return {dx, dh0, dc0, dw_ih, dw_hh, db, at::empty({0}, x.options())};
  }
  return cpu::lstm_backward(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells, reverse,
                            batch_sizes, w_hr);
}

T4 gru_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
               const OptTensor& b_ih, const OptTensor& b_hh, bool reverse, std::string backend,
               const OptTensor& batch_sizes) {
  check_layer_inputs("gru_forward", 3, x, h0, nullptr, w_ih, w_hh, b_ih, b_hh, batch_sizes);
  check_cpu_dtype("gru_forward", x);
  if (use_simt(backend, "gru_forward", batch_sizes))
    return simt::gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse);
  return cpu::gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes);
}

T6 gru_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, const Tensor& gates,
                const Tensor& ghn, bool reverse, std::string backend,
                const OptTensor& batch_sizes) {
  auto s = check_layer_inputs("gru_backward", 3, x, h0, nullptr, w_ih, w_hh, {}, {}, batch_sizes);
  check_grad("gru_backward", dy, s.rows(s.H), x, "dy");
  check_grad("gru_backward", dh_n, {s.B, s.H}, x, "dh_n");
  check_grad("gru_backward", y, s.rows(s.H), x, "y");
  check_grad("gru_backward", gates, s.rows(3 * s.H), x, "gates");
  check_grad("gru_backward", ghn, s.rows(s.H), x, "ghn");
  if (use_simt(backend, "gru_backward", batch_sizes))
    return simt::gru_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, reverse);
  return cpu::gru_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, reverse, batch_sizes);
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
  check_cpu_dtype("rnn_forward", x);
  bool relu = parse_relu(nonlinearity, "rnn_forward");
  if (use_simt(backend, "rnn_forward", batch_sizes))
    return simt::rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse);
  return cpu::rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, batch_sizes);
}

T5 rnn_backward(const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                const Tensor& w_ih, const Tensor& w_hh, const Tensor& y, std::string nonlinearity,
                bool reverse, std::string backend, const OptTensor& batch_sizes) {
  auto s = check_layer_inputs("rnn_backward", 1, x, h0, nullptr, w_ih, w_hh, {}, {}, batch_sizes);
  check_grad("rnn_backward", dy, s.rows(s.H), x, "dy");
  check_grad("rnn_backward", dh_n, {s.B, s.H}, x, "dh_n");
  check_grad("rnn_backward", y, s.rows(s.H), x, "y");
  bool relu = parse_relu(nonlinearity, "rnn_backward");
  if (use_simt(backend, "rnn_backward", batch_sizes))
    return simt::rnn_backward(dy, dh_n, x, h0, w_ih, w_hh, y, relu, reverse);
  return cpu::rnn_backward(dy, dh_n, x, h0, w_ih, w_hh, y, relu, reverse, batch_sizes);
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
  m.impl("rnn_forward", &rnn_forward);
  m.impl("rnn_backward", &rnn_backward);
}

}  // namespace fusedrnn
