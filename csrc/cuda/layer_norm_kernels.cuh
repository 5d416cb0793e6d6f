// The pieces the layer-normalised cells' stepwise kernels share (cuda/ln_lstm_kernels.cuh,
// cuda/ln_gru_kernels.cuh). Layer norm needs a whole row's statistics, so a step is a product
// kernel (tiles of the recurrent product, the one-column-per-unit shape of the RNN kernels:
// Square16Shape, tensor cores as the other cells) and a row kernel (one block of kLnRowThreads
// threads per batch row, block_sum for the reductions over the row).
//
//   product kernel, forward step (n live rows, a prefix of the batch), grid ceil(n/BT) x
//   ceil(G*H/HT):
//     out[b*G*H + u] = sum_j h_prev(b,j) W_hh[u,j]      (accumulation type)
//     h_prev(b) = h_prev[b] for b < n_prev (null iff n_prev == 0) else h0[b]
//   product kernel, backward, grid ceil(n/BT) x ceil(H/HT):
//     out[b*H + k] = sum_u dgh[b,u] W_hh[u,k] + add[b*H + k]   (add nullable)
// All row pointers are the step's first row; tensors contiguous row-major.
#pragma once

#include "cells/layer_norm.h"
#include "cuda/tile_mma.cuh"

namespace fusedrnn {
namespace kern {

constexpr int kLnRowThreads = 256;

FRNN_DEVICE float rsqrt_(float x) { return rsqrtf(x); }
FRNN_DEVICE double rsqrt_(double x) { return rsqrt(x); }

// The sum of v over the block's kLnRowThreads threads (red: kLnRowThreads accumulators of
// shared memory, free again on return).
template <class A> FRNN_DEVICE A block_sum(A v, A* red) {
  const int t = int(threadIdx.x);
  red[t] = v;
  __syncthreads();
  for (int s = kLnRowThreads / 2; s > 0; s >>= 1) {
    if (t < s) red[t] += red[t + s];
    __syncthreads();
  }
  const A r = red[0];
  __syncthreads();
  return r;
}

template <class S>
struct LnProductParams {
  using A = typename AccType<S>::type;
  const S* h_prev;  // forward
  const S* h0;
  const A* dgh;  // backward
  const A* add;  // backward, nullable: added to the product ([B,H])
  const S* w_hh;
  A* out;
  int B, H, G, n_prev;  // G: gates (W_hh has G*H rows)
};

template <class S, Prec P>
using LnCfg = Square16Shape<S, P>;

template <class Cfg>
__global__ void FRNN_LAUNCH_BOUNDS(Cfg::kThreads)
    ln_product_kernel(LnProductParams<typename Cfg::scalar_t> p) {
  using A = typename Cfg::acc_t;
  FRNN_DYNAMIC_SMEM(A, smem);
  const int H = p.H, U = p.G * H, k0 = int(blockIdx.y) * Cfg::HT, b0 = int(blockIdx.x) * Cfg::BT;
  const int split = p.n_prev - b0;
  tile_product<Cfg, WView::kRows>(split > 0 ? p.h_prev + (size_t)b0 * H : nullptr,
                                  p.h0 + (size_t)b0 * H, split, H, p.B - b0, p.w_hh, H, U, k0, H,
                                  smem);
  for (int e = int(threadIdx.x); e < Cfg::BT * Cfg::HT; e += Cfg::kThreads) {
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, u = k0 + kl;
    if (b < p.B && u < U) p.out[(size_t)b * U + u] = tile_sum<Cfg>(smem, bl, kl);
  }
}

template <class Cfg>
__global__ void FRNN_LAUNCH_BOUNDS(Cfg::kThreads)
    ln_product_back_kernel(LnProductParams<typename Cfg::scalar_t> p) {
  using A = typename Cfg::acc_t;
  FRNN_DYNAMIC_SMEM(A, smem);
  const int H = p.H, G = p.G * H, k0 = int(blockIdx.y) * Cfg::HT, b0 = int(blockIdx.x) * Cfg::BT;
  const int rows = p.B - b0;
  tile_product<Cfg, WView::kColumns, A>(p.dgh + (size_t)b0 * G, nullptr, rows, G, rows, p.w_hh,
                                        H, H, k0, G, smem);
  for (int e = int(threadIdx.x); e < Cfg::BT * Cfg::HT; e += Cfg::kThreads) {
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, k = k0 + kl;
    if (b < p.B && k < H) {
      const size_t e = (size_t)b * H + k;
      p.out[e] = tile_sum<Cfg>(smem, bl, kl) + (p.add ? p.add[e] : A(0));
    }
  }
}

}  // namespace kern
}  // namespace fusedrnn
