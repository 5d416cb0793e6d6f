// Row kernels of the layer-normalised LSTM (cell math: cells/layer_norm_lstm.h; op contract:
// csrc/layer_norm_ops.h); the product kernels and block_sum: cuda/layer_norm_kernels.cuh (G = 4).
//
// Forward step s (n live rows, a prefix of the batch), after the product kernel:
//   row kernel, grid n, kLnRowThreads threads, kLnRowThreads accumulators of shared memory:
//     row b: gh = the product's row; a = xp + g_hh * LN(gh); i, f, g, o;
//     c_state[b] = f c_state[b] + i g; h_out[b] = o tanh(g_c LN(c) + b_c); gates_out,
//     cells_out (S), stats_out (mean and rstd of gh, of c; accumulation type) nullable.
// Backward step s (reverse processing order), before the backward product kernel (which writes
// dh_carry of the next processed step; for a row's first step, dh0):
//   row kernel, grid n: dh = dy + dh_carry[b] (the product of step s+1, or dh_n);
//     dc = LN(c)'s backward + dc_carry[b]; writes dax (pre-activation gradients i, f, g, o), dyc
//     (the gradient of g_c LN(c) + b_c), dgh (LN(gh)'s backward of dax * g_hh), all in the
//     accumulation type, and dc_carry[b] = dc * f. c_prev(b) = cells_prev[b] for b < n_prev
//     else c0[b].
// All row pointers are the step's first row; tensors contiguous row-major.
#pragma once

#include "cells/layer_norm_lstm.h"
#include "cuda/layer_norm_kernels.cuh"

namespace fusedrnn {
namespace kern {

template <class S>
struct LnRowForwardParams {
  using A = typename AccType<S>::type;
  const S* xp;
  const A* gh;
  const S* g_hh;
  const S* g_c;
  const S* b_c;
  A* c_state;
  S* gates_out;
  S* cells_out;
  A* stats_out;
  S* h_out;
  int H;
};

template <class S>
struct LnRowBackwardParams {
  using A = typename AccType<S>::type;
  const S* dy;
  const A* dh_carry;
  A* dc_carry;
  const S* gates;
  const A* gh;
  const S* cells;
  const S* cells_prev;
  const S* c0;
  const A* stats;
  const S* g_hh;
  const S* g_c;
  const S* b_c;
  A* dax;
  A* dgh;
  A* dyc;
  int H, n_prev;
};

template <class S>
__global__ void FRNN_LAUNCH_BOUNDS(kLnRowThreads)
    lnlstm_row_forward_kernel(LnRowForwardParams<S> p) {
  using A = typename AccType<S>::type;
  constexpr int NT = kLnRowThreads;
  FRNN_DYNAMIC_SMEM(A, red);
  const int b = int(blockIdx.x), t = int(threadIdx.x), H = p.H, G = 4 * H;
  const A eps = A(cells::kLayerNormEps);
  const A* gh = p.gh + (size_t)b * G;
  const S* xp = p.xp + (size_t)b * G;
  A* c = p.c_state + (size_t)b * H;
  A s = 0;
  for (int u = t; u < G; u += NT) s += gh[u];
  const A mh = block_sum(s, red) / A(G);
  s = 0;
  for (int u = t; u < G; u += NT) s += (gh[u] - mh) * (gh[u] - mh);
  const A rh = rsqrt_(block_sum(s, red) / A(G) + eps);
  auto preact = [&](int u) {
    return cells::layer_norm_affine<A>(to_acc<A>(xp[u]), to_acc<A>(p.g_hh[u]), gh[u], mh, rh);
  };
  s = 0;
  for (int k = t; k < H; k += NT) {
    A i, f, g, o, cn;
    cells::lnlstm_cell<A>(preact(k), preact(H + k), preact(2 * H + k), preact(3 * H + k), c[k],
                          i, f, g, o, cn);
    c[k] = cn;
    s += cn;
    if (p.gates_out) {
      S* go = p.gates_out + (size_t)b * G;
      go[k] = from_acc<S>(i), go[H + k] = from_acc<S>(f);
      go[2 * H + k] = from_acc<S>(g), go[3 * H + k] = from_acc<S>(o);
    }
    if (p.cells_out) p.cells_out[(size_t)b * H + k] = from_acc<S>(cn);
  }
  const A mc = block_sum(s, red) / A(H);
  s = 0;
  for (int k = t; k < H; k += NT) s += (c[k] - mc) * (c[k] - mc);  // this thread's own c[k]
  const A rc = rsqrt_(block_sum(s, red) / A(H) + eps);
  for (int k = t; k < H; k += NT) {
    const A o = cells::sigmoid(preact(3 * H + k));
    const A bc = p.b_c ? to_acc<A>(p.b_c[k]) : A(0);
    p.h_out[(size_t)b * H + k] =
        from_acc<S>(cells::lnlstm_hidden<A>(o, c[k], mc, rc, to_acc<A>(p.g_c[k]), bc));
  }
  if (t == 0 && p.stats_out) {
    A* so = p.stats_out + (size_t)b * 4;
    so[0] = mh, so[1] = rh, so[2] = mc, so[3] = rc;
  }
}

template <class S>
__global__ void FRNN_LAUNCH_BOUNDS(kLnRowThreads)
    lnlstm_row_backward_kernel(LnRowBackwardParams<S> p) {
  using A = typename AccType<S>::type;
  constexpr int NT = kLnRowThreads;
  FRNN_DYNAMIC_SMEM(A, red);
  const int b = int(blockIdx.x), t = int(threadIdx.x), H = p.H, G = 4 * H;
  const size_t rb = (size_t)b * G, hb = (size_t)b * H;
  const A* st = p.stats + (size_t)b * 4;
  const A mh = st[0], rh = st[1], mc = st[2], rc = st[3];
  A* dax = p.dax + rb;
  A s1 = 0, s2 = 0;
  for (int k = t; k < H; k += NT) {
    const A dh = to_acc<A>(p.dy[hb + k]) + p.dh_carry[hb + k];
    const A c = to_acc<A>(p.cells[hb + k]);
    const A bc = p.b_c ? to_acc<A>(p.b_c[k]) : A(0);
    A dao, dyc, dchat;
    cells::lnlstm_backward_hidden<A>(to_acc<A>(p.gates[rb + 3 * H + k]), c, mc, rc,
                                     to_acc<A>(p.g_c[k]), bc, dh, dao, dyc, dchat);
    dax[3 * H + k] = dao;
    p.dyc[hb + k] = dyc;
    s1 += dchat;
    s2 += dchat * ((c - mc) * rc);
  }
  const A m1 = block_sum(s1, red) / A(H), m2 = block_sum(s2, red) / A(H);
  for (int k = t; k < H; k += NT) {
    const A chat = (to_acc<A>(p.cells[hb + k]) - mc) * rc;
    const A dc = cells::layer_norm_backward<A>(p.dyc[hb + k] * to_acc<A>(p.g_c[k]), chat, m1, m2,
                                               rc) +
                 p.dc_carry[hb + k];
    const A c_prev = to_acc<A>(b < p.n_prev ? p.cells_prev[hb + k] : p.c0[hb + k]);
    A dai, daf, dag, dcp;
    cells::lnlstm_backward_cell<A>(to_acc<A>(p.gates[rb + k]), to_acc<A>(p.gates[rb + H + k]),
                                   to_acc<A>(p.gates[rb + 2 * H + k]), c_prev, dc, dai, daf, dag,
                                   dcp);
    dax[k] = dai, dax[H + k] = daf, dax[2 * H + k] = dag;
    p.dc_carry[hb + k] = dcp;
  }
  __syncthreads();  // dax's row, written by other threads, is read below
  const A* gh = p.gh + rb;
  A s3 = 0, s4 = 0;
  for (int u = t; u < G; u += NT) {
    const A dx = dax[u] * to_acc<A>(p.g_hh[u]);
    s3 += dx;
    s4 += dx * ((gh[u] - mh) * rh);
  }
  const A m3 = block_sum(s3, red) / A(G), m4 = block_sum(s4, red) / A(G);
  for (int u = t; u < G; u += NT)
    p.dgh[rb + u] = cells::layer_norm_backward<A>(dax[u] * to_acc<A>(p.g_hh[u]),
                                                  (gh[u] - mh) * rh, m3, m4, rh);
}

}  // namespace kern
}  // namespace fusedrnn
