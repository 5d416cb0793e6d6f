// Input validation shared by every backend of the ops (one layer, one direction).
//
// Shapes: x [T,B,I]; h0, c0 [B,H]; w_ih [G*H, I]; w_hh [G*H, H]; b_ih, b_hh [G*H] or absent,
// with G = 4 (LSTM), 3 (GRU), 1 (RNN). All on one device, one floating dtype. Every failed rule
// raises a c10::Error (RuntimeError in Python) that names the argument and the sizes.
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>
#include <vector>

namespace fusedrnn {

struct Sizes {
  int64_t T, B, I, H;
  bool packed;
  int64_t N;  // rows of x: T*B dense, sum(batch_sizes) packed
  int64_t P;  // size of h: the projection size (LSTM proj_size) or H
  // Shape of a per-row tensor with K features: [T,B,K] dense, [N,K] packed.
  std::vector<int64_t> rows(int64_t K) const {
    return packed ? std::vector<int64_t>{N, K} : std::vector<int64_t>{T, B, K};
  }
};

// Packed input (batch_sizes given): x is [N, I], the rows of the T steps one after another;
// batch_sizes [T] int64 on the CPU, positive and non-increasing, summing to N; B = batch_sizes[0].
inline Sizes check_layer_inputs(const char* op, int64_t G, const at::Tensor& x,
                                const at::Tensor& h0, const at::Tensor* c0,
                                const at::Tensor& w_ih, const at::Tensor& w_hh,
                                const c10::optional<at::Tensor>& b_ih,
                                const c10::optional<at::Tensor>& b_hh,
                                const c10::optional<at::Tensor>& batch_sizes = {},
                                const c10::optional<at::Tensor>& w_hr = {}) {
  int64_t T, B, I, N;
  if (batch_sizes) {
    const auto& bs = *batch_sizes;
    TORCH_CHECK(bs.dim() == 1 && bs.scalar_type() == at::kLong && bs.device().is_cpu(), op,
                ": batch_sizes must be a 1-D int64 CPU tensor, got ", bs.scalar_type(), " ",
                bs.sizes(), " on ", bs.device());
    TORCH_CHECK(x.dim() == 2, op, ": packed x must be [N, I], got ", x.sizes());
    auto b = bs.contiguous();
    const int64_t* p = b.data_ptr<int64_t>();
    T = b.numel();
    TORCH_CHECK(T >= 1, op, ": batch_sizes is empty");
    int64_t sum = 0;
    for (int64_t t = 0; t < T; ++t) {
      TORCH_CHECK(p[t] >= 1 && (t == 0 || p[t] <= p[t - 1]), op,
                  ": batch_sizes must be positive and non-increasing, got ", bs);
      sum += p[t];
    }
    TORCH_CHECK(sum == x.size(0), op, ": batch_sizes sum to ", sum, " but x has ", x.size(0),
                " rows");
    B = p[0], I = x.size(1), N = sum;
  } else {
    TORCH_CHECK(x.dim() == 3, op, ": x must be [T, B, I], got ", x.dim(), " dims ", x.sizes());
    T = x.size(0), B = x.size(1), I = x.size(2), N = T * B;
  }
  TORCH_CHECK(w_hh.dim() == 2, op, ": w_hh must be 2-D [", G, "*H, H], got ", w_hh.sizes());
  // With a projection (LSTM proj_size): w_hr [P, H], w_hh [4H, P], h0 [B, P]; else P = H.
  const int64_t P = w_hh.size(1);
  int64_t H = P;
  if (w_hr) {
    TORCH_CHECK(w_hr->dim() == 2 && w_hr->size(0) == P && w_hr->size(1) >= 1, op,
                ": w_hr must be [P, H] with P = w_hh.size(1) = ", P, ", got ", w_hr->sizes());
    H = w_hr->size(1);
  }
  TORCH_CHECK(P >= 1, op, ": hidden size must be >= 1");
  TORCH_CHECK(w_hh.size(0) == G * H, op, ": w_hh must be [", G, "*H, ", P, "] = [", G * H, ", ",
              P, "], got ", w_hh.sizes());
  TORCH_CHECK(B >= 1 && I >= 1, op, ": x must have B >= 1 and I >= 1, got ", x.sizes());
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) == G * H && w_ih.size(1) == I, op,
              ": w_ih must be [", G * H, ", ", I, "] for x ", x.sizes(), " and H = ", H, ", got ",
              w_ih.sizes());
  TORCH_CHECK(h0.dim() == 2 && h0.size(0) == B && h0.size(1) == P, op, ": h0 must be [", B, ", ",
              P, "], got ", h0.sizes());
  if (c0)
    TORCH_CHECK(c0->dim() == 2 && c0->size(0) == B && c0->size(1) == H, op, ": c0 must be [", B,
                ", ", H, "], got ", c0->sizes());
  TORCH_CHECK(b_ih.has_value() == b_hh.has_value(), op,
              ": b_ih and b_hh must be both given or both absent");

  const auto dtype = x.scalar_type();
  const auto device = x.device();
  TORCH_CHECK(at::isFloatingType(dtype), op, ": x must be floating point, got ", dtype);
  auto same = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " has dtype ", t.scalar_type(),
                " but x has ", dtype);
    TORCH_CHECK(t.device() == device, op, ": ", name, " is on ", t.device(), " but x is on ",
                device);
  };
  same(h0, "h0");
  if (c0) same(*c0, "c0");
  same(w_ih, "w_ih");
  same(w_hh, "w_hh");
  if (w_hr) same(*w_hr, "w_hr");
  if (b_ih) {
    for (auto* p : {&*b_ih, &*b_hh}) {
      const char* name = p == &*b_ih ? "b_ih" : "b_hh";
      TORCH_CHECK(p->dim() == 1 && p->size(0) == G * H, op, ": ", name, " must be [", G * H,
                  "], got ", p->sizes());
      same(*p, name);
    }
  }
  return {T, B, I, H, batch_sizes.has_value(), N, P};
}

// Gradients arriving at backward must match the forward outputs.
inline void check_grad(const char* op, const at::Tensor& g, at::IntArrayRef shape,
                       const at::Tensor& like, const char* name) {
  TORCH_CHECK(g.sizes() == shape, op, ": ", name, " must be ", shape, ", got ", g.sizes());
  TORCH_CHECK(g.scalar_type() == like.scalar_type() && g.device() == like.device(), op, ": ",
              name, " must be ", like.scalar_type(), " on ", like.device());
}

// The backend names an op accepts. "auto": CUDA kernels for CUDA tensors, CPU backend for CPU.
enum class Backend { Auto, Cpu, Simt, Cuda };

inline Backend parse_backend(const std::string& s) {
  if (s == "auto") return Backend::Auto;
  if (s == "cpu") return Backend::Cpu;
  if (s == "simt") return Backend::Simt;
  if (s == "cuda") return Backend::Cuda;
  TORCH_CHECK(false, "fusedrnn: unknown backend '", s, "' (expected auto, cpu, simt or cuda)");
}

}  // namespace fusedrnn
