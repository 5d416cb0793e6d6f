// GRU (reset-after, gates r,z,n) stepwise kernels: one launch per time step, forward and backward.
//
// One step processes its n live rows (packed input: batch_sizes[t]; dense: B), passed as
// params.B; the grid is sized for n. Rows are a prefix 0..n-1 of the batch.
//
// Forward step (grid ceil(n/BT) x ceil(H/HT), GruForwardCfg::kThreads threads, kSmemBytes):
//   hp[b, g*H+k] = sum_j h_prev(b, j) W_hh[g*H+k, j] + b_hh[g*H+k]      (recurrent part, g = r,z,n)
//   cells::gru_forward(xproj r,z,n, hp r,z,n, h_prev(b)) -> gates_out (r,z,n), ghn_out (= hp_n), h_out
//   xproj [n,3H] x_t W_ih^T + b_ih (b_hh is NOT folded in: the n gate needs it inside r * (...))
//   h_prev(b) = h_prev[b] for b < n_prev (previous processed step's rows; null iff n_prev == 0)
//   else h0[b] ([B,H]); h_prev must not alias h_out; w_hh [3H,H]; b_hh [3H] or null
//   h_out [n,H], gates_out [n,3H], ghn_out [n,H]: y[t], gates[t], ghn[t], fully written
//   (gates_out and ghn_out may be null: not stored, a forward without backward)
// Backward step:
//   dh[b,k] = dy[b,k] + dh_direct[b,k] + (b < n_next ? sum_j dah_next[b, j] W_hh[j, k] : 0)
//   cells::gru_backward -> dax_out [n,3H] = (dxr, dxz, dxn)   (gradient of x-side pre-activations)
//                          dah_out [n,3H] = (dxr, dxz, dhn)   (gradient of h-side pre-activations)
//                          dh_direct = z * dh                  (the part of dh_{t-1} not via W_hh)
//   dh_direct [B,H] accumulation type, in place (in: the carry from the next processed step,
//   initialised with dh_n, so a row at its last step finds dh_n there; each element owned by one
//   thread); n_next: rows of dah_next [n_next,3H] read (<= n; 0 on the first processed step),
//   must not alias dah_out/dax_out; gates [n,3H], ghn [n,H] saved values of this step;
//   h_prev(b) as in the forward.
// All tensors contiguous row-major, input dtype S unless stated.
//
// Tiles (B=64, H=512): forward BT=32 x HT=8 units (x 3 gates = 24 columns), 64 x 2 = 128 blocks,
// 0.79 MFLOP and 64 KB h + 48 KB W_hh rows per block (101 MFLOP, 14 MB from L2 per step).
// Backward BT=16 x HT=16, K = 3H = 1536: 128 blocks, 0.79 MFLOP, 96 + 96 KB per block.
// Precision: as lstm_kernels.cuh (tensor-core shapes from cuda/tile_mma.cuh for bf16/fp16 and
// TF32 fp32, FFMA for fp64 and IEEE fp32), with the tiles below.
#pragma once

#include "cells/cells.h"
#include "cuda/tile_mma.cuh"

namespace fusedrnn {
namespace kern {

template <class S>
struct GruForwardParams {
  const S* xproj;
  const S* h_prev;
  const S* h0;
  const S* w_hh;
  const S* b_hh;
  S* h_out;
  S* gates_out;
  S* ghn_out;
  int B, H, n_prev;  // B: rows of this step
};

template <class S>
struct GruBackwardParams {
  const S* dy;
  const typename AccType<S>::type* dah_next;  // accumulation type: the recurrence stays fp32 for fp16/bf16
  const S* w_hh;
  const S* gates;
  const S* ghn;
  const S* h_prev;
  const S* h0;
  typename AccType<S>::type* dh_direct;
  typename AccType<S>::type* dax_out;  // accumulation type
  typename AccType<S>::type* dah_out;  // accumulation type
  int B, H, n_next, n_prev;  // B: rows of this step
};

// TileShape<S, BT, HT, NG, RB, RN, KSPLIT, KC>, MmaShape<S, BT, HT, NG, WM, WN, KSPLIT, KC, P>
template <class S, Prec P>
using GruForwardCfg = StepShape<P, TileShape<S, 32, 8, 3, 4, 3, 4, 32>,
                                MmaShape<S, 32, 8, 3, 2, 1, 2, 64, P>>;
template <class S, Prec P>
using GruBackwardCfg = Square16Shape<S, P>;

template <class Cfg>
__global__ void FRNN_LAUNCH_BOUNDS(Cfg::kThreads)
    gru_forward_step_kernel(GruForwardParams<typename Cfg::scalar_t> p) {
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
    const size_t row = (size_t)b * 3 * H, ek = (size_t)b * H + k;
    A xa[3], ha[3];
FRNN_UNROLL
    for (int g = 0; g < 3; ++g) {
      xa[g] = to_acc<A>(p.xproj[row + g * H + k]);
      ha[g] = tile_sum<Cfg>(smem, bl, g * Cfg::HT + kl);
      if (p.b_hh) ha[g] += to_acc<A>(p.b_hh[g * H + k]);
    }
    A r, z, n, h;
    const A hp = to_acc<A>(b < p.n_prev ? p.h_prev[ek] : p.h0[ek]);
    cells::gru_forward<A>(xa[0], xa[1], xa[2], ha[0], ha[1], ha[2], hp, r, z, n, h);
    if (p.gates_out) {
      p.gates_out[row + k] = from_acc<S>(r);
      p.gates_out[row + H + k] = from_acc<S>(z);
      p.gates_out[row + 2 * H + k] = from_acc<S>(n);
    }
    if (p.ghn_out) p.ghn_out[ek] = from_acc<S>(ha[2]);
    p.h_out[ek] = from_acc<S>(h);
  }
}

template <class Cfg>
__global__ void FRNN_LAUNCH_BOUNDS(Cfg::kThreads)
    gru_backward_step_kernel(GruBackwardParams<typename Cfg::scalar_t> p) {
  using S = typename Cfg::scalar_t;
  using A = typename Cfg::acc_t;
  FRNN_DYNAMIC_SMEM(A, smem);
  const int H = p.H, G = 3 * H, k0 = int(blockIdx.y) * Cfg::HT, b0 = int(blockIdx.x) * Cfg::BT;
  const int nn = p.n_next - b0;  // rows of this block with a next step
  tile_product<Cfg, WView::kColumns, A>(nn > 0 ? p.dah_next + (size_t)b0 * G : nullptr, nullptr,
                                     nn, G, nn, p.w_hh, H, H, k0, nn > 0 ? G : 0, smem);
  for (int e = int(threadIdx.x); e < Cfg::BT * Cfg::HT; e += Cfg::kThreads) {
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, k = k0 + kl;
    if (b >= p.B || k >= H) continue;
    const size_t row = (size_t)b * G, ek = (size_t)b * H + k;
    const A dh = tile_sum<Cfg>(smem, bl, kl) + to_acc<A>(p.dy[ek]) + p.dh_direct[ek];
    A dxr, dxz, dxn, dhn, direct;
    cells::gru_backward<A>(to_acc<A>(p.gates[row + k]), to_acc<A>(p.gates[row + H + k]),
                           to_acc<A>(p.gates[row + 2 * H + k]), to_acc<A>(p.ghn[ek]),
                           to_acc<A>(b < p.n_prev ? p.h_prev[ek] : p.h0[ek]), dh, dxr, dxz, dxn, dhn, direct);
    p.dax_out[row + k] = dxr;
    p.dax_out[row + H + k] = dxz;
    p.dax_out[row + 2 * H + k] = dxn;
    p.dah_out[row + k] = dxr;
    p.dah_out[row + H + k] = dxz;
    p.dah_out[row + 2 * H + k] = dhn;
    p.dh_direct[ek] = direct;
  }
}

}  // namespace kern
}  // namespace fusedrnn
