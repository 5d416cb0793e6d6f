// Persistent LSTM/GRU kernels (forward and backward): one cooperative launch runs all T steps.
// Included by csrc/cuda/persistent_impl.cuh only; written against csrc/cuda/portable.h.
//
// Slicing: block k owns hidden units j in [j0, j0+U), j0 = k*U (the last block may own fewer:
// units with j >= H carry zero weights and write nothing). Shared memory of a block:
//   W     [U][NG][K+1] storage dtype S forward: NG = G gates, K = H, W[u][q][:] = W_hh[q*H+j0+u, :]
//                                      backward: NG = 1, K = G*H,   W[u][0][k] = W_hh[k, j0+u]
//   tile  [B][KC+1]  accumulation A    the chunk of the exchanged vector staged for this pass
//   state [B][U]     accumulation A    per-unit recurrent state kept on chip: LSTM forward c,
//                                      LSTM backward dc, GRU backward z*dh (the direct part of dh)
// Exchange through global memory (acc dtype, so half types carry h and da in float):
//   forward:  hbuf [2][B][H]: step s reads slot s%2 (h_{t-1}) and writes slot (s+1)%2 (h_t).
//             Slot (s+1)%2 was last read in step s-1, which every block finished before the
//             grid barrier that ended step s-1: double buffering needs one barrier per step.
//   backward: da [T][B][G*H] (also the input of the weight-gradient GEMMs; GRU: dgh): step s
//             writes da at its time t and reads the da of the step before it in processing order
//             (written before the last barrier); nothing is overwritten, one barrier per step.
// Memory model: FRNN_GRID_SYNC is cooperative_groups' grid.sync(), which orders every write of
// the grid before it against every read after it (it fences at device scope), so ordinary loads
// of the exchanged buffers are correct; those buffers are never read through __ldg / the
// non-coherent path. Deadlock freedom: the launcher launches cooperatively with at most one
// block per SM (checked against the occupancy calculator), and every thread of every block
// executes every barrier (all loop bounds and branches around barriers are block-uniform).
//
// Packed input (PackedSequence): params.steps = [count[0..T-1], offset[0..T-1]] (device ints,
// null for dense input): time step t has count[t] live rows (a prefix of the batch) stored at rows
// offset[t] .. of the per-row buffers; a pass runs over those rows only. A row that is not live
// keeps its on-chip state; rows becoming live in the reverse direction start from h0 (forward:
// both hbuf slots hold h0 on entry) / from dh_n (backward: the rows of da_{t+1} beyond the next
// step's count read as zero and dh_n is added at each row's last step).
//
// Work split inside a block for one pass: items (one unit, RB batch rows; RB = 4 from B >= 4 on,
// else 1) are spread over groups of KS lanes (KS a power of two <= 32, the smallest with
// items*KS >= threads); each lane accumulates a strided part of K for all NG gates and RB rows of
// its item in registers, the group reduces by xor-shuffles, and lane 0 of the group applies the
// cell (the "consume" callback): all gates of a unit are in the same thread, so the cell update
// needs no further exchange.
#pragma once

#include <cstdint>

#include "cells/cells.h"
#include "cuda/portable.h"

#if defined(__CUDACC__)
#define FRNN_PERS_UNROLL _Pragma("unroll")
#else
#define FRNN_PERS_UNROLL _Pragma("GCC unroll 8")
#endif

namespace fusedrnn {
namespace FRNN_BACKEND_NS {
namespace persistent_detail {

constexpr int kMaxThreads = 256;

__device__ __forceinline__ size_t align16(size_t n) {
  return (n + 15) / 16 * 16;
}

// Carve the dynamic shared memory: W, then tile, then state (each 16-byte aligned).
template <class S, class A>
struct Smem {
  S* w;
  A* tile;
  A* state;
  __device__ __forceinline__ Smem(unsigned char* base, int U, int NG, int K, int B, int KC) {
    size_t off = 0;
    w = reinterpret_cast<S*>(base + off);
    off += align16(size_t(U) * NG * (K + 1) * sizeof(S));
    tile = reinterpret_cast<A*>(base + off);
    off += align16(size_t(B) * (KC + 1) * sizeof(A));
    state = reinterpret_cast<A*>(base + off);
  }
};

// One pass: for every (b, u) pair of the block, acc[q] = sum_k src[b][k] * W[u][q][k]
// (src == nullptr: acc = 0, nothing staged; rows >= src_rows of src read as zero), then
// consume(b, u, acc) on lane 0 of the pair's group. Called by every thread of the block (contains __syncthreads and warp shuffles).
// src rows have stride ld; src is global memory written by other blocks before the last grid
// barrier (plain loads). Shared-memory rows are padded by one element (W: K+1, tile: KC+1) so
// lanes reading the same k of different rows hit different banks.
// Register blocking: a group owns RB batch rows of one unit, so each W element loaded from
// shared memory feeds RB FMAs and each staged h element feeds NG (shared-memory bytes per
// FMA: (NG + RB) / (NG * RB) loads instead of (NG + 1) / NG).
template <int NG, int RB, class S, class A, class F>
__device__ __forceinline__ void dot_pass_rb(const S* __restrict__ W, int K, int U, int B,
                                            const A* src, int64_t ld, int src_rows,
                                            A* __restrict__ tile, int KC, F& consume) {
  const int tid = threadIdx.x, nt = blockDim.x;
  const int ldw = K + 1, ldt = KC + 1;
  const int nbb = (B + RB - 1) / RB, items = nbb * U;  // item = (batch block, unit)
  int KS = 1;
  while (KS < 32 && items * KS < nt) KS *= 2;
  const int ngroups = nt / KS, group = tid / KS, lane = tid % KS;
  const int rounds = (items + ngroups - 1) / ngroups;
  const int nchunks = src ? (K + KC - 1) / KC : 0;
  for (int r = 0; r < rounds; ++r) {
    const int it = r * ngroups + group;
    const bool active = it < items;
    const int u = active ? it % U : 0, b0 = active ? (it / U) * RB : 0;
    int rows[RB];  // clamped to B-1: rows past B compute garbage that is never consumed
FRNN_PERS_UNROLL
    for (int i = 0; i < RB; ++i) rows[i] = min(b0 + i, B - 1);
    A acc[RB][NG];
FRNN_PERS_UNROLL
    for (int i = 0; i < RB; ++i)
FRNN_PERS_UNROLL
      for (int q = 0; q < NG; ++q) acc[i][q] = A(0);
    for (int c = 0; c < nchunks; ++c) {
      const int k0 = c * KC, kn = min(KC, K - k0);
      if (nchunks > 1 || r == 0) {  // block-uniform: stage src[:, k0:k0+kn] into the tile
        __syncthreads();            // every thread finished reading the previous tile
        for (int i = tid; i < B * kn; i += nt) {
          const int bb = i / kn, kk = i - bb * kn;
          tile[bb * ldt + kk] = bb < src_rows ? src[bb * ld + k0 + kk] : A(0);
        }
        __syncthreads();
      }
      if (active) {
        const S* wr = W + size_t(u) * NG * ldw + k0;
        for (int k = lane; k < kn; k += KS) {
          A w[NG];
FRNN_PERS_UNROLL
          for (int q = 0; q < NG; ++q) w[q] = static_cast<A>(wr[q * ldw + k]);
FRNN_PERS_UNROLL
          for (int i = 0; i < RB; ++i) {
            const A h = tile[rows[i] * ldt + k];
FRNN_PERS_UNROLL
            for (int q = 0; q < NG; ++q) acc[i][q] += w[q] * h;
          }
        }
      }
    }
    if (KS > 1) {  // KS is block-uniform; groups are aligned inside warps (32 % KS == 0)
FRNN_PERS_UNROLL
      for (int i = 0; i < RB; ++i)
FRNN_PERS_UNROLL
        for (int q = 0; q < NG; ++q)
          for (int off = KS / 2; off > 0; off /= 2)
            acc[i][q] += __shfl_xor_sync(0xffffffffu, acc[i][q], off);
    }
    if (active && lane == 0) {
FRNN_PERS_UNROLL
      for (int i = 0; i < RB; ++i)
        if (b0 + i < B) consume(b0 + i, u, acc[i]);
    }
  }
}

// Register blocking by 4 batch rows from B >= 4 on (block-uniform choice), else none.
template <int NG, class S, class A, class F>
__device__ __forceinline__ void dot_pass(const S* __restrict__ W, int K, int U, int B,
                                         const A* src, int64_t ld, int src_rows,
                                         A* __restrict__ tile, int KC, F&& consume) {
  if (B >= 4)
    dot_pass_rb<NG, 4>(W, K, U, B, src, ld, src_rows, tile, KC, consume);
  else
    dot_pass_rb<NG, 1>(W, K, U, B, src, ld, src_rows, tile, KC, consume);
}

// Load this block's slice of W_hh (global, storage dtype) into shared memory (rows padded to
// K+1 elements; the pad is never read).
//   rows (forward):   W[u][q][k] = w_hh[(q*H + j0+u) * H + k], NG = G, K = H
//   cols (backward):  W[u][0][k] = w_hh[k * H + j0+u],         NG = 1, K = G*H
template <class S>
__device__ __forceinline__ void load_w_rows(S* W, const S* __restrict__ w_hh, int G, int H, int U,
                                            int j0) {
  const int n = U * G * H;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int k = i % H, uq = i / H, q = uq % G, u = uq / G;
    const int j = j0 + u;
    W[uq * (H + 1) + k] = j < H ? w_hh[(int64_t(q) * H + j) * H + k] : S(0.0f);
  }
}

template <class S>
__device__ __forceinline__ void load_w_cols(S* W, const S* __restrict__ w_hh, int G, int H, int U,
                                            int j0) {
  const int K = G * H, n = U * K;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int u = i % U, k = i / U;  // consecutive threads read consecutive columns of a row
    const int j = j0 + u;
    W[u * (K + 1) + k] = j < H ? w_hh[int64_t(k) * H + j] : S(0.0f);
  }
}

__device__ __forceinline__ int64_t time_of(int64_t s, int64_t T, bool reverse) {
  return reverse ? T - 1 - s : s;
}

// Live rows of time step t and the first row of t in the per-row buffers (see "Packed input").
__device__ __forceinline__ int step_rows(const int* steps, int64_t t, int B) {
  return steps ? steps[t] : B;
}
__device__ __forceinline__ int64_t step_offset(const int* steps, int64_t t, int T, int B) {
  return steps ? int64_t(steps[T + t]) : t * B;
}

// Backward pass s (s = T-1 down to 0) and its neighbours in time: n rows live at offset off;
// rows b < n_next also ran the next time step (their dh comes from that step's gate gradients,
// at off_next), rows b < n_prev the previous one (their state comes from it, at off_prev).
// n_next / n_prev are 0 at the ends of the sequence (then the offsets are not used).
struct BwdStep {
  int n, n_next, n_prev;
  int64_t off, off_next, off_prev;
};
__device__ __forceinline__ BwdStep bwd_step(const int* steps, int s, int T, bool reverse, int B) {
  const int64_t t = time_of(s, T, reverse), tn = time_of(s + 1, T, reverse),
                tp = time_of(s - 1, T, reverse);
  BwdStep st;
  st.n = step_rows(steps, t, B);
  st.off = step_offset(steps, t, T, B);
  st.n_next = s == T - 1 ? 0 : min(st.n, step_rows(steps, tn, B));
  st.n_prev = s == 0 ? 0 : step_rows(steps, tp, B);
  st.off_next = st.n_next ? step_offset(steps, tn, T, B) : 0;
  st.off_prev = st.n_prev ? step_offset(steps, tp, T, B) : 0;
  return st;
}

// ------------------------------------------------------------------ parameters
// Shapes: T steps, B rows, H hidden units. Storage dtype S, accumulation dtype A.
template <class S, class A>
struct LstmFwdParams {
  const A* xproj;   // [T,B,4H] x W_ih^T + b_ih + b_hh
  const S* w_hh;    // [4H,H]
  const S* c0;      // [B,H]
  A* hbuf;          // [2,B,H] slot 0 holds h0 on entry
  S* y;             // [T,B,H]
  S* gates;         // [T,B,4H] activations i,f,g,o, or nullptr: not stored (no backward)
  S* cells;         // [T,B,H], or nullptr: not stored
  const int* steps; // [2T] packed input, or nullptr (dense)
  int T, B, H, U, KC;
  bool reverse;
  S* c_n = nullptr; // [B,H] out, or nullptr: each row's last cell state (when cells is not kept)
};

template <class S, class A>
struct LstmBwdParams {
  const S* dy;      // [T,B,H]
  const S* dh_n;    // [B,H]
  const S* dc_n;    // [B,H]
  const S* c0;      // [B,H]
  const S* w_hh;    // [4H,H]
  const S* gates;   // [T,B,4H]
  const S* cells;   // [T,B,H]
  A* da;            // [T,B,4H] out: gate pre-activation gradients
  S* dh0;           // [B,H] out
  S* dc0;           // [B,H] out (dh0: da_{first step} W_hh, or 0 when dh0_on_host)
  const int* steps; // [2T] packed input, or nullptr (dense)
  int T, B, H, U, KC;
  bool reverse, dh0_on_host;  // dh0_on_host: the rows' first steps differ (packed, reverse)
};

template <class S, class A>
struct GruFwdParams {
  const A* xproj;   // [T,B,3H] x W_ih^T + b_ih
  const A* b_hh;    // [3H] or nullptr
  const S* w_hh;    // [3H,H]
  A* hbuf;          // [2,B,H] slot 0 holds h0 on entry
  S* y;             // [T,B,H]
  S* gates;         // [T,B,3H] activations r,z,n, or nullptr: not stored (no backward)
  S* ghn;           // [T,B,H]  W_hn h_{t-1} + b_hn, or nullptr: not stored
  const int* steps; // [2T] packed input, or nullptr (dense)
  int T, B, H, U, KC;
  bool reverse;
};

template <class S, class A>
struct GruBwdParams {
  const S* dy;      // [T,B,H]
  const S* dh_n;    // [B,H]
  const S* h0;      // [B,H]
  const S* y;       // [T,B,H]
  const S* w_hh;    // [3H,H]
  const S* gates;   // [T,B,3H]
  const S* ghn;     // [T,B,H]
  A* dgx;           // [T,B,3H] out: input-side gate gradients
  A* dgh;           // [T,B,3H] out: recurrent-side gate gradients
  S* dh0;           // [B,H] out (only z*dh of the first steps when dh0_on_host)
  const int* steps; // [2T] packed input, or nullptr (dense)
  int T, B, H, U, KC;
  bool reverse, dh0_on_host;
};

// ------------------------------------------------------------------ LSTM forward
template <class S, class A>
__global__ void __launch_bounds__(kMaxThreads, 1) lstm_fwd_kernel(LstmFwdParams<S, A> p) {
  FRNN_DYNAMIC_SMEM(unsigned char, smem_raw);
  const int H = p.H, B = p.B, U = p.U, G4 = 4 * H;
  const int j0 = blockIdx.x * U;
  Smem<S, A> sm(smem_raw, U, 4, H, B, p.KC);
  load_w_rows(sm.w, p.w_hh, 4, H, U, j0);
  for (int i = threadIdx.x; i < B * U; i += blockDim.x) {
    const int b = i / U, j = j0 + i % U;
    sm.state[i] = j < H ? static_cast<A>(p.c0[b * H + j]) : A(0);
  }
  // (dot_pass begins with __syncthreads: W and state are complete before first use)
  for (int s = 0; s < p.T; ++s) {
    const int64_t t = time_of(s, p.T, p.reverse);
    const int n = step_rows(p.steps, t, B);
    const int64_t off = step_offset(p.steps, t, p.T, B);
    const A* hprev = p.hbuf + int64_t(s % 2) * B * H;
    A* hnext = p.hbuf + int64_t((s + 1) % 2) * B * H;
    dot_pass<4>(sm.w, H, U, n, hprev, H, n, sm.tile, p.KC, [&](int b, int u, const A* acc) {
      const int j = j0 + u;
      if (j >= H) return;
      const int64_t row = off + b;
      const A* xp = p.xproj + row * G4;
      A i, f, g, o, c, h;
      cells::lstm_forward<A>(acc[0] + xp[j], acc[1] + xp[H + j], acc[2] + xp[2 * H + j],
                             acc[3] + xp[3 * H + j], sm.state[b * U + u], i, f, g, o, c, h);
      if (p.gates) {
        S* gt = p.gates + row * G4;
        gt[j] = static_cast<S>(i);
        gt[H + j] = static_cast<S>(f);
        gt[2 * H + j] = static_cast<S>(g);
        gt[3 * H + j] = static_cast<S>(o);
      }
      if (p.cells) p.cells[row * H + j] = static_cast<S>(c);
      p.y[row * H + j] = static_cast<S>(h);
      sm.state[b * U + u] = c;
      hnext[b * H + j] = h;
    });
    if (s + 1 < p.T) FRNN_GRID_SYNC();  // h_t of every block visible before step s+1 reads it
  }
  if (p.c_n) {
    // A row's state stops changing after its last step (packed), so the final state is c_n.
    __syncthreads();  // the consume callbacks of other threads wrote sm.state
    for (int i = threadIdx.x; i < B * U; i += blockDim.x) {
      const int b = i / U, j = j0 + i % U;
      if (j < H) p.c_n[b * H + j] = static_cast<S>(sm.state[i]);
    }
  }
}

// ------------------------------------------------------------------ LSTM backward
template <class S, class A>
__global__ void __launch_bounds__(kMaxThreads, 1) lstm_bwd_kernel(LstmBwdParams<S, A> p) {
  FRNN_DYNAMIC_SMEM(unsigned char, smem_raw);
  const int H = p.H, B = p.B, U = p.U, G4 = 4 * H;
  const int j0 = blockIdx.x * U;
  Smem<S, A> sm(smem_raw, U, 1, G4, B, p.KC);
  load_w_cols(sm.w, p.w_hh, 4, H, U, j0);
  for (int i = threadIdx.x; i < B * U; i += blockDim.x) {
    const int b = i / U, j = j0 + i % U;
    sm.state[i] = j < H ? static_cast<A>(p.dc_n[b * H + j]) : A(0);
  }
  __syncthreads();  // state complete even when the first pass stages nothing
  for (int s = p.T - 1; s >= 0; --s) {
    // Rows b < n_next take dh from da_{next} W_hh, the others (at their last step) from dh_n;
    // rows b < n_prev start from the previous step's c, the others from c0.
    const BwdStep bs = bwd_step(p.steps, s, p.T, p.reverse, B);
    const int n = bs.n, n_next = bs.n_next, n_prev = bs.n_prev;
    const int64_t off = bs.off;
    const A* da_next = n_next ? p.da + bs.off_next * G4 : nullptr;
    const S* c_prev = n_prev ? p.cells + bs.off_prev * H : p.c0;
    dot_pass<1>(sm.w, G4, U, n, da_next, G4, n_next, sm.tile, p.KC,
                [&](int b, int u, const A* acc) {
      const int j = j0 + u;
      if (j >= H) return;
      const int64_t row = off + b;
      A dh = acc[0] + static_cast<A>(p.dy[row * H + j]);
      if (b >= n_next) dh += static_cast<A>(p.dh_n[b * H + j]);
      const S* gt = p.gates + row * G4;
      A dai, daf, dag, dao, dcp;
      cells::lstm_backward<A>(static_cast<A>(gt[j]), static_cast<A>(gt[H + j]),
                              static_cast<A>(gt[2 * H + j]), static_cast<A>(gt[3 * H + j]),
                              static_cast<A>(p.cells[row * H + j]),
                              static_cast<A>(b < n_prev ? c_prev[b * H + j] : p.c0[b * H + j]),
                              dh, sm.state[b * U + u], dai,
                              daf, dag, dao, dcp);
      A* d = p.da + row * G4;
      d[j] = dai;
      d[H + j] = daf;
      d[2 * H + j] = dag;
      d[3 * H + j] = dao;
      sm.state[b * U + u] = dcp;
    });
    FRNN_GRID_SYNC();  // da_t of every block visible before the next pass reads it
  }
  // dh0 = da_{first step} W_hh, dc0 = the carried dc. The first step of every row is time
  // step time_of(0) (all B rows live) unless packed and reverse: then the host does dh0.
  const int64_t t0 = time_of(0, p.T, p.reverse);
  const A* da0 = p.dh0_on_host ? nullptr : p.da + step_offset(p.steps, t0, p.T, B) * G4;
  dot_pass<1>(sm.w, G4, U, B, da0, G4, B, sm.tile, p.KC, [&](int b, int u, const A* acc) {
    const int j = j0 + u;
    if (j >= H) return;
    p.dh0[b * H + j] = static_cast<S>(acc[0]);
    p.dc0[b * H + j] = static_cast<S>(sm.state[b * U + u]);
  });
}

// ------------------------------------------------------------------ GRU forward
template <class S, class A>
__global__ void __launch_bounds__(kMaxThreads, 1) gru_fwd_kernel(GruFwdParams<S, A> p) {
  FRNN_DYNAMIC_SMEM(unsigned char, smem_raw);
  const int H = p.H, B = p.B, U = p.U, G3 = 3 * H;
  const int j0 = blockIdx.x * U;
  Smem<S, A> sm(smem_raw, U, 3, H, B, p.KC);
  load_w_rows(sm.w, p.w_hh, 3, H, U, j0);
  for (int s = 0; s < p.T; ++s) {
    const int64_t t = time_of(s, p.T, p.reverse);
    const int n = step_rows(p.steps, t, B);
    const int64_t off = step_offset(p.steps, t, p.T, B);
    const A* hprev = p.hbuf + int64_t(s % 2) * B * H;
    A* hnext = p.hbuf + int64_t((s + 1) % 2) * B * H;
    dot_pass<3>(sm.w, H, U, n, hprev, H, n, sm.tile, p.KC, [&](int b, int u, const A* acc) {
      const int j = j0 + u;
      if (j >= H) return;
      const int64_t row = off + b;
      const A* xp = p.xproj + row * G3;
      A hr = acc[0], hz = acc[1], hn = acc[2];
      if (p.b_hh) hr += p.b_hh[j], hz += p.b_hh[H + j], hn += p.b_hh[2 * H + j];
      A r, z, n, h;
      cells::gru_forward<A>(xp[j], xp[H + j], xp[2 * H + j], hr, hz, hn, hprev[b * H + j], r, z,
                            n, h);
      if (p.gates) {
        S* gt = p.gates + row * G3;
        gt[j] = static_cast<S>(r);
        gt[H + j] = static_cast<S>(z);
        gt[2 * H + j] = static_cast<S>(n);
      }
      if (p.ghn) p.ghn[row * H + j] = static_cast<S>(hn);
      p.y[row * H + j] = static_cast<S>(h);
      hnext[b * H + j] = h;
    });
    if (s + 1 < p.T) FRNN_GRID_SYNC();
  }
}

// ------------------------------------------------------------------ GRU backward
template <class S, class A>
__global__ void __launch_bounds__(kMaxThreads, 1) gru_bwd_kernel(GruBwdParams<S, A> p) {
  FRNN_DYNAMIC_SMEM(unsigned char, smem_raw);
  const int H = p.H, B = p.B, U = p.U, G3 = 3 * H;
  const int j0 = blockIdx.x * U;
  Smem<S, A> sm(smem_raw, U, 1, G3, B, p.KC);
  load_w_cols(sm.w, p.w_hh, 3, H, U, j0);
  for (int i = threadIdx.x; i < B * U; i += blockDim.x) sm.state[i] = A(0);
  __syncthreads();
  for (int s = p.T - 1; s >= 0; --s) {
    const BwdStep bs = bwd_step(p.steps, s, p.T, p.reverse, B);
    const int n = bs.n, n_next = bs.n_next, n_prev = bs.n_prev;
    const int64_t off = bs.off;
    const A* dgh_next = n_next ? p.dgh + bs.off_next * G3 : nullptr;
    const S* h_prev = n_prev ? p.y + bs.off_prev * H : p.h0;
    dot_pass<1>(sm.w, G3, U, n, dgh_next, G3, n_next, sm.tile, p.KC,
                [&](int b, int u, const A* acc) {
      const int j = j0 + u;
      if (j >= H) return;
      const int64_t row = off + b;
      // dh_t = dy_t + z_{t+1} dh_{t+1} (state) + dgh_{t+1} W_hh[:, j] (acc), or + dh_n at the
      // row's last step (b >= n_next)
      A dh = acc[0] + sm.state[b * U + u] + static_cast<A>(p.dy[row * H + j]);
      if (b >= n_next) dh += static_cast<A>(p.dh_n[b * H + j]);
      const S* gt = p.gates + row * G3;
      A dxr, dxz, dxn, dhn, dhd;
      cells::gru_backward<A>(static_cast<A>(gt[j]), static_cast<A>(gt[H + j]),
                             static_cast<A>(gt[2 * H + j]), static_cast<A>(p.ghn[row * H + j]),
                             static_cast<A>(b < n_prev ? h_prev[b * H + j] : p.h0[b * H + j]), dh,
                             dxr, dxz, dxn, dhn, dhd);
      A* gx = p.dgx + row * G3;
      A* gh = p.dgh + row * G3;
      gx[j] = dxr;
      gx[H + j] = dxz;
      gx[2 * H + j] = dxn;
      gh[j] = dxr;
      gh[H + j] = dxz;
      gh[2 * H + j] = dhn;
      sm.state[b * U + u] = dhd;
    });
    FRNN_GRID_SYNC();
  }
  const int64_t t0 = time_of(0, p.T, p.reverse);
  const A* dgh0 = p.dh0_on_host ? nullptr : p.dgh + step_offset(p.steps, t0, p.T, B) * G3;
  dot_pass<1>(sm.w, G3, U, B, dgh0, G3, B, sm.tile, p.KC, [&](int b, int u, const A* acc) {
    const int j = j0 + u;
    if (j >= H) return;
    p.dh0[b * H + j] = static_cast<S>(acc[0] + sm.state[b * U + u]);
  });
}

}  // namespace persistent_detail
}  // namespace FRNN_BACKEND_NS
}  // namespace fusedrnn
