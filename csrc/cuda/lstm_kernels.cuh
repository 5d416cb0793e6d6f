// LSTM stepwise kernels: one launch per time step, forward and backward.
//
// One step processes its n live rows (packed input: batch_sizes[t]; dense: B); the launcher
// passes n as params.B and sizes the grid for it, so padding rows are never computed. Rows are
// a prefix 0..n-1 of the batch (csrc/checks.h).
//
// Forward step (grid: ceil(n/BT) x ceil(H/HT), LstmForwardCfg::kThreads threads,
// kSmemBytes dynamic shared memory):
//   a[b, g*H+k] = xproj[b, g*H+k] + sum_j h_prev(b, j) W_hh[g*H+k, j]     (gates i,f,g,o, j < P)
//   cells::lstm_forward -> gates_out (activations), c (carry), c_out, h_out = o * tanh(c)
//   xproj     [n,4H]  x_t W_ih^T + b_ih + b_hh (hoisted GEMM), read only
//   h_prev(b) = h_prev[b] for b < n_prev (the previous processed step's rows, [n_prev,P]; null
//               iff n_prev == 0), else h0[b] ([B,P]): a row starts from h0 at its first step
//               (reverse direction: each sequence starts at its own end); must not alias h_out
//   w_hh      [4H,P]  (P = H without a projection)
//   c         [B,H]   accumulation type, in: c_{t-1}, out: c_t, rows < n only (each element read
//                     and written by the one thread that owns it, so in place is safe; a row
//                     whose sequence ended keeps its last c, a row not started yet keeps c0)
//   h_out [n,H]: y[t] without a projection, else the m scratch the launcher multiplies by
//   W_hr^T; c_out [n,H], gates_out [n,4H]: cells[t], gates[t]; fully written, or null: not
//   stored (a forward without backward)
// Backward step (grid: ceil(n/BT) x ceil(H/HT)):
//   dh[b,k] = dy[b,k] + (b < n_next ? sum_j da_next[b, j] W_hh[j, k] : dh_n[b,k])   (j < 4H)
//   cells::lstm_backward -> da_out [n,4H] (pre-activation gradients), dc (carry, in place)
//   n_next: rows of da_next [n_next,4H] this step reads (the next processed step's rows, at most
//   n; 0 on the first processed step); a row b >= n_next is at its last step and takes dh_n[b]
//   instead (dh_n [B,H] or null: nothing). da_next must not alias da_out. With a projection the
//   launcher passes n_next = 0, dh_n = null and dy = the gradient of m (W_hh is [4H,P] then, its
//   product done outside). gates [n,4H], c_t [n,H] saved forward values of this step;
//   c_prev(b) = c_prev[b] for b < n_prev else c0[b], like h_prev; dc [B,H] accumulation type,
//   in: dc_t, out: dc_{t-1} (rows < n; a row not reached yet holds dc_n).
// All tensors contiguous row-major, all of the input dtype S unless stated.
//
// Tiles (B=64, H=512, fp32, H100 with 132 SMs):
//   forward BT=32 rows x HT=8 units (x 4 gates = 32 product columns): 64 x 2 = 128 blocks, one
//   wave. A block multiplies 32 x 512 by 512 x 32: 1.05 MFLOP (134 MFLOP per step in total), and
//   stages 64 KB of h plus 64 KB of W_hh rows from L2 (16 MB per step over all blocks: W_hh, 4 MB,
//   is read by both row tiles, h, 128 KB, by all 64 unit tiles); BT = NG*HT minimises that traffic
//   for a fixed number of blocks.
//   backward BT=16 rows x HT=16 units, K = 4H = 2048: 32 x 4 = 128 blocks, 1.05 MFLOP each,
//   128 KB of da_next rows + 128 KB of W_hh columns (16 floats = 64 B segments) per block.
// Precision (Cfg's second parameter, chosen per call by the launcher, cuda/stepwise.h): the same
// tiles on tensor cores (cuda/tile_mma.cuh) for bf16/fp16 (backward: two-term TF32) and for
// fp32 when TF32 is allowed:
// forward 8 warps, each 2 x 1 mma tiles (32 rows x 8 columns) of one of 2 k-halves, KC = 64;
// backward 4 warps, each 1 x 2 tiles (16 x 16) of one of 4 k-quarters, KC = 128. FFMA
// (cuda/tile.cuh) for fp64 and IEEE fp32.
#pragma once

#include "cells/cells.h"
#include "cuda/tile_mma.cuh"

namespace fusedrnn {
namespace kern {

template <class S>
struct LstmForwardParams {
  const S* xproj;
  const S* h_prev;
  const S* h0;
  const S* w_hh;
  typename AccType<S>::type* c;
  S* h_out;
  S* c_out;
  S* gates_out;
  int B, H, P, n_prev;  // B: rows of this step
};

template <class S>
struct LstmBackwardParams {
  const S* dy;
  const S* dh_n;
  const typename AccType<S>::type* da_next;  // accumulation type: the recurrence stays fp32 for fp16/bf16
  const S* w_hh;
  const S* gates;
  const S* c_t;
  const S* c_prev;
  const S* c0;
  typename AccType<S>::type* dc;
  typename AccType<S>::type* da_out;  // accumulation type
  int B, H, n_next, n_prev;  // B: rows of this step
};

// TileShape<S, BT, HT, NG, RB, RN, KSPLIT, KC>, MmaShape<S, BT, HT, NG, WM, WN, KSPLIT, KC, P>
template <class S, Prec P>
using LstmForwardCfg = StepShape<P, TileShape<S, 32, 8, 4, 4, 4, 4, 32>,
                                 MmaShape<S, 32, 8, 4, 2, 1, 2, 64, P>>;
template <class S, Prec P>
using LstmBackwardCfg = Square16Shape<S, P>;

template <class Cfg>
__global__ void FRNN_LAUNCH_BOUNDS(Cfg::kThreads)
    lstm_forward_step_kernel(LstmForwardParams<typename Cfg::scalar_t> p) {
  using S = typename Cfg::scalar_t;
  using A = typename Cfg::acc_t;
  FRNN_DYNAMIC_SMEM(A, smem);
  const int H = p.H, P = p.P, k0 = int(blockIdx.y) * Cfg::HT, b0 = int(blockIdx.x) * Cfg::BT;
  const int split = p.n_prev - b0;
  tile_product<Cfg, WView::kRows>(split > 0 ? p.h_prev + (size_t)b0 * P : nullptr,
                                  p.h0 + (size_t)b0 * P, split, P, p.B - b0, p.w_hh, P, H, k0,
                                  P, smem);
  for (int e = int(threadIdx.x); e < Cfg::BT * Cfg::HT; e += Cfg::kThreads) {
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, k = k0 + kl;
    if (b >= p.B || k >= H) continue;
    const size_t row = (size_t)b * 4 * H, ek = (size_t)b * H + k;
    A a[4];
FRNN_UNROLL
    for (int g = 0; g < 4; ++g)
      a[g] = tile_sum<Cfg>(smem, bl, g * Cfg::HT + kl) + to_acc<A>(p.xproj[row + g * H + k]);
    A i, f, gg, o, c, h;
    cells::lstm_forward<A>(a[0], a[1], a[2], a[3], p.c[ek], i, f, gg, o, c, h);
    if (p.gates_out) {
      p.gates_out[row + k] = from_acc<S>(i);
      p.gates_out[row + H + k] = from_acc<S>(f);
      p.gates_out[row + 2 * H + k] = from_acc<S>(gg);
      p.gates_out[row + 3 * H + k] = from_acc<S>(o);
    }
    p.c[ek] = c;
    if (p.c_out) p.c_out[ek] = from_acc<S>(c);
    p.h_out[ek] = from_acc<S>(h);
  }
}

template <class Cfg>
__global__ void FRNN_LAUNCH_BOUNDS(Cfg::kThreads)
    lstm_backward_step_kernel(LstmBackwardParams<typename Cfg::scalar_t> p) {
  using S = typename Cfg::scalar_t;
  using A = typename Cfg::acc_t;
  FRNN_DYNAMIC_SMEM(A, smem);
  const int H = p.H, G = 4 * H, k0 = int(blockIdx.y) * Cfg::HT, b0 = int(blockIdx.x) * Cfg::BT;
  const int nn = p.n_next - b0;  // rows of this block with a next step
  tile_product<Cfg, WView::kColumns, A>(nn > 0 ? p.da_next + (size_t)b0 * G : nullptr, nullptr, nn,
                                     G, nn, p.w_hh, H, H, k0, nn > 0 ? G : 0, smem);
  for (int e = int(threadIdx.x); e < Cfg::BT * Cfg::HT; e += Cfg::kThreads) {
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, k = k0 + kl;
    if (b >= p.B || k >= H) continue;
    const size_t row = (size_t)b * G, ek = (size_t)b * H + k;
    A dh = tile_sum<Cfg>(smem, bl, kl) + to_acc<A>(p.dy[ek]);
    if (b >= p.n_next && p.dh_n) dh += to_acc<A>(p.dh_n[ek]);
    const A c_prev = to_acc<A>(b < p.n_prev ? p.c_prev[ek] : p.c0[ek]);
    A dai, daf, dag, dao, dc_prev;
    cells::lstm_backward<A>(to_acc<A>(p.gates[row + k]), to_acc<A>(p.gates[row + H + k]),
                            to_acc<A>(p.gates[row + 2 * H + k]),
                            to_acc<A>(p.gates[row + 3 * H + k]), to_acc<A>(p.c_t[ek]),
                            c_prev, dh, p.dc[ek], dai, daf, dag, dao, dc_prev);
    p.da_out[row + k] = dai;
    p.da_out[row + H + k] = daf;
    p.da_out[row + 2 * H + k] = dag;
    p.da_out[row + 3 * H + k] = dao;
    p.dc[ek] = dc_prev;
  }
}

}  // namespace kern
}  // namespace fusedrnn
