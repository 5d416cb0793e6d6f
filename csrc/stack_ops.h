// The layers of a unidirectional LSTM / GRU stack's forward in one op (inference: nothing saved
// for backward), shared by the CPU and CUDA dispatch (csrc/cpu/register.cpp,
// csrc/cuda/register.cpp).
//
// Contract of fusedrnn::lstm_forward_stack / gru_forward_stack: x [T,B,I] (packed: [N,I] with
// batch_sizes); weights torch.nn's flat list of L >= 1 layers, (w_ih, w_hh) a layer, then
// (b_ih, b_hh) when has_biases (layers above the first take the layer below's y: w_ih [G*H,H]);
// h0 (and c0) [L,B,H]; no projection, no dropout between layers. Returns the last layer's y
// [T,B,H] (packed [N,H]) and h_n (and c_n) [L,B,H]: the values of the single-layer forwards
// (save = false) run one above the other. Where the persistent kernels run and the layers fit as
// a wavefront (up to 4 layers a launch, layer l one step behind layer l-1), a launch takes as
// many layers as fit; the rest run a layer at a time (lstm_stack / gru_stack: the body both
// dispatches share).
#pragma once

#include <algorithm>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>

#include "validate.h"

namespace fusedrnn {

constexpr int kMaxWaveLayers = 4;  // persistent_kernels.cuh kMaxGroups

// The number of layers in `weights` (clear errors for a list that is not whole layers, or
// states that are not one row a layer).
inline int stack_layers(const char* op, at::TensorList weights, bool has_biases,
                        const at::Tensor& h0, const at::Tensor* c0) {
  const size_t per = has_biases ? 4 : 2;
  TORCH_CHECK(!weights.empty() && weights.size() % per == 0, op, ": weights must be whole ",
              "layers of ", per, " tensors (w_ih, w_hh", has_biases ? ", b_ih, b_hh" : "",
              "), got ", weights.size());
  const int64_t L = int64_t(weights.size() / per);
  TORCH_CHECK(h0.dim() == 3 && h0.size(0) == L, op, ": h0 must be [", L,
              ", B, H] (one row a layer), got ", h0.sizes());
  TORCH_CHECK(!c0 || (c0->dim() == 3 && c0->size(0) == L), op, ": c0 must be [", L,
              ", B, H] (one row a layer), got ", c0->sizes());
  return int(L);
}

// The layers one wavefront launch takes, of `remaining` (< 2: none): the most (at most
// kMaxWaveLayers) for which plan(n) fits, and at least `least` (wave_min_layers).
template <class Plan>
int most_wave_layers(int remaining, int least, Plan plan) {
  for (int n = std::min(kMaxWaveLayers, remaining); n >= least; --n)
    if (plan(n).fits) return n;
  return 1;
}

// The body of both dispatches: layer l0 on, `layers(sizes, remaining)` says how many one
// wavefront launch takes (< 2: none), `wave(x, h0, c0, weights)` runs them (c0 undefined for the
// GRU) -> (y, h_n, c_n); else `single(x, l)` runs layer l alone -> (y, h_n [B,H], c_n [B,H]).
template <class Layers, class Wave, class Single>
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_stack(
    const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0, at::TensorList weights,
    bool has_biases, const Sizes& s, int L, Layers layers, Wave wave, Single single) {
  const int per = has_biases ? 4 : 2;
  std::vector<at::Tensor> h_n, c_n;
  at::Tensor y = x;
  for (int l = 0; l < L;) {
    const int n = std::min(layers(s, L - l), L - l);
    if (n >= 2) {
      auto r = wave(y, h0.narrow(0, l, n), c0.defined() ? c0.narrow(0, l, n) : at::Tensor(),
                    weights.slice(size_t(l * per), size_t(n * per)));
      y = std::get<0>(r);
      h_n.push_back(std::get<1>(r));
      if (c0.defined()) c_n.push_back(std::get<2>(r));
      l += n;
    } else {
      auto r = single(y, l);
      y = std::get<0>(r);
      h_n.push_back(std::get<1>(r).unsqueeze(0));
      if (c0.defined()) c_n.push_back(std::get<2>(r).unsqueeze(0));
      l += 1;
    }
  }
  return {y, at::cat(h_n), c0.defined() ? at::cat(c_n) : at::Tensor()};
}

template <class Layers, class Wave, class Single>
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_stack(
    const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0, at::TensorList weights,
    bool has_biases, const OptTensor& batch_sizes, Layers layers, Wave wave, Single single) {
  const char* op = "lstm_forward_stack";
  const int L = stack_layers(op, weights, has_biases, h0, &c0);
  const int per = has_biases ? 4 : 2;
  auto b = [&](int l, int k) {
    return has_biases ? OptTensor(weights[l * per + 2 + k]) : OptTensor();
  };
  const Sizes s = validate_lstm_forward(x, h0[0], c0[0], weights[0], weights[1], b(0, 0),
                                        b(0, 1), batch_sizes, {});
  return forward_stack(x, h0, c0, weights, has_biases, s, L, layers, wave,
                       [&](const at::Tensor& xl, int l) {
    return single(xl, h0[l], c0[l], weights[l * per], weights[l * per + 1], b(l, 0), b(l, 1));
  });
}

template <class Layers, class Wave, class Single>
std::tuple<at::Tensor, at::Tensor> gru_stack(const at::Tensor& x, const at::Tensor& h0,
                                             at::TensorList weights, bool has_biases,
                                             const OptTensor& batch_sizes, Layers layers,
                                             Wave wave, Single single) {
  const char* op = "gru_forward_stack";
  const int L = stack_layers(op, weights, has_biases, h0, nullptr);
  const int per = has_biases ? 4 : 2;
  auto b = [&](int l, int k) {
    return has_biases ? OptTensor(weights[l * per + 2 + k]) : OptTensor();
  };
  const Sizes s =
      validate_gru_forward(x, h0[0], weights[0], weights[1], b(0, 0), b(0, 1), batch_sizes);
  auto r = forward_stack(
      x, h0, at::Tensor(), weights, has_biases, s, L, layers,
      [&](const at::Tensor& xl, const at::Tensor& h, const at::Tensor&, at::TensorList w) {
        auto o = wave(xl, h, w);
        return std::make_tuple(std::get<0>(o), std::get<1>(o), at::Tensor());
      },
      [&](const at::Tensor& xl, int l) {
        auto o = single(xl, h0[l], weights[l * per], weights[l * per + 1], b(l, 0), b(l, 1));
        return std::make_tuple(std::get<0>(o), std::get<1>(o), at::Tensor());
      });
  return {std::get<0>(r), std::get<1>(r)};
}

}  // namespace fusedrnn
