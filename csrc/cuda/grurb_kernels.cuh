// Stepwise kernels of the GRU with the reset gate before the recurrent product (Cho et al. 2014;
// cell math: cells/gru_reset_before.h): two launches per time step, forward and backward, since
// the n gate's product needs r * h of every unit.
//
// Forward step s (n live rows, a prefix of the batch; grid ceil(n/BT) x ceil(units/HT)):
//   rz kernel, units u < 2H (r for u < H, z for u >= H):
//     a[b,u] = xproj[b,u] + sum_j h_prev(b,j) W_hh[u,j] + b_hh[u]
//     r: rh_out[b,u] = r * h_prev(b,u), r_out[b*3H+u] = r (r_out nullable)
//     z: z_out[b*ldz + u-H] = z
//   n kernel, units k < H:
//     a[b,k] = xproj[b,2H+k] + sum_j rh[b,j] W_hh[2H+k,j] + b_hh[2H+k]
//     n_out[b*3H+k] = n (nullable), h_out[b,k] = (1-z) n + z h_prev(b,k)
//   xproj [n,3H] row stride 3H (x W_ih^T + b_ih); h_prev(b) = h_prev[b] for b < n_prev (null iff
//   n_prev == 0) else h0[b]; w_hh [3H,H]; b_hh [3H] or null; rh, z as the rz kernel wrote them.
// Backward step s (reverse order), dax [N,3H] of the pre-activation gradients (accumulation type):
//   zn kernel: dh[b,k] = dy[b,k] + dh_direct[b,k] + (b < n_next ? sum_{j<2H} da_next[b,j] W_hh[j,k])
//     (da_next: dax of the next processed step, row stride 3H: its r and z columns)
//     -> dax_out z, n columns; dh_direct = z * dh
//   r kernel: drh[b,k] = sum_j dax[b,2H+j] W_hh[2H+j,k] (this step's n column)
//     -> dax_out r column; dh_direct += r * drh
//   dh_direct [B,H] accumulation type, in place, each element owned by one thread; gates [n,3H]
//   saved activations r, z, n; dax rows of the step (row stride 3H).
// All tensors contiguous row-major, input dtype S unless stated. Tiles: the one-column-per-unit
// shape of the RNN kernels (Square16Shape: 16 rows x 16 units, tensor cores as the other cells).
#pragma once

#include "cells/gru_reset_before.h"
#include "cuda/tile_mma.cuh"

namespace fusedrnn {
namespace kern {

template <class S>
struct GruRbRzParams {
  const S* xproj;
  const S* h_prev;
  const S* h0;
  const S* w_hh;
  const S* b_hh;
  S* r_out;
  S* z_out;
  S* rh_out;
  int ldz;
  int B, H, n_prev;
};

template <class S>
struct GruRbNParams {
  const S* xproj;
  const S* rh;
  const S* z;
  const S* h_prev;
  const S* h0;
  const S* w_hh;
  const S* b_hh;
  S* n_out;
  S* h_out;
  int ldz;
  int B, H, n_prev;
};

template <class S>
struct GruRbBackwardParams {
  using A = typename AccType<S>::type;
  const S* dy;
  const A* da_next;  // zn kernel
  const S* w_hh;
  const S* gates;
  const S* h_prev;
  const S* h0;
  A* dh_direct;
  A* dax_out;  // this step's rows; the r kernel also reads their n column (the zn kernel's)
  int B, H, n_next, n_prev;
};

template <class S, Prec P>
using GruRbCfg = Square16Shape<S, P>;

template <class Cfg>
__global__ void FRNN_LAUNCH_BOUNDS(Cfg::kThreads)
    grurb_rz_step_kernel(GruRbRzParams<typename Cfg::scalar_t> p) {
  using S = typename Cfg::scalar_t;
  using A = typename Cfg::acc_t;
  FRNN_DYNAMIC_SMEM(A, smem);
  const int H = p.H, U = 2 * H, k0 = int(blockIdx.y) * Cfg::HT, b0 = int(blockIdx.x) * Cfg::BT;
  const int split = p.n_prev - b0;
  // W_hh's rows [0, 2H) as 2H units of one column each.
  tile_product<Cfg, WView::kRows>(split > 0 ? p.h_prev + (size_t)b0 * H : nullptr,
                                  p.h0 + (size_t)b0 * H, split, H, p.B - b0, p.w_hh, H, U, k0, H,
                                  smem);
  for (int e = int(threadIdx.x); e < Cfg::BT * Cfg::HT; e += Cfg::kThreads) {
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, u = k0 + kl;
    if (b >= p.B || u >= U) continue;
    A a = tile_sum<Cfg>(smem, bl, kl) + to_acc<A>(p.xproj[(size_t)b * 3 * H + u]);
    if (p.b_hh) a += to_acc<A>(p.b_hh[u]);
    if (u < H) {
      const size_t ek = (size_t)b * H + u;
      A r, rh;
      cells::grurb_forward_r<A>(a, to_acc<A>(b < p.n_prev ? p.h_prev[ek] : p.h0[ek]), r, rh);
      p.rh_out[ek] = from_acc<S>(rh);
      if (p.r_out) p.r_out[(size_t)b * 3 * H + u] = from_acc<S>(r);
    } else {
      p.z_out[(size_t)b * p.ldz + (u - H)] = from_acc<S>(cells::grurb_forward_z<A>(a));
    }
  }
}

template <class Cfg>
__global__ void FRNN_LAUNCH_BOUNDS(Cfg::kThreads)
    grurb_n_step_kernel(GruRbNParams<typename Cfg::scalar_t> p) {
  using S = typename Cfg::scalar_t;
  using A = typename Cfg::acc_t;
  FRNN_DYNAMIC_SMEM(A, smem);
  const int H = p.H, k0 = int(blockIdx.y) * Cfg::HT, b0 = int(blockIdx.x) * Cfg::BT;
  const int rows = p.B - b0;
  const S* none = nullptr;  // every row from rh
  tile_product<Cfg, WView::kRows>(p.rh + (size_t)b0 * H, none, rows, H, rows,
                                  p.w_hh + (size_t)2 * H * H, H, H, k0, H, smem);
  for (int e = int(threadIdx.x); e < Cfg::BT * Cfg::HT; e += Cfg::kThreads) {
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, k = k0 + kl;
    if (b >= p.B || k >= H) continue;
    const size_t ek = (size_t)b * H + k;
    A a = tile_sum<Cfg>(smem, bl, kl) + to_acc<A>(p.xproj[(size_t)b * 3 * H + 2 * H + k]);
    if (p.b_hh) a += to_acc<A>(p.b_hh[2 * H + k]);
    A n, h;
    cells::grurb_forward_n<A>(a, to_acc<A>(p.z[(size_t)b * p.ldz + k]),
                              to_acc<A>(b < p.n_prev ? p.h_prev[ek] : p.h0[ek]), n, h);
    if (p.n_out) p.n_out[(size_t)b * 3 * H + 2 * H + k] = from_acc<S>(n);
    p.h_out[ek] = from_acc<S>(h);
  }
}

template <class Cfg>
__global__ void FRNN_LAUNCH_BOUNDS(Cfg::kThreads)
    grurb_backward_zn_step_kernel(GruRbBackwardParams<typename Cfg::scalar_t> p) {
  using S = typename Cfg::scalar_t;
  using A = typename Cfg::acc_t;
  FRNN_DYNAMIC_SMEM(A, smem);
  const int H = p.H, G = 3 * H, k0 = int(blockIdx.y) * Cfg::HT, b0 = int(blockIdx.x) * Cfg::BT;
  const int nn = p.n_next - b0;  // rows of this block with a next step
  // [da_r, da_z] of the next step times W_hh's rows [0, 2H).
  tile_product<Cfg, WView::kColumns, A>(nn > 0 ? p.da_next + (size_t)b0 * G : nullptr, nullptr,
                                        nn, G, nn, p.w_hh, H, H, k0, nn > 0 ? 2 * H : 0, smem);
  for (int e = int(threadIdx.x); e < Cfg::BT * Cfg::HT; e += Cfg::kThreads) {
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, k = k0 + kl;
    if (b >= p.B || k >= H) continue;
    const size_t row = (size_t)b * G, ek = (size_t)b * H + k;
    const A dh = tile_sum<Cfg>(smem, bl, kl) + to_acc<A>(p.dy[ek]) + p.dh_direct[ek];
    A dz, dn, direct;
    cells::grurb_backward_zn<A>(to_acc<A>(p.gates[row + H + k]), to_acc<A>(p.gates[row + 2 * H + k]),
                                to_acc<A>(b < p.n_prev ? p.h_prev[ek] : p.h0[ek]), dh, dz, dn,
                                direct);
    p.dax_out[row + H + k] = dz;
    p.dax_out[row + 2 * H + k] = dn;
    p.dh_direct[ek] = direct;
  }
}

template <class Cfg>
__global__ void FRNN_LAUNCH_BOUNDS(Cfg::kThreads)
    grurb_backward_r_step_kernel(GruRbBackwardParams<typename Cfg::scalar_t> p) {
  using A = typename Cfg::acc_t;
  FRNN_DYNAMIC_SMEM(A, smem);
  const int H = p.H, G = 3 * H, k0 = int(blockIdx.y) * Cfg::HT, b0 = int(blockIdx.x) * Cfg::BT;
  const int rows = p.B - b0;
  // drh = da_n W_hn (W_hh's rows [2H, 3H) as the K of the product).
  tile_product<Cfg, WView::kColumns, A>(p.dax_out + (size_t)b0 * G + 2 * H, nullptr, rows, G,
                                        rows, p.w_hh + (size_t)2 * H * H, H, H, k0, H, smem);
  for (int e = int(threadIdx.x); e < Cfg::BT * Cfg::HT; e += Cfg::kThreads) {
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, k = k0 + kl;
    if (b >= p.B || k >= H) continue;
    const size_t ek = (size_t)b * H + k;
    A dr, dh = p.dh_direct[ek];
    cells::grurb_backward_r<A>(to_acc<A>(p.gates[(size_t)b * G + k]),
                               to_acc<A>(b < p.n_prev ? p.h_prev[ek] : p.h0[ek]),
                               tile_sum<Cfg>(smem, bl, kl), dr, dh);
    p.dax_out[(size_t)b * G + k] = dr;
    p.dh_direct[ek] = dh;
  }
}

}  // namespace kern
}  // namespace fusedrnn
