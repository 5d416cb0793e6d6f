// Row kernels of the layer-normalised GRU (torch.nn.GRU's cell with its recurrent product
// normalised: cells/cells.h gru_*, cells/layer_norm.h; op contract: csrc/layer_norm_ops.h); the
// product kernels and block_sum: cuda/layer_norm_kernels.cuh (G = 3).
//
// Forward step s (n live rows, a prefix of the batch), after the product kernel:
//   row kernel, grid n, kLnRowThreads threads, kLnRowThreads accumulators of shared memory:
//     row b: gh = the product's row; hh = g_hh * LN(gh) + b_hh; r, z, n from xp and hh;
//     h_out[b] = (1 - z) n + z h_prev(b); gates_out (S), stats_out (mean and rstd of gh;
//     accumulation type) nullable. h_prev(b) = h_prev[b] for b < n_prev else h0[b].
// Backward step s (reverse processing order), before the backward product kernel (which writes
// dh_carry = dgh W_hh + direct, the next processed step's carry; for a row's first step, dh0):
//   row kernel, grid n: dh = dy + dh_carry[b]; writes dax (the input side's pre-activation
//   gradients r, z, n), dhh (hh's gradients), dgh (LN(gh)'s backward of dhh * g_hh) and direct
//   (z * dh), all in the accumulation type.
// All row pointers are the step's first row; tensors contiguous row-major.
#pragma once

#include "cuda/layer_norm_kernels.cuh"

namespace fusedrnn {
namespace kern {

template <class S>
struct LnGruRowForwardParams {
  using A = typename AccType<S>::type;
  const S* xp;
  const A* gh;
  const S* g_hh;
  const S* b_hh;
  const S* h_prev;
  const S* h0;
  S* gates_out;
  A* stats_out;
  S* h_out;
  int H, n_prev;
};

template <class S>
struct LnGruRowBackwardParams {
  using A = typename AccType<S>::type;
  const S* dy;
  const A* dh_carry;
  const S* gates;
  const A* gh;
  const A* stats;
  const S* g_hh;
  const S* b_hh;
  const S* h_prev;
  const S* h0;
  A* dax;
  A* dhh;
  A* dgh;
  A* direct;  // [B,H]
  int H, n_prev;
};

template <class S>
__global__ void FRNN_LAUNCH_BOUNDS(kLnRowThreads)
    lngru_row_forward_kernel(LnGruRowForwardParams<S> p) {
  using A = typename AccType<S>::type;
  constexpr int NT = kLnRowThreads;
  FRNN_DYNAMIC_SMEM(A, red);
  const int b = int(blockIdx.x), t = int(threadIdx.x), H = p.H, G = 3 * H;
  const A* gh = p.gh + (size_t)b * G;
  const S* xp = p.xp + (size_t)b * G;
  A s = 0;
  for (int u = t; u < G; u += NT) s += gh[u];
  const A mh = block_sum(s, red) / A(G);
  s = 0;
  for (int u = t; u < G; u += NT) s += (gh[u] - mh) * (gh[u] - mh);
  const A rh = rsqrt_(block_sum(s, red) / A(G) + A(cells::kLayerNormEps));
  auto hh = [&](int u) {
    return cells::layer_norm_affine<A>(p.b_hh ? to_acc<A>(p.b_hh[u]) : A(0),
                                       to_acc<A>(p.g_hh[u]), gh[u], mh, rh);
  };
  for (int k = t; k < H; k += NT) {
    const size_t ek = (size_t)b * H + k;
    A r, z, n, h;
    cells::gru_forward<A>(to_acc<A>(xp[k]), to_acc<A>(xp[H + k]), to_acc<A>(xp[2 * H + k]),
                          hh(k), hh(H + k), hh(2 * H + k),
                          to_acc<A>(b < p.n_prev ? p.h_prev[ek] : p.h0[ek]), r, z, n, h);
    if (p.gates_out) {
      S* go = p.gates_out + (size_t)b * G;
      go[k] = from_acc<S>(r), go[H + k] = from_acc<S>(z), go[2 * H + k] = from_acc<S>(n);
    }
    p.h_out[ek] = from_acc<S>(h);
  }
  if (t == 0 && p.stats_out) p.stats_out[2 * b] = mh, p.stats_out[2 * b + 1] = rh;
}

template <class S>
__global__ void FRNN_LAUNCH_BOUNDS(kLnRowThreads)
    lngru_row_backward_kernel(LnGruRowBackwardParams<S> p) {
  using A = typename AccType<S>::type;
  constexpr int NT = kLnRowThreads;
  FRNN_DYNAMIC_SMEM(A, red);
  const int b = int(blockIdx.x), t = int(threadIdx.x), H = p.H, G = 3 * H;
  const size_t rb = (size_t)b * G;
  const A mh = p.stats[2 * b], rh = p.stats[2 * b + 1];
  const A* gh = p.gh + rb;
  A* dax = p.dax + rb;
  A* dhh = p.dhh + rb;
  for (int k = t; k < H; k += NT) {
    const size_t ek = (size_t)b * H + k;
    const int un = 2 * H + k;
    const A hn = cells::layer_norm_affine<A>(p.b_hh ? to_acc<A>(p.b_hh[un]) : A(0),
                                             to_acc<A>(p.g_hh[un]), gh[un], mh, rh);
    A dxr, dxz, dxn, dhn, direct;
    cells::gru_backward<A>(to_acc<A>(p.gates[rb + k]), to_acc<A>(p.gates[rb + H + k]),
                           to_acc<A>(p.gates[rb + un]), hn,
                           to_acc<A>(b < p.n_prev ? p.h_prev[ek] : p.h0[ek]),
                           to_acc<A>(p.dy[ek]) + p.dh_carry[ek], dxr, dxz, dxn, dhn, direct);
    dax[k] = dxr, dax[H + k] = dxz, dax[un] = dxn;
    dhh[k] = dxr, dhh[H + k] = dxz, dhh[un] = dhn;
    p.direct[ek] = direct;
  }
  __syncthreads();  // dhh's row, written by other threads, is read below
  A s3 = 0, s4 = 0;
  for (int u = t; u < G; u += NT) {
    const A dx = dhh[u] * to_acc<A>(p.g_hh[u]);
    s3 += dx;
    s4 += dx * ((gh[u] - mh) * rh);
  }
  const A m3 = block_sum(s3, red) / A(G), m4 = block_sum(s4, red) / A(G);
  for (int u = t; u < G; u += NT)
    p.dgh[rb + u] = cells::layer_norm_backward<A>(dhh[u] * to_acc<A>(p.g_hh[u]),
                                                  (gh[u] - mh) * rh, m3, m4, rh);
}

}  // namespace kern
}  // namespace fusedrnn
