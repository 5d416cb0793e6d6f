// Per-element cell math, forward and backward: the one copy shared by every backend
// (csrc/cpu loops, csrc/cuda kernels under nvcc and under the SIMT layer).
//
// Contract: every function works on one (batch row, hidden unit) pair in the accumulation type
// T (float for fp32/fp16/bf16, double for fp64) -- or, on the CPU, on a SIMD vector of such pairs
// (T = at::vec::Vectorized<float|double>, enabled by defining FRNN_CELLS_VECTORIZED before
// including this header: only +, -, *, / and the helpers below are used, so the same source
// serves both). Inputs are pre-activations or saved activations as named; nothing here reads or
// writes memory beyond its reference arguments. Gate order follows torch.nn: LSTM i,f,g,o;
// GRU r,z,n (reset applied after the recurrent matmul).
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define FRNN_HD __host__ __device__ __forceinline__
#else
// static: the CPU backend compiles these for several instruction sets in different translation
// units; internal linkage keeps the linker from merging an AVX2 copy into the generic one.
#define FRNN_HD static inline
#endif

#ifdef FRNN_CELLS_VECTORIZED
#include <ATen/cpu/vec/vec.h>
#endif

namespace fusedrnn {
namespace cells {

FRNN_HD float exp_(float x) { return expf(x); }
FRNN_HD double exp_(double x) { return exp(x); }
FRNN_HD float tanh_(float x) { return tanhf(x); }
FRNN_HD double tanh_(double x) { return tanh(x); }
FRNN_HD float relu_(float x) { return x > 0.f ? x : 0.f; }
FRNN_HD double relu_(double x) { return x > 0. ? x : 0.; }
// dh where h > 0, else 0 (relu'(0) = 0, as in PyTorch).
FRNN_HD float relu_grad_(float h, float dh) { return h > 0.f ? dh : 0.f; }
FRNN_HD double relu_grad_(double h, double dh) { return h > 0. ? dh : 0.; }

#ifdef FRNN_CELLS_VECTORIZED
template <class S> FRNN_HD at::vec::Vectorized<S> exp_(const at::vec::Vectorized<S>& x) {
  return x.exp();
}
template <class S> FRNN_HD at::vec::Vectorized<S> tanh_(const at::vec::Vectorized<S>& x) {
  return x.tanh();
}
template <class S> FRNN_HD at::vec::Vectorized<S> relu_(const at::vec::Vectorized<S>& x) {
  return at::vec::clamp_min(x, at::vec::Vectorized<S>(S(0)));
}
template <class S>
FRNN_HD at::vec::Vectorized<S> relu_grad_(const at::vec::Vectorized<S>& h,
                                          const at::vec::Vectorized<S>& dh) {
  using V = at::vec::Vectorized<S>;
  return V::blendv(V(S(0)), dh, h > V(S(0)));
}
#endif

// 1/(1+e^-x): e^-x overflows to inf for very negative x, giving exactly 0 (no NaN).
template <class T> FRNN_HD T sigmoid(T x) { return T(1) / (T(1) + exp_(-x)); }

// ---------------------------------------------------------------- LSTM
// a*: gate pre-activations (x W_ih^T + b_ih + h W_hh^T + b_hh). Outputs the activations
// (saved for backward), the new cell state c and hidden state h.
template <class T>
FRNN_HD void lstm_forward(T ai, T af, T ag, T ao, T c_prev,
                          T& i, T& f, T& g, T& o, T& c, T& h) {
  i = sigmoid(ai);
  f = sigmoid(af);
  g = tanh_(ag);
  o = sigmoid(ao);
  c = f * c_prev + i * g;
  h = o * tanh_(c);
}

// dh: total gradient reaching h_t (output + recurrence); dc: gradient reaching c_t from step t+1.
// Outputs the pre-activation gradients and the gradient for c_{t-1}.
template <class T>
FRNN_HD void lstm_backward(T i, T f, T g, T o, T c, T c_prev, T dh, T dc,
                           T& dai, T& daf, T& dag, T& dao, T& dc_prev) {
  const T tc = tanh_(c);
  const T dct = dc + dh * o * (T(1) - tc * tc);
  dao = dh * tc * o * (T(1) - o);
  dai = dct * g * i * (T(1) - i);
  daf = dct * c_prev * f * (T(1) - f);
  dag = dct * i * (T(1) - g * g);
  dc_prev = dct * f;
}

// ---------------------------------------------------------------- GRU (reset-after)
// x*: input projections with b_ih; h*: recurrent projections with b_hh. hn (= W_hn h + b_hn) is
// saved because backward needs it for dr.
template <class T>
FRNN_HD void gru_forward(T xr, T xz, T xn, T hr, T hz, T hn, T h_prev,
                         T& r, T& z, T& n, T& h) {
  r = sigmoid(xr + hr);
  z = sigmoid(xz + hz);
  n = tanh_(xn + r * hn);
  h = (T(1) - z) * n + z * h_prev;
}

// dh: total gradient reaching h_t. Outputs the gradients of the input-side pre-activations
// (dxr, dxz, dxn), of the recurrent-side ones (dhr = dxr, dhz = dxz, dhn), and the direct
// part of dh_{t-1} that does not go through W_hh.
template <class T>
FRNN_HD void gru_backward(T r, T z, T n, T hn, T h_prev, T dh,
                          T& dxr, T& dxz, T& dxn, T& dhn, T& dh_prev_direct) {
  const T dn = dh * (T(1) - z);
  const T dz = dh * (h_prev - n);
  dxn = dn * (T(1) - n * n);
  dhn = dxn * r;
  dxr = dxn * hn * r * (T(1) - r);
  dxz = dz * z * (T(1) - z);
  dh_prev_direct = dh * z;
}

// ---------------------------------------------------------------- Elman RNN
enum class Act { Tanh = 0, Relu = 1 };

template <class T> FRNN_HD T rnn_forward(Act act, T a) {
  return act == Act::Tanh ? tanh_(a) : relu_(a);
}

// h: the saved output h_t = act(a).
template <class T> FRNN_HD T rnn_backward(Act act, T h, T dh) {
  return act == Act::Tanh ? dh * (T(1) - h * h) : relu_grad_(h, dh);
}

}  // namespace cells
}  // namespace fusedrnn
