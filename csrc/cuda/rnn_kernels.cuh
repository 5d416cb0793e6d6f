// Elman RNN (tanh or relu) stepwise kernels: one launch per time step, forward and backward.
//
// One step processes its n live rows (packed input: batch_sizes[t]; dense: B), passed as
// params.B; the grid is sized for n. Rows are a prefix 0..n-1 of the batch.
//
// Forward step (grid ceil(n/BT) x ceil(H/HT), RnnForwardCfg::kThreads threads, kSmemBytes):
//   h_out[b,k] = act(xproj[b,k] + sum_j h_prev(b,j) W_hh[k,j])
//   xproj [n,H] x_t W_ih^T + b_ih + b_hh; h_prev(b) = h_prev[b] for b < n_prev (previous
//   processed step's rows; null iff n_prev == 0) else h0[b] ([B,H]); h_prev must not alias
//   h_out; w_hh [H,H]; h_out [n,H] = y[t], fully written.
// Backward step:
//   dh[b,k] = dy[b,k] + (b < n_next ? sum_j da_next[b,j] W_hh[j,k] : dh_n[b,k]);
//   da_out = act'(h_t) * dh
//   dy, h_t (= y[t]) [n,H]; dh_n [B,H] or null; n_next: rows of da_next [n_next,H] read (<= n; 0
//   on the first processed step; a row b >= n_next is at its last step and takes dh_n[b]);
//   da_next must not alias da_out; da_out [n,H] fully written.
// All tensors contiguous row-major, input dtype S. Activation: forward template argument kAct,
// backward runtime flag relu (0 = tanh, 1 = relu).
//
// Tiles (B=64, H=512): BT=16 x HT=16 both ways, 32 x 4 = 128 blocks; a block multiplies
// 16 x 512 by 512 x 16 (0.26 MFLOP; 33.5 MFLOP per step in total) and stages 32 KB of h (or da)
// and 32 KB of W_hh (8 MB from L2 per step over all blocks).
// Precision: as lstm_kernels.cuh (tensor-core shapes from cuda/tile_mma.cuh for bf16/fp16 and
// TF32 fp32, FFMA for fp64 and IEEE fp32), with the tiles below.
#pragma once

#include "cells/cells.h"
#include "cuda/tile_mma.cuh"

namespace fusedrnn {
namespace kern {

template <class S>
struct RnnForwardParams {
  const S* xproj;
  const S* h_prev;
  const S* h0;
  const S* w_hh;
  S* h_out;
  int B, H, n_prev;  // B: rows of this step
};

template <class S>
struct RnnBackwardParams {
  const S* dy;
  const S* dh_n;
  const typename AccType<S>::type* da_next;  // accumulation type: the recurrence stays fp32 for fp16/bf16
  const S* w_hh;
  const S* h_t;
  typename AccType<S>::type* da_out;  // accumulation type
  int B, H, relu, n_next;  // B: rows of this step
};

// TileShape<S, BT, HT, NG, RB, RN, KSPLIT, KC>, MmaShape<S, BT, HT, NG, WM, WN, KSPLIT, KC, P>
template <class S, Prec P>
using RnnForwardCfg = Square16Shape<S, P>;
template <class S, Prec P>
using RnnBackwardCfg = Square16Shape<S, P>;

// The forward activation is a template argument: with a runtime choice, ptxas keeps a few bytes of
// the fp64 tanh slow-path call on the stack (spills); the backward needs no transcendental.
template <class Cfg, cells::Act kAct>
__global__ void FRNN_LAUNCH_BOUNDS(Cfg::kThreads)
    rnn_forward_step_kernel(RnnForwardParams<typename Cfg::scalar_t> p) {
  using S = typename Cfg::scalar_t;
  using A = typename Cfg::acc_t;
  FRNN_DYNAMIC_SMEM(A, smem);
  const int H = p.H, k0 = int(blockIdx.y) * Cfg::HT, b0 = int(blockIdx.x) * Cfg::BT;
  const int split = p.n_prev - b0;
  tile_product<Cfg, WView::kRows>(split > 0 ? p.h_prev + (size_t)b0 * H : nullptr,
                                  p.h0 + (size_t)b0 * H, split, H, p.B - b0, p.w_hh, H, H, k0, H,
                                  smem);
  for (int e = int(threadIdx.x); e < Cfg::BT * Cfg::HT; e += Cfg::kThreads) {
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, k = k0 + kl;
    if (b >= p.B || k >= H) continue;
    const size_t ek = (size_t)b * H + k;
    const A a = tile_sum<Cfg>(smem, bl, kl) + to_acc<A>(p.xproj[ek]);
    p.h_out[ek] = from_acc<S>(cells::rnn_forward<A>(kAct, a));
  }
}

template <class Cfg>
__global__ void FRNN_LAUNCH_BOUNDS(Cfg::kThreads)
    rnn_backward_step_kernel(RnnBackwardParams<typename Cfg::scalar_t> p) {
  using S = typename Cfg::scalar_t;
  using A = typename Cfg::acc_t;
  FRNN_DYNAMIC_SMEM(A, smem);
  const int H = p.H, k0 = int(blockIdx.y) * Cfg::HT, b0 = int(blockIdx.x) * Cfg::BT;
  const cells::Act act = p.relu ? cells::Act::Relu : cells::Act::Tanh;
  const int nn = p.n_next - b0;  // rows of this block with a next step
  tile_product<Cfg, WView::kColumns, A>(nn > 0 ? p.da_next + (size_t)b0 * H : nullptr, nullptr, nn,
                                     H, nn, p.w_hh, H, H, k0, nn > 0 ? H : 0, smem);
  for (int e = int(threadIdx.x); e < Cfg::BT * Cfg::HT; e += Cfg::kThreads) {
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, k = k0 + kl;
    if (b >= p.B || k >= H) continue;
    const size_t ek = (size_t)b * H + k;
    A dh = tile_sum<Cfg>(smem, bl, kl) + to_acc<A>(p.dy[ek]);
    if (b >= p.n_next && p.dh_n) dh += to_acc<A>(p.dh_n[ek]);
    p.da_out[ek] = cells::rnn_backward<A>(act, to_acc<A>(p.h_t[ek]), dh);
  }
}

}  // namespace kern
}  // namespace fusedrnn
