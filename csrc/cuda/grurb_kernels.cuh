// Stepwise kernels of the cells whose reset gate comes before the recurrent product: Cho's GRU
// (Cho et al. 2014) and MUT1-3 (Jozefowicz et al. 2015; cell math: cells/gru_reset_before.h).
// Two launches per time step, forward and backward, since the n gate's product needs r * h of
// every unit. The cells differ in `z_src` (where z's recurrent product reads from: 0 none (MUT1),
// 1 h (GRU, MUT2), 2 tanh(h) (MUT3)), `mut` (h' = z n + (1-z) h instead of (1-z) n + z h) and
// the rows of W_hh: r, z (unless z_src == 0), n; w_hn points at n's (row u1 = H or 2H; set by
// the launcher, so the kernels do no address arithmetic of their own for it).
//
// Forward step s (n live rows, a prefix of the batch; grid ceil(n/BT) x (gates * ceil(H/HT)),
// the gates of the product: r, and z unless z_src == 0; a block's units are of one gate):
//   rz kernel, gate r (units k < H) and z:
//     a_r[b,k] = xproj[b,k] + sum_j h_prev(b,j) W_hh[k,j] + b_hh[k]
//     a_z[b,k] = xproj[b,H+k] + sum_j src(b,j) W_hh[H+k,j] + b_hh[H+k]   (src = h_prev or th;
//                                                                          no sum if z_src == 0)
//     r: rh_out[b,k] = r * h_prev(b,k), r_out[b*3H+k] = r (r_out nullable)
//     z: z_out[b*ldz + k] = z (z_src == 0: written by the r blocks)
//   n kernel, units k < H:
//     a[b,k] = xproj[b,2H+k] + sum_j rh[b,j] W_hn[k,j] + b_hh[2H+k]
//     n_out[b*3H+k] = n (nullable), h_out[b,k] = h'; z_src == 2: th[b,k] = tanh(h')
//   xproj [n,3H] row stride 3H (x W_ih^T + b_ih; MUT: the given input side); h_prev(b) =
//   h_prev[b] for b < n_prev (null iff n_prev == 0) else h0[b]; w_hh [u1+H, H]; b_hh [3H] or
//   null; rh, z as the rz kernel wrote them; th [B,H] (z_src == 2, else null): tanh of each
//   row's latest state (tanh(h0) before its first step).
// Backward step s (reverse order), dax [N,3H] of the pre-activation gradients (accumulation type):
//   zn kernel: dh[b,k] = dy[b,k] + dh_direct[b,k] + (b < n_next ? sum_j da_next[b,j] W_hh[j,k])
//     (da_next: dax of the next processed step, row stride 3H: its r column, and z's when
//     z_src == 1; z_src == 2 adds (sum_j da_next[b,H+j] W_hh[H+j,k]) * (1 - tanh(h_cur[b,k])^2)
//     with h_cur = this step's output) -> dax_out z, n columns; dh_direct = keep * dh
//   r kernel: drh[b,k] = sum_j dax[b,2H+j] W_hn[j,k] (this step's n column)
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

// The cell's variant (see above), the same in every kernel's parameters.
struct ResetBeforeCell {
  int z_src = 1;     // 0: z has no recurrent product, 1: over h, 2: over tanh(h)
  bool mut = false;  // MUT update h' = z n + (1 - z) h
};

template <class S>
struct GruRbRzParams {
  const S* xproj;
  const S* h_prev;
  const S* h0;
  const S* th;
  const S* w_hh;
  const S* b_hh;
  S* r_out;
  S* z_out;
  S* rh_out;
  int ldz;
  int B, H, n_prev;
  ResetBeforeCell cell;
};

template <class S>
struct GruRbNParams {
  const S* xproj;
  const S* rh;
  const S* z;
  const S* h_prev;
  const S* h0;
  const S* w_hn;
  const S* b_hh;
  S* n_out;
  S* h_out;
  S* th;
  int ldz;
  int B, H, n_prev;
  ResetBeforeCell cell;
};

template <class S>
struct GruRbBackwardParams {
  using A = typename AccType<S>::type;
  const S* dy;
  const A* da_next;  // zn kernel
  const S* w_hh;
  const S* w_hn;
  const S* gates;
  const S* h_prev;
  const S* h0;
  const S* h_cur;  // this step's output rows (z_src == 2)
  A* dh_direct;
  A* dax_out;  // this step's rows; the r kernel also reads their n column (the zn kernel's)
  int B, H, n_next, n_prev;
  ResetBeforeCell cell;
};

template <class S, Prec P>
using GruRbCfg = Square16Shape<S, P>;

template <class Cfg>
__global__ void FRNN_LAUNCH_BOUNDS(Cfg::kThreads)
    grurb_rz_step_kernel(GruRbRzParams<typename Cfg::scalar_t> p) {
  using S = typename Cfg::scalar_t;
  using A = typename Cfg::acc_t;
  FRNN_DYNAMIC_SMEM(A, smem);
  const int H = p.H, tiles = (H + Cfg::HT - 1) / Cfg::HT, b0 = int(blockIdx.x) * Cfg::BT;
  const int gate = int(blockIdx.y) / tiles, k0 = (int(blockIdx.y) % tiles) * Cfg::HT;
  const int split = p.n_prev - b0;
  const S* w = p.w_hh + (size_t)gate * H * H;  // W_hr or W_hz
  if (gate == 1 && p.cell.z_src == 2)  // MUT3: z's product over tanh(h), every row from th
    tile_product<Cfg, WView::kRows>(p.th + (size_t)b0 * H, p.th, p.B - b0, H, p.B - b0, w, H, H,
                                    k0, H, smem);
  else
    tile_product<Cfg, WView::kRows>(split > 0 ? p.h_prev + (size_t)b0 * H : nullptr,
                                    p.h0 + (size_t)b0 * H, split, H, p.B - b0, w, H, H, k0, H,
                                    smem);
  for (int e = int(threadIdx.x); e < Cfg::BT * Cfg::HT; e += Cfg::kThreads) {
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, k = k0 + kl, u = gate * H + k;
    if (b >= p.B || k >= H) continue;
    A a = tile_sum<Cfg>(smem, bl, kl) + to_acc<A>(p.xproj[(size_t)b * 3 * H + u]);
    if (p.b_hh) a += to_acc<A>(p.b_hh[u]);
    const size_t ek = (size_t)b * H + k;
    if (gate == 0) {
      A r, rh;
      cells::grurb_forward_r<A>(a, to_acc<A>(b < p.n_prev ? p.h_prev[ek] : p.h0[ek]), r, rh);
      p.rh_out[ek] = from_acc<S>(rh);
      if (p.r_out) p.r_out[(size_t)b * 3 * H + k] = from_acc<S>(r);
      if (p.cell.z_src == 0)  // MUT1: z from its input side alone
        p.z_out[(size_t)b * p.ldz + k] =
            from_acc<S>(cells::grurb_forward_z<A>(to_acc<A>(p.xproj[(size_t)b * 3 * H + H + k])));
    } else {
      p.z_out[(size_t)b * p.ldz + k] = from_acc<S>(cells::grurb_forward_z<A>(a));
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
                                  p.w_hn, H, H, k0, H, smem);
  for (int e = int(threadIdx.x); e < Cfg::BT * Cfg::HT; e += Cfg::kThreads) {
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, k = k0 + kl;
    if (b >= p.B || k >= H) continue;
    const size_t ek = (size_t)b * H + k;
    A a = tile_sum<Cfg>(smem, bl, kl) + to_acc<A>(p.xproj[(size_t)b * 3 * H + 2 * H + k]);
    if (p.b_hh) a += to_acc<A>(p.b_hh[2 * H + k]);
    A n, h;
    cells::grurb_forward_n<A>(a, to_acc<A>(p.z[(size_t)b * p.ldz + k]),
                              to_acc<A>(b < p.n_prev ? p.h_prev[ek] : p.h0[ek]), n, h,
                              p.cell.mut);
    if (p.n_out) p.n_out[(size_t)b * 3 * H + 2 * H + k] = from_acc<S>(n);
    p.h_out[ek] = from_acc<S>(h);
    // MUT3's next z product reads tanh of this state (rounded to S as h is).
    if (p.cell.z_src == 2) p.th[ek] = from_acc<S>(cells::tanh_(to_acc<A>(from_acc<S>(h))));
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
  // [da_r (, da_z)] of the next step times W_hh's rows [0, H) (or [0, 2H) when z's product is
  // over h), into smem; MUT3's z part (over tanh(h)) is a second product, kept in registers.
  constexpr int kPer = (Cfg::BT * Cfg::HT + Cfg::kThreads - 1) / Cfg::kThreads;
  A dz_h[kPer] = {};
  const bool z_tanh = p.cell.z_src == 2;
  if (z_tanh) {
    tile_product<Cfg, WView::kColumns, A>(nn > 0 ? p.da_next + (size_t)b0 * G + H : nullptr,
                                          nullptr, nn, G, nn, p.w_hh + (size_t)H * H, H, H, k0,
                                          nn > 0 ? H : 0, smem);
    for (int i = 0; i < kPer; ++i) {
      const int e = int(threadIdx.x) + i * Cfg::kThreads;
      dz_h[i] = e < Cfg::BT * Cfg::HT ? tile_sum<Cfg>(smem, e / Cfg::HT, e % Cfg::HT) : A(0);
    }
    __syncthreads();  // the next product reuses smem
  }
  const int k_h = p.cell.z_src == 1 ? 2 * H : H;
  tile_product<Cfg, WView::kColumns, A>(nn > 0 ? p.da_next + (size_t)b0 * G : nullptr, nullptr,
                                        nn, G, nn, p.w_hh, H, H, k0, nn > 0 ? k_h : 0, smem);
  for (int i = 0; i < kPer; ++i) {
    const int e = int(threadIdx.x) + i * Cfg::kThreads;
    if (e >= Cfg::BT * Cfg::HT) break;
    const int bl = e / Cfg::HT, kl = e % Cfg::HT, b = b0 + bl, k = k0 + kl;
    if (b >= p.B || k >= H) continue;
    const size_t row = (size_t)b * G, ek = (size_t)b * H + k;
    A dh = tile_sum<Cfg>(smem, bl, kl) + to_acc<A>(p.dy[ek]) + p.dh_direct[ek];
    if (z_tanh) {
      const A th = cells::tanh_(to_acc<A>(p.h_cur[ek]));
      dh += dz_h[i] * (A(1) - th * th);
    }
    A dz, dn, direct;
    cells::grurb_backward_zn<A>(to_acc<A>(p.gates[row + H + k]), to_acc<A>(p.gates[row + 2 * H + k]),
                                to_acc<A>(b < p.n_prev ? p.h_prev[ek] : p.h0[ek]), dh, dz, dn,
                                direct, p.cell.mut);
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
                                        rows, p.w_hn, H, H, k0, H, smem);
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
