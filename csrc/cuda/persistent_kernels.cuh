// Persistent LSTM/GRU kernels (forward and backward): one cooperative launch runs all T steps.
// Included by csrc/cuda/persistent_impl.cuh only; written against csrc/cuda/portable.h.
//
// Slicing: block k owns hidden units j in [j0, j0+U), j0 = k*U (the last block may own fewer:
// units with j >= H carry zero weights and write nothing). Shared memory of a block (each region
// 16-byte aligned, in this order; persistent_plan sizes it with the same formulas):
//   W     [U][NG][K+1] storage dtype S forward: NG = G gates, K = H, W[u][q][:] = W_hh[q*H+j0+u, :]
//                                      backward: NG = 1, K = G*H,   W[u][0][k] = W_hh[k, j0+u]
//                                      forward on tensor cores (mma_pass): [R16][K16+8], below
//                                      a wavefront's layers: W_ih's slice after it, in the same
//                                      layout (FwdLaunch::wave; the first layer leaves it unused)
//   tile  [B][KC+V]  exchange dtype E  the chunk of the exchanged vector staged for this pass;
//                                      V = 16 / sizeof(E) keeps its rows 16-byte aligned (the
//                                      cluster forward: two tiles, all of h_{t-1}, KC = H)
//   state [B][U]     accumulation A    per-unit recurrent state kept on chip: LSTM forward c,
//                                      LSTM backward dc, GRU forward h_{t-1} (as exchanged),
//                                      GRU backward z*dh (the direct part of dh)
//   pre   [2][B][NP][U]                the block's slice of a step's read-only inputs, prefetched
//                                      one step ahead (double-buffered by step parity):
//                                      forward NP = G segments of xproj (A), backward the saved
//                                      gates (G), cells/ghn, dy and the previous c / h (S)
//   part  [warps][16][8] fp32          mma_pass's partial sums (tensor-core forward only)
// Exchange through global memory (the cluster forward instead: "the cluster forward" below):
//   forward:  hbuf [2][B][H] in S, as the stepwise kernels and cuDNN carry h: step s reads slot
//             s%2 (h_{t-1}) and writes slot (s+1)%2 (h_t). Slot (s+1)%2 was last read in step
//             s-1, which every block finished before the grid barrier that ended step s-1:
//             double buffering needs one barrier per step. Where the launcher passes `flags`
//             (2- and 4-byte types, KC >= H, not a wavefront) h_t goes instead into flags
//             [2][B][H] as flag words and the next step polls them: no grid barrier in the
//             forward ("the flag-word exchange" below).
//   backward: da [T][B][G*H] in A (also the input of the weight-gradient GEMMs; GRU: dgh): step s
//             writes da at its time t and reads the da of the step before it in processing order
//             (written before the last barrier); nothing is overwritten, one barrier per step.
// Loads (what keeps a step at few dependent round trips to L2):
//   - the tile: 16-byte cp.async.cg (L2 only) when rows, chunk and pointer are 16-byte aligned,
//     else register copies; both keep every load of a thread in flight at once and walk their
//     indices by increments (no divide per element);
//   - the prefetch: cp.async of 4- or 8-byte words issued before the grid barrier that ends the
//     previous step, so they land while the block waits; the first tile's wait retires them
//     (the cluster forward: issued at the previous step's start, a whole step ahead, and
//     retired before that step's closing block barrier, so a step has no barrier of its own for
//     it);
//   - the index math a step repeats (the copies' walks, the warp split, the push's targets) is
//     made once per launch: a divide is ~20 dependent instructions, and a step's chain is what
//     bounds it at small batches.
//     Half types need whole 4-byte words (U and H even, pointers aligned), else the consume
//     step reads those inputs from global memory itself (block-uniform choice);
//   - W (once per launch): register copies, 128-bit when aligned, several in flight per thread.
// Memory model: FRNN_GRID_SYNC is cooperative_groups' grid.sync(), which orders every write of
// the grid before it against every read after it (it fences at device scope); the flag words
// need no fence (value and flag in one atomic word, read at gpu scope). The exchanged
// buffers are read after the barrier by ordinary loads or by cp.async.cg, which bypasses L1;
// never through __ldg / the non-coherent path. Prefetched inputs were written before the launch
// (the input GEMM, the forward launch), so reading them early or through L1 is safe. Deadlock
// freedom: the launcher launches cooperatively with at most one block per SM (checked against
// the occupancy calculator), and every thread of every block executes every barrier (all loop
// bounds and branches around barriers are block-uniform).
//
// Packed input (PackedSequence): params.steps = [count[0..T-1], offset[0..T-1]] (device ints,
// null for dense input): time step t has count[t] live rows (a prefix of the batch) stored at rows
// offset[t] .. of the per-row buffers; a pass runs over those rows only. A row that is not live
// keeps its on-chip state; rows becoming live in the reverse direction start from h0 (forward:
// both hbuf slots and the GRU's state hold h0 on entry; the flag-word exchange reads them from
// hbuf's slot 0) / from dh_n (backward: the rows of
// da_{t+1} beyond the next step's count read as zero and dh_n is added at each row's last step).
//
// Work split inside a block for one pass: items (one unit, RB batch rows; RB = 4 from B >= 4 on,
// else 1) are spread over groups of KS lanes (KS a power of two <= 32, the smallest with
// items*KS >= threads); each lane accumulates a strided part of K for all NG gates and RB rows of
// its item in registers, the group reduces by xor-shuffles (unrolled: the RB*NG sums of one
// distance are independent), and lane 0 of the group applies the cell (the "consume" callback):
// all gates of a unit are in the same thread, so the cell update needs no further exchange.
#pragma once

#include <cstdint>

#include "cells/cells.h"
#include "cuda/cluster.h"
#include "cuda/flag_words.h"
#include "cuda/portable.h"
#include "cuda/tile_mma.cuh"  // kern::mma_half

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

// Elements of T in 16 bytes (the tile's row padding and cp.async width), and the cp.async word
// of the prefetch: 4 bytes (two halves) or one element of 4 / 8 bytes.
template <class T>
struct Vec16 {
  static constexpr int n = int(16 / sizeof(T));
};
template <class T>
struct Word {
  static constexpr int bytes = sizeof(T) < 4 ? 4 : int(sizeof(T));
  static constexpr int elems = bytes / int(sizeof(T));
};

template <class T>
__device__ __forceinline__ bool aligned_to(const T* p, int bytes) {
  return reinterpret_cast<uintptr_t>(p) % uintptr_t(bytes) == 0;
}

// Phase marks of a forward step (FwdLaunch::trace; set by fusedrnn_persistent.set_trace for
// benchmarks and tests, null otherwise): thread 0 of a block writes portable::clock_ticks() at
// each mark of a launch step it runs, so the gaps say where a step's time goes. With the trace
// off a mark is one block-uniform test.
//   kStepStart    the step begins (the previous step's barrier passed)
//   kTileReady    h_{t-1} staged and the prefetch retired (a cluster: the peers' slices of
//                 h_{t-1} arrived, the prefetch retired in the previous step; a wavefront
//                 layer's input pass comes before it)
//   kProductDone  every warp's product of the first round done (after its partial sums' barrier;
//                 where each tile pair has a warp of its own, gather_gates: warp 0's; FFMA:
//                 thread 0's own group reduced)
//   kConsumed     the pass returned: thread 0's cell updates applied
//   kArrived      cluster: h_t pushed (and the barrier's arrival, where there is one); grid: the
//                 next prefetch issued
//   kStepEnd      the barrier passed (after the last step: y_t stored)
enum FwdMark { kStepStart, kTileReady, kProductDone, kConsumed, kArrived, kStepEnd, kMarks };
struct Marks {
  long long* at = nullptr;  // this block's marks of this step, or null
  __device__ __forceinline__ void operator()(int m) const {
    if (at && threadIdx.x == 0) at[m] = portable::clock_ticks();
  }
};

// Carve the dynamic shared memory: W (S, w_elems), tiles x tile (E, tile_rows x ldt), state
// (A, B*U), pre (P, 2*B*NP*U), with two tiles (the cluster forward) bars (two mbarriers, 16
// bytes), part (fp32, the tensor-core pass's partial sums), each 16-byte aligned.
template <class S, class E, class A, class P>
struct Smem {
  S* w;
  E* tile;
  A* state;
  P* pre;
  float* part;
  uint64_t* bars;  // the cluster forward's two mbarriers (tiles == 2), else null
  int ldt;  // tile row stride, elements
  size_t tile_stride;  // elements from one tile to the next (the cluster forward's two)
  __device__ __forceinline__ Smem(unsigned char* base, size_t w_elems, int tile_rows, int KC,
                                  int B, int U, int NP, int tiles = 1) {
    size_t off = 0;
    ldt = KC + Vec16<E>::n;
    w = reinterpret_cast<S*>(base + off);
    off += align16(w_elems * sizeof(S));
    tile = reinterpret_cast<E*>(base + off);
    tile_stride = align16(size_t(tile_rows) * ldt * sizeof(E)) / sizeof(E);
    off += tiles * tile_stride * sizeof(E);
    state = reinterpret_cast<A*>(base + off);
    off += align16(size_t(B) * U * sizeof(A));
    pre = reinterpret_cast<P*>(base + off);
    off += align16(size_t(2) * B * NP * U * sizeof(P));
    bars = nullptr;
    if (tiles == 2) {
      bars = reinterpret_cast<uint64_t*>(base + off);
      off += 16;
    }
    part = reinterpret_cast<float*>(base + off);
  }
};

// Block-wide copy of a rows x cols block through registers, converting to D:
//   dst[r*ddr + c*ddc] = r < valid_rows && c < valid_cols ? D(src[r*lds + c]) : D(0)
// V elements per load (V = 16 / sizeof(E): 128-bit; the caller guarantees cols, valid_cols and
// lds multiples of V and src 16-byte aligned; else V = 1). Each thread issues kInFlight loads
// before its first store, and walks (r, c) by increments: one divide per call, none per element.
// src is read by ordinary loads (never __ldg): it may be a buffer other blocks wrote before the
// last grid barrier.
template <int V, class D, class E>
__device__ __forceinline__ void copy_block_v(D* dst, int64_t ddr, int64_t ddc, const E* src,
                                             int64_t lds, int rows, int valid_rows, int cols,
                                             int valid_cols) {
  struct alignas(sizeof(E) * V) Pack {
    E v[V];
  };
  constexpr int kInFlight = V > 1 ? 4 : 8;
  const int nt = blockDim.x, tid = threadIdx.x;
  const int wc = cols / V, n = rows * wc;
  if (n <= 0) return;
  const int sr = nt / wc, sc = nt - sr * wc;
  int r = tid / wc, c = tid - r * wc;
  for (int i0 = tid; i0 < n; i0 += kInFlight * nt) {
    Pack buf[kInFlight];
    int rr[kInFlight], cc[kInFlight];
FRNN_PERS_UNROLL
    for (int m = 0; m < kInFlight; ++m) {
      rr[m] = r, cc[m] = c;
      if (i0 + m * nt < n && r < valid_rows && c * V < valid_cols) {
        buf[m] = *reinterpret_cast<const Pack*>(src + int64_t(r) * lds + int64_t(c) * V);
      } else {
FRNN_PERS_UNROLL
        for (int v = 0; v < V; ++v) buf[m].v[v] = E(0.0f);
      }
      c += sc, r += sr;
      if (c >= wc) c -= wc, ++r;
    }
FRNN_PERS_UNROLL
    for (int m = 0; m < kInFlight; ++m) {
      if (i0 + m * nt >= n) break;
FRNN_PERS_UNROLL
      for (int v = 0; v < V; ++v)
        dst[int64_t(rr[m]) * ddr + int64_t(cc[m] * V + v) * ddc] = static_cast<D>(buf[m].v[v]);
    }
  }
}

template <class D, class E>
__device__ __forceinline__ void copy_block(D* dst, int64_t ddr, int64_t ddc, const E* src,
                                           int64_t lds, int rows, int valid_rows, int cols,
                                           int valid_cols) {
  constexpr int V = Vec16<E>::n;
  if (cols % V == 0 && valid_cols % V == 0 && lds % V == 0 && aligned_to(src, 16))
    copy_block_v<V>(dst, ddr, ddc, src, lds, rows, valid_rows, cols, valid_cols);
  else
    copy_block_v<1>(dst, ddr, ddc, src, lds, rows, valid_rows, cols, valid_cols);
}

// A thread's walk over a block of rows x wc words in row-major order, blockDim.x words a turn:
// its first (r, c) and the turn's stride (sr rows, sc words), from two divides; the copies then
// advance by increments. Depends only on wc, so a kernel makes the walks of its per-step copies
// once per launch (what a step repeats stays free of divides, each ~20 dependent instructions).
struct Walk {
  int wc = 0, r = 0, c = 0, sr = 0, sc = 0;
  Walk() = default;
  __device__ __forceinline__ explicit Walk(int words) : wc(words) {
    if (wc <= 0) return;
    const int nt = blockDim.x, tid = threadIdx.x;
    sr = nt / wc, sc = nt - sr * wc, r = tid / wc, c = tid - r * wc;
  }
};

// Block-wide cp.async of a rows x cols block in W-byte words (W / sizeof(E) elements each):
//   dst[r*ldd + c] = r < valid_rows ? src[r*lds + c] : 0
// cols, ldd, lds and both pointers must be whole words (the caller checks); walk: Walk(cols /
// (W / sizeof(E))). Issued, not committed: the caller commits and a later wait retires the
// copies.
template <int W, class E>
__device__ __forceinline__ void async_block(E* dst, int ldd, const E* src, int64_t lds, int rows,
                                            int valid_rows, const Walk& walk) {
  constexpr int EPW = W / int(sizeof(E));
  static_assert(EPW >= 1 && EPW * int(sizeof(E)) == W, "a word holds whole elements");
  const int nt = blockDim.x, wc = walk.wc, n = rows * wc;
  int r = walk.r, c = walk.c;
  for (int i = threadIdx.x; i < n; i += nt) {
    const bool ok = r < valid_rows;  // else zero-filled; the source address is row 0's
    portable::cp_async<W>(dst + r * ldd + c * EPW, src + (ok ? int64_t(r) * lds : 0) + c * EPW,
                          ok);
    c += walk.sc, r += walk.sr;
    if (c >= wc) c -= wc, ++r;
  }
}

template <int W, class E>
__device__ __forceinline__ void async_block(E* dst, int ldd, const E* src, int64_t lds, int rows,
                                            int valid_rows, int cols) {
  async_block<W>(dst, ldd, src, lds, rows, valid_rows, Walk(cols / (W / int(sizeof(E)))));
}

// Stage src[0:rows, 0:kn] into the tile (rows >= src_rows read as zero; columns kn..kz-1 set to
// zero: a tensor-core k-step's tail) once every thread finished reading the previous tile;
// returns with this thread's cp.async groups retired (the tile's, and any prefetch committed
// before it) and the block synchronised. vec: 16-byte cp.async (rows and src 16-byte aligned).
template <class E>
__device__ __forceinline__ void stage_chunk(E* tile, int ldt, const E* src, int64_t ld, int rows,
                                            int src_rows, int kn, int kz, bool vec) {
  __syncthreads();
  if (vec)
    async_block<16>(tile, ldt, src, ld, rows, src_rows, kn);
  else
    copy_block_v<1>(tile, ldt, 1, src, ld, rows, src_rows, kn, kn);
  for (int i = threadIdx.x; i < rows * (kz - kn); i += blockDim.x)
    tile[(i / (kz - kn)) * ldt + kn + i % (kz - kn)] = E(0.0f);
  portable::cp_async_commit();
  portable::cp_async_wait<0>();
  __syncthreads();
}

// A pass that stages nothing still retires the caller's prefetch before it consumes.
__device__ __forceinline__ void retire_copies() {
  portable::cp_async_wait<0>();
  __syncthreads();
}

// One pass: for every (b, u) pair of the block, acc[q] = sum_k src[b][k] * W[u][q][k]
// (src == nullptr: acc = 0, nothing staged; rows >= src_rows of src read as zero), then
// consume(b, u, acc) on lane 0 of the pair's group. Called by every thread of the block (contains
// __syncthreads and warp shuffles). Before the first consume, every cp.async this thread
// committed has landed and the block has synchronised: the caller's prefetch is readable.
// staged: the tile already holds src (one chunk, KC >= K), and the copies the consume reads
// landed before the block last synchronised (the cluster forward: end_fwd_step retires the
// next step's prefetch before its block barrier): the pass then stages and waits for nothing.
// src rows have stride ld (ld == K); src is global memory written by other blocks before the
// last grid barrier. W rows are padded by one element so lanes reading the same k of different
// rows hit different banks.
// Register blocking: a group owns RB batch rows of one unit, so each W element loaded from
// shared memory feeds RB FMAs and each staged h element feeds NG (shared-memory bytes per
// FMA: (NG + RB) / (NG * RB) loads instead of (NG + 1) / NG).
template <int NG, int RB, class A, class S, class E, class F>
__device__ __forceinline__ void dot_pass_rb(const S* __restrict__ W, int K, int U, int B,
                                            const E* src, int64_t ld, int src_rows,
                                            E* __restrict__ tile, int ldt, int KC, bool staged,
                                            F& consume, const Marks& mk) {
  const int tid = threadIdx.x, nt = blockDim.x;
  const int ldw = K + 1;
  const int nbb = (B + RB - 1) / RB, items = nbb * U;  // item = (batch block, unit)
  int KS = 1;
  while (KS < 32 && items * KS < nt) KS *= 2;
  const int ngroups = nt / KS, group = tid / KS, lane = tid % KS;
  const int rounds = (items + ngroups - 1) / ngroups;
  const int nchunks = src ? (K + KC - 1) / KC : 0;
  constexpr int V = Vec16<E>::n;
  const bool vec = src && K % V == 0 && KC % V == 0 && ld % V == 0 && aligned_to(src, 16);
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
    if (nchunks == 0 && r == 0) retire_copies();
    for (int c = 0; c < nchunks; ++c) {
      const int k0 = c * KC, kn = min(KC, K - k0);
      if (!staged && (nchunks > 1 || r == 0))  // block-uniform
        stage_chunk(tile, ldt, src + k0, ld, B, src_rows, kn, kn, vec);
      if (r == 0 && c == 0) mk(kTileReady);
      if (active) {
        const S* wr = W + size_t(u) * NG * ldw + k0;
        for (int k = lane; k < kn; k += KS) {
          A w[NG];
FRNN_PERS_UNROLL
          for (int q = 0; q < NG; ++q) w[q] = static_cast<A>(wr[q * ldw + k]);
FRNN_PERS_UNROLL
          for (int i = 0; i < RB; ++i) {
            const A h = static_cast<A>(tile[rows[i] * ldt + k]);
FRNN_PERS_UNROLL
            for (int q = 0; q < NG; ++q) acc[i][q] += w[q] * h;
          }
        }
      }
    }
    // Groups are aligned inside warps (32 % KS == 0) and KS is block-uniform. Distance-major
    // order: the RB*NG shuffles of one distance are independent, so they overlap.
FRNN_PERS_UNROLL
    for (int off = 16; off > 0; off /= 2) {
      if (off < KS) {
FRNN_PERS_UNROLL
        for (int i = 0; i < RB; ++i)
FRNN_PERS_UNROLL
          for (int q = 0; q < NG; ++q)
            acc[i][q] += __shfl_xor_sync(0xffffffffu, acc[i][q], off);
      }
    }
    if (r == 0) mk(kProductDone);
    if (active && lane == 0) {
FRNN_PERS_UNROLL
      for (int i = 0; i < RB; ++i)
        if (b0 + i < B) consume(b0 + i, u, acc[i]);
    }
  }
}

// Register blocking by 4 batch rows from B >= 4 on (block-uniform choice), else none.
template <int NG, class A, class S, class E, class F>
__device__ __forceinline__ void dot_pass(const S* __restrict__ W, int K, int U, int B,
                                         const E* src, int64_t ld, int src_rows,
                                         E* __restrict__ tile, int ldt, int KC, bool staged,
                                         F&& consume, const Marks& mk = Marks{}) {
  if (B >= 4)
    dot_pass_rb<NG, 4, A>(W, K, U, B, src, ld, src_rows, tile, ldt, KC, staged, consume, mk);
  else
    dot_pass_rb<NG, 1, A>(W, K, U, B, src, ld, src_rows, tile, ldt, KC, staged, consume, mk);
}

// ------------------------------------------------------------------ tensor cores (forward)
// The forward product on tensor cores, fp32 sums: the half types on mma.m16n8k16 with their
// operands as stored, fp32 on mma.m16n8k8 .tf32 when TF32 is allowed (W_hh rounded to tf32
// once when loaded, h per fragment: cvt.rna, as the stepwise kernels). Used when H and KC are
// multiples of 16 bytes' elements (8 halves, 4 floats: ldmatrix rows; persistent_plan decides):
//   M: the block's gate rows r = 4u + q (q < NG; the GRU's fourth row is zero), so a 16-row
//      m-tile holds all gates of 4 units;  W [R16][ldw], R16 = 16*ceil(4U/16),
//      ldw = KS*ceil(K/KS) + V (KS the mma's k: 16 halves / 8 floats; V = 16 bytes of elements;
//      rows, units and columns beyond the slice are zero, and the V extra elements a row keep
//      ldmatrix's 8 row addresses in distinct bank groups);
//   N: batch rows, 8 an n-tile: the tile [B8][KC+V] (rows past the step's n zero);
//   K: in chunks of KC, k-steps of KS (a chunk's tail short of a k-step is zero-filled).
// Warps: P = MT*NT tile pairs; kspl = max(1, warps / P) warps split a pair's k-steps, so
// groups = warps / kspl pairs run at once (rounds over the rest); a warp's k-steps go
// round-robin to four accumulators (four dependent chains instead of one). A round's fragments go to
// part [kspl][groups][16][8] (fp32); thread i then sums unit 4*mt + (i%32)/8, batch row
// 8*nt + i%8 of pair i/32 over the k-splits and consumes it (all NG gates of a unit in one
// thread, as in dot_pass). With kspl == 1 there is nothing to sum: the same thread takes its
// item's gates from its own warp by shuffles (gather_gates), with no barrier. For fp32 ldmatrix moves each 32-bit element as two 16-bit halves:
// a 16-byte row is 4 floats, and PTX's tf32 fragment positions are where those pairs land.
__device__ __forceinline__ int round_up(int n, int m) {
  return (n + m - 1) / m * m;
}

template <class S>
struct MmaLayout {
  static constexpr int kKStep = sizeof(S) == 2 ? 16 : 8, kHalfK = kKStep / 2;
  int R16, ldw;
  __device__ __forceinline__ MmaLayout(int U, int K)
      : R16(round_up(4 * U, 16)), ldw(round_up(K, kKStep) + Vec16<S>::n) {}
  __device__ __forceinline__ size_t w_elems() const { return size_t(R16) * ldw; }
};

// How a tensor-core pass spreads P tile pairs over the block's warps: kspl warps split one
// pair's k-steps, groups = warps / kspl pairs run at once, rounds over the rest; this warp
// takes pair slot grp and k-split ks (ks >= kspl: idle).
struct WarpSplit {
  int kspl = 1, groups = 1, grp = 0, ks = 0, rounds = 0;
  WarpSplit() = default;
  __device__ __forceinline__ explicit WarpSplit(int P) {
    const int warps = blockDim.x / 32, warp = threadIdx.x / 32;
    kspl = P >= warps ? 1 : warps / P;
    groups = warps / kspl;
    grp = warp % groups, ks = warp / groups;
    rounds = (P + groups - 1) / groups;
  }
};

// A round's 16 x 8 fp32 fragment into part [kspl][groups][16][8] (c[0], c[1]: row g, cols 2t,
// 2t+1; c[2], c[3]: row g+8), between the barriers that keep it from the previous round's
// readers (r > 0; round 0's callers synchronised the block since part was last read: the
// pass's first staging or retire_copies, or the cluster step's end) and make it visible to
// this round's.
__device__ __forceinline__ void store_partial(float* part, const WarpSplit& w, bool active,
                                              const float (&c)[4], int r) {
  if (r > 0) __syncthreads();
  if (active) {
    const int lane = threadIdx.x % 32;
    float* pp = part + (w.ks * w.groups + w.grp) * 128 + (lane >> 2) * 8 + 2 * (lane & 3);
    pp[0] = c[0], pp[1] = c[1], pp[64] = c[2], pp[65] = c[3];
  }
  __syncthreads();
}

// v[i] for a run-time i < 4 as selects (an indexed register array would go to local memory).
__device__ __forceinline__ float pick4(const float (&v)[4], int i) {
  return i == 0 ? v[0] : i == 1 ? v[1] : i == 2 ? v[2] : v[3];
}

// Where a pair has a warp of its own (kspl == 1), the warp's lanes gather their items' gates
// from its 16 x 8 fragment c by shuffles instead of through `part` and two block barriers:
// lane d takes the item of mma_pass's partial-sum order (unit row block ul = d/8, batch row
// bl = d%8), whose gate q is row 4*ul + q, held by lane 4*g + bl/2 (g = that row mod 8) as
// c[want], want = 2*(ul/2) + bl%2. Round k: lane d reads gate (k + want) & 3, and every lane
// sends its c[(g - k) & 3]; each round is a permutation of the lanes (the source lane's g%4 is
// the gate, which fixes want), so four shuffles move all 128 values once.
__device__ __forceinline__ void gather_gates(const float (&c)[4], float (&sum)[4]) {
  const int lane = threadIdx.x % 32, g = lane >> 2, ul = lane >> 3, bl = lane & 7;
  const int want = 2 * (ul >> 1) + (bl & 1);
  float got[4];  // got[k]: gate (k + want) & 3
FRNN_PERS_UNROLL
  for (int k = 0; k < 4; ++k)
    got[k] = __shfl_sync(0xffffffffu, pick4(c, (g - k) & 3),
                         16 * (ul & 1) + 4 * ((k + want) & 3) + (bl >> 1));
FRNN_PERS_UNROLL
  for (int q = 0; q < 4; ++q) sum[q] = pick4(got, (q - want) & 3);
}

template <class S>
__device__ __forceinline__ void mma_step(float (&acc)[4], const uint32_t (&a)[4],
                                         uint32_t (&b)[2]) {
  if constexpr (sizeof(S) == 2) {
    kern::mma_half<S>(acc, a, b);
  } else {  // W was rounded when loaded; round h here
    b[0] = portable::to_tf32(__uint_as_float(b[0]));
    b[1] = portable::to_tf32(__uint_as_float(b[1]));
    portable::mma_tf32_1688(acc, a, b, acc);
  }
}

// W_hh's tensor-core fragments held in registers (the cluster forward): a warp's first
// kRegSteps k-steps of its m-tile and k-split, loaded once per launch, so each step reads only
// the rest of W from shared memory. The warp split is fixed by the full batch (rows past a
// step's count are computed and not consumed), so it is the same at every step; it needs one
// round (every tile pair on its own warps) and one chunk (KC >= K). All indices compile-time
// (unrolled): the fragments stay in registers.
constexpr int kRegSteps = 8;
struct WRegs {
  uint32_t a[kRegSteps][4];
  WarpSplit split;  // the split they were loaded for (the full batch), made once per launch
};

// a / b for the small divisors of a step's index math; b == 1 (a batch within one n-tile) skips
// the divide's ~20 dependent instructions.
__device__ __forceinline__ int quo(int a, int b) {
  return b == 1 ? a : a / b;
}

template <class S>
__device__ __forceinline__ bool wregs_fit(int U, int B, int K, int KC) {
  const int MT = round_up(4 * U, 16) / 16, NT = round_up(B, 8) / 8;
  return KC >= K && WarpSplit(MT * NT).rounds == 1;  // block-uniform
}

// Loads this warp's fragments (W in the layout mma_pass reads; the block synchronised since W
// was written). Call only where wregs_fit.
template <class S>
__device__ __forceinline__ void load_wregs(WRegs& wr, const S* W, int ldw, int K, int U, int B) {
  constexpr int KS = MmaLayout<S>::kKStep, HK = MmaLayout<S>::kHalfK;
  const int MT = round_up(4 * U, 16) / 16, NT = round_up(B, 8) / 8, P = MT * NT;
  const WarpSplit w(P);
  wr.split = w;
  const int lane = threadIdx.x % 32, knk = round_up(K, KS);
  const bool active = w.grp < P && w.ks < w.kspl;
  const S* wa = W + ((active ? w.grp / NT : 0) * 16 + (lane & 15)) * ldw + (lane >> 4) * HK;
FRNN_PERS_UNROLL
  for (int i = 0; i < kRegSteps; ++i) {
    const int kb = w.ks * KS + i * w.kspl * KS;
    if (active && kb < knk) portable::ldmatrix_x4(wr.a[i], wa + kb);
  }
}

template <class S, class F>
__device__ __forceinline__ void mma_pass(const S* W, int ldw, int K, int U, int B, const S* src,
                                         int64_t ld, int src_rows, S* tile, int ldt, int KC,
                                         bool staged, float* part, F& consume,
                                         bool use_wr = false, const WRegs& wr = WRegs{},
                                         int Bsplit = 0, const Marks& mk = Marks{}) {
  constexpr int KS = MmaLayout<S>::kKStep, HK = MmaLayout<S>::kHalfK, V = Vec16<S>::n;
  constexpr int kChains = 4;
  const int tid = threadIdx.x, nt = blockDim.x, lane = tid % 32;
  // use_wr: the first kRegSteps k-steps from wr's registers (load_wregs; by reference, never
  // through a pointer, which would put them in local memory), the split then by Bsplit rows
  const int MT = round_up(4 * U, 16) / 16, B8 = round_up(use_wr ? Bsplit : B, 8), NT = B8 / 8,
            P = MT * NT;
  const WarpSplit w = use_wr ? wr.split : WarpSplit(P);
  const int kspl = w.kspl, groups = w.groups, grp = w.grp, ks = w.ks;
  const int nchunks = KC >= K ? 1 : (K + KC - 1) / KC;
  const bool vec = ld % V == 0 && aligned_to(src, 16);
  for (int r = 0; r < w.rounds; ++r) {
    const int p = r * groups + grp;
    const bool active = p < P && ks < kspl;  // warp-uniform
    const int mt = active ? quo(p, NT) : 0, ntl = active ? p - mt * NT : 0;
    // kChains accumulators: a warp's k-steps j, j + kChains, ... go to chain j, so consecutive
    // mmas do not wait for each other (as in mma_bwd_pass).
    float acc[kChains][4] = {};
    for (int c = 0; c < nchunks; ++c) {
      const int k0 = c * KC, kn = min(KC, K - k0), knk = round_up(kn, KS);
      if (!staged && (nchunks > 1 || r == 0))  // block-uniform
        stage_chunk(tile, ldt, src + k0, ld, B8, src_rows, kn, knk, vec);
      if (r == 0 && c == 0) mk(kTileReady);
      if (active) {
        // ldmatrix rows: A x4, lanes 0-15 rows 0-15 at k, 16-31 the same rows at k + KS/2;
        // B x2, lanes 0-7 batch rows at k, 8-15 at k + KS/2 (cuda/warp_matrix.h).
        const S* wa = W + (mt * 16 + (lane & 15)) * ldw + k0 + (lane >> 4) * HK;
        const S* tb = tile + (ntl * 8 + (lane & 7)) * ldt + ((lane >> 3) & 1) * HK;
        int kfrom = ks * KS;
        if (use_wr) {  // one chunk (k0 = 0): k-steps i < kRegSteps of this warp from registers
FRNN_PERS_UNROLL
          for (int i = 0; i < kRegSteps; ++i) {
            const int kb = ks * KS + i * kspl * KS;
            if (kb < knk) {
              uint32_t b[2];
              portable::ldmatrix_x2(b, tb + kb);
              mma_step<S>(acc[i % kChains], wr.a[i], b);
            }
          }
          kfrom += kRegSteps * kspl * KS;
        }
        for (int kb0 = kfrom; kb0 < knk; kb0 += kChains * kspl * KS) {
FRNN_PERS_UNROLL
          for (int j = 0; j < kChains; ++j) {
            const int kb = kb0 + j * kspl * KS;
            if (kb >= knk) break;  // warp-uniform
            uint32_t a[4], b[2];
            portable::ldmatrix_x4(a, wa + kb);
            portable::ldmatrix_x2(b, tb + kb);
            mma_step<S>(acc[j], a, b);
          }
        }
      }
    }
    float frag[4] = {0.f, 0.f, 0.f, 0.f};
FRNN_PERS_UNROLL
    for (int j = 0; j < kChains; ++j)
FRNN_PERS_UNROLL
      for (int i = 0; i < 4; ++i) frag[i] += acc[j][i];
    if (kspl == 1) {  // block-uniform: no partial sums to add, so no barrier (gather_gates)
      if (r == 0) mk(kProductDone);  // warp 0's product
      if (active) {
        float sum[4];
        gather_gates(frag, sum);
        const int u = mt * 4 + lane / 8, b = ntl * 8 + lane % 8;
        if (u < U && b < B) consume(b, u, static_cast<const float*>(sum));
      }
      continue;
    }
    store_partial(part, w, active, frag, r);
    if (r == 0) mk(kProductDone);
    for (int i = tid; i < groups * 32; i += nt) {
      const int gi = i / 32, ul = (i % 32) / 8, bl = i % 8, pr = r * groups + gi;
      if (pr >= P) continue;
      const int pm = quo(pr, NT), u = pm * 4 + ul, b = (pr - pm * NT) * 8 + bl;
      if (u >= U || b >= B) continue;
      float sum[4];
FRNN_PERS_UNROLL
      for (int q = 0; q < 4; ++q) {
        float v = 0.f;
        for (int k = 0; k < kspl; ++k) v += part[(k * groups + gi) * 128 + (ul * 4 + q) * 8 + bl];
        sum[q] = v;
      }
      consume(b, u, static_cast<const float*>(sum));
    }
  }
}

// The backward product on tensor cores: dh[b][u] = sum_k da[b][k] W[u][k] (K = G*H, da in
// fp32), mma.m16n8k8 .tf32 with M = batch rows (the tile [B16][KC+4], ldmatrix A fragments),
// N = units (W in the FFMA backward layout [U8][K+1], rows past U zero; the B fragments read
// per lane, b0 = W[g][k+t], b1 = W[g][k+t+4], widened: exact for the half types), K in chunks
// of KC (a multiple of 4, persistent_plan), k-steps of 8 (a tail zero-filled). Precision, as
// the stepwise backward (cuda/tile_mma.cuh): the half types split da into two tf32 terms,
// hi = tf32(a) and lo = tf32(a - hi), against W exact in tf32 (fp32-accurate); fp32 (TF32
// allowed) rounds da here and W when loaded. A warp's k-steps go round-robin to four
// accumulators (four dependent chains instead of one; the low terms to four more). Warps,
// rounds and partial sums as in
// mma_pass, with 16 x 8 (batch row, unit) items a tile pair.
template <class S, class F>
__device__ __forceinline__ void mma_bwd_pass(const S* W, int K, int U, int B, const float* src,
                                             int64_t ld, int src_rows, float* tile, int ldt,
                                             int KC, float* part, F& consume) {
  constexpr bool kSplit = sizeof(S) == 2;
  constexpr int kChains = 4;
  const int tid = threadIdx.x, nt = blockDim.x, lane = tid % 32, g = lane >> 2, t = lane & 3,
            ldw = K + 1;
  const int B16 = round_up(B, 16), MT = B16 / 16, NT = round_up(U, 8) / 8, P = MT * NT;
  const WarpSplit w(P);
  const int kspl = w.kspl, groups = w.groups, grp = w.grp, ks = w.ks;
  const int nchunks = src ? (K + KC - 1) / KC : 0;
  const bool vec = src && ld % 4 == 0 && aligned_to(src, 16);
  for (int r = 0; r < w.rounds; ++r) {
    const int p = r * groups + grp;
    const bool active = p < P && ks < kspl;  // warp-uniform
    const int mt = active ? quo(p, NT) : 0, ntl = active ? p - mt * NT : 0;
    // kChains accumulators (and as many for the half types' low terms): a warp's k-steps
    // j, j + kChains, ... go to chain j, so consecutive mmas do not wait for each other.
    float acc[kChains][4] = {}, lo_acc[kSplit ? kChains : 1][4] = {};
    if (nchunks == 0 && r == 0) retire_copies();
    for (int c = 0; c < nchunks; ++c) {
      const int k0 = c * KC, kn = min(KC, K - k0), knk = round_up(kn, 8);
      if (nchunks > 1 || r == 0)  // block-uniform
        stage_chunk(tile, ldt, src + k0, ld, B16, src_rows, kn, knk, vec);
      if (active) {
        const float* ta = tile + (mt * 16 + (lane & 15)) * ldt + (lane >> 4) * 4;
        const S* wb = W + (ntl * 8 + g) * ldw + k0 + t;
        for (int kb0 = ks * 8; kb0 < knk; kb0 += kChains * kspl * 8) {
FRNN_PERS_UNROLL
          for (int j = 0; j < kChains; ++j) {
            const int kb = kb0 + j * kspl * 8;
            if (kb >= knk) break;  // warp-uniform
            uint32_t a[4], b[2];
            portable::ldmatrix_x4(a, ta + kb);
            // W's columns past the chunk are not zero (the row's pad, the next chunk): the
            // tile's are, but the pad may hold anything, so they are not read
            const float w0 = kb + t < kn ? static_cast<float>(wb[kb]) : 0.f;
            const float w1 = kb + t + 4 < kn ? static_cast<float>(wb[kb + 4]) : 0.f;
            b[0] = __float_as_uint(w0), b[1] = __float_as_uint(w1);
            if constexpr (kSplit) {
              uint32_t lo[4];
FRNN_PERS_UNROLL
              for (int i = 0; i < 4; ++i) {
                const float x = __uint_as_float(a[i]);
                a[i] = portable::to_tf32(x);
                lo[i] = portable::to_tf32(x - __uint_as_float(a[i]));
              }
              portable::mma_tf32_1688(acc[j], a, b, acc[j]);
              portable::mma_tf32_1688(lo_acc[j], lo, b, lo_acc[j]);
            } else {
FRNN_PERS_UNROLL
              for (int i = 0; i < 4; ++i) a[i] = portable::to_tf32(__uint_as_float(a[i]));
              portable::mma_tf32_1688(acc[j], a, b, acc[j]);
            }
          }
        }
      }
    }
    float sum[4] = {0.f, 0.f, 0.f, 0.f};
FRNN_PERS_UNROLL
    for (int j = 0; j < kChains; ++j)
FRNN_PERS_UNROLL
      for (int i = 0; i < 4; ++i) sum[i] += acc[j][i] + (kSplit ? lo_acc[j][i] : 0.f);
    store_partial(part, w, active, sum, r);  // rows: batch, columns: units
    for (int i = tid; i < groups * 128; i += nt) {
      const int gi = i / 128, bl = (i % 128) / 8, ul = i % 8, pr = r * groups + gi;
      if (pr >= P) continue;
      const int b = (pr / NT) * 16 + bl, u = (pr % NT) * 8 + ul;
      if (u >= U || b >= B) continue;
      float v = 0.f;
      for (int k = 0; k < kspl; ++k) v += part[(k * groups + gi) * 128 + bl * 8 + ul];
      consume(b, u, static_cast<const float*>(&v));
    }
  }
}

// W_hh's slice for mma_pass: W[4u + q][k] = w_hh[(q*H + j0+u) * H + k] (q < G), zero elsewhere
// in [R16][ldw]; fp32 rounded to tf32 (the operand every step multiplies).
template <class S>
__device__ __forceinline__ void load_w_mma(S* W, const MmaLayout<S>& L, const S* w_hh, int G,
                                           int H, int U, int j0) {
  const int n = L.R16 * L.ldw;
  for (int i = threadIdx.x; i < n; i += blockDim.x) W[i] = S(0.0f);
  __syncthreads();  // the zeros before the copies that overwrite some of them
  const int valid = min(U, H - j0);
  for (int q = 0; q < G; ++q)
    copy_block(W + q * L.ldw, int64_t(4) * L.ldw, 1, w_hh + (int64_t(q) * H + j0) * H, H, U,
               valid, H, H);
  if constexpr (sizeof(S) == 4) {
    __syncthreads();  // every copy landed before it is rounded (each element by one thread)
    for (int i = threadIdx.x; i < n; i += blockDim.x)
      W[i] = __uint_as_float(portable::to_tf32(W[i]));
  }
}

// Load this block's slice of W_hh (global, storage dtype) into shared memory (rows padded to
// K+1 elements; the pad is never read); units j >= H are zero.
//   rows (forward):   W[u][q][k] = w_hh[(q*H + j0+u) * H + k], NG = G, K = H
//   cols (backward):  W[u][0][k] = w_hh[k * H + j0+u],         NG = 1, K = G*H
// (consecutive threads read consecutive k of a row, resp. consecutive units of a row)
template <class S>
__device__ __forceinline__ void load_w_rows(S* W, const S* w_hh, int G, int H, int U, int j0) {
  const int valid = min(U, H - j0);
  for (int q = 0; q < G; ++q)
    copy_block(W + q * (H + 1), int64_t(G) * (H + 1), 1, w_hh + (int64_t(q) * H + j0) * H, H, U,
               valid, H, H);
}

template <class S>
__device__ __forceinline__ void load_w_cols(S* W, const S* w_hh, int G, int H, int U, int j0) {
  const int K = G * H;
  copy_block(W, 1, K + 1, w_hh + j0, H, K, K, U, min(U, H - j0));
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
  S* hbuf;          // [2,B,H] slot 0 holds h0 on entry
  S* y;             // [T,B,H]
  S* gates;         // [T,B,4H] activations i,f,g,o, or nullptr: not stored (no backward)
  S* cells;         // [T,B,H], or nullptr: not stored
  const int* steps; // [2T] packed input, or nullptr (dense)
  int T, B, H, U, KC;
  bool reverse;
  S* c_n = nullptr; // [B,H] out, or nullptr: each row's last cell state (when cells is not kept)
  bool mma = false; // the product on tensor cores (mma_pass: half types; fp32 as TF32)
  bool cluster = false;  // launched as clusters: h through distributed shared memory, KC = H
  int64_t ldy = 0;  // y's row stride (H; 2H when both directions write one [N, 2H] output)
  // A layer above the first of a layer wavefront (FwdLaunch::wave): xproj is null and each step
  // computes its own input projection from the layer below's h_t (x_in, written in the launch's
  // previous step) on W_ih held beside W_hh.
  const S* w_ih = nullptr;  // [4H,H], or nullptr: xproj precomputed
  const S* x_in = nullptr;  // [N,H] the layer below's y
  const A* bias = nullptr;  // [4H] b_ih + b_hh, or nullptr
  int lag = 0;              // the launch step that runs this layer's step 0 (its index)
  void* flags = nullptr;    // [2,B,H] FlagWord<S> words, zeroed, or nullptr (flag_stage)
};

template <class S, class A>
struct LstmBwdParams {
  const S* dy;      // [T,B,H], rows ldy apart
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
  bool mma = false; // the product on tensor cores (mma_bwd_pass: half types; fp32 as TF32)
  int64_t ldy = 0;  // dy's row stride (H; 2H when both directions read one [N, 2H] dy)
};

template <class S, class A>
struct GruFwdParams {
  const A* xproj;   // [T,B,3H] x W_ih^T + b_ih
  const A* b_hh;    // [3H] or nullptr
  const S* w_hh;    // [3H,H]
  S* hbuf;          // [2,B,H] slot 0 holds h0 on entry
  S* y;             // [T,B,H]
  S* gates;         // [T,B,3H] activations r,z,n, or nullptr: not stored (no backward)
  S* ghn;           // [T,B,H]  W_hn h_{t-1} + b_hn, or nullptr: not stored
  const int* steps; // [2T] packed input, or nullptr (dense)
  int T, B, H, U, KC;
  bool reverse;
  bool mma = false; // the product on tensor cores (mma_pass: half types; fp32 as TF32)
  bool cluster = false;  // launched as clusters (as LstmFwdParams)
  int64_t ldy = 0;  // y's row stride (as LstmFwdParams)
  const S* w_ih = nullptr;  // [3H,H] as LstmFwdParams (the wavefront)
  const S* x_in = nullptr;  // [N,H]
  const A* bias = nullptr;  // [3H] b_ih, or nullptr (b_hh stays apart, as above)
  int lag = 0;
  void* flags = nullptr;    // as LstmFwdParams
};

// A forward launch of up to kMaxGroups groups of per_dir blocks each (blocks [g*per_dir,
// (g+1)*per_dir) run d[g], each with its own slicing of the same plan): one direction; both of
// a bidirectional layer side by side; or the layers of a stack as a wavefront (wave: group l
// runs layer l, lag l, so layer l's step s is the launch's step s + l, one step after the layer
// below wrote the h_t it reads; every block carves room for W_ih). The grid barrier is common:
// every block runs `steps` launch steps (max of T + lag; groups idle before and after their
// own). On clusters (never a wavefront), each group is one cluster (clusters never wait on each
// other).
constexpr int kMaxGroups = 4;
template <class P>
struct FwdLaunch {
  P d[kMaxGroups];
  int per_dir;
  int steps;
  bool wave;
  long long* trace = nullptr;  // [blocks][steps][kMarks] (Marks), or null
  __device__ __forceinline__ Marks marks(int ls) const {
    return Marks{trace ? trace + (int64_t(blockIdx.x) * steps + ls) * kMarks : nullptr};
  }
};

template <class S, class A>
struct GruBwdParams {
  const S* dy;      // [T,B,H], rows ldy apart
  const S* dh_n;    // [B,H]
  const S* h0;      // [B,H]
  const S* y;       // [T,B,H], rows ldy apart
  const S* w_hh;    // [3H,H]
  const S* gates;   // [T,B,3H]
  const S* ghn;     // [T,B,H]
  A* dgx;           // [T,B,3H] out: input-side gate gradients
  A* dgh;           // [T,B,3H] out: recurrent-side gate gradients
  S* dh0;           // [B,H] out (only z*dh of the first steps when dh0_on_host)
  const int* steps; // [2T] packed input, or nullptr (dense)
  int T, B, H, U, KC;
  bool reverse, dh0_on_host;
  bool mma = false; // the product on tensor cores (mma_bwd_pass: half types; fp32 as TF32)
  int64_t ldy = 0;  // the row stride of dy and y (H; 2H for both directions' [N, 2H])
};

// A backward launch of one direction, or both of a bidirectional layer side by side: blocks
// [g*per_dir, (g+1)*per_dir) run d[g] (each direction its own slicing of the same plan; one
// direction: d[1] unused). Both directions have the same T, so the grid barrier is common and
// every block runs T steps.
template <class P>
struct BwdLaunch {
  P d[2];
  int per_dir;
};

// Segments of the prefetched slice per row (the NP of "pre"), forward and backward.
template <int G>
struct Prefetch {
  static constexpr int fwd = G;          // xproj, one segment per gate
  static constexpr int bwd = G + 3;      // gates, cells / ghn, dy, previous c / h
};

// Prefetch the forward's xproj slice of step s ([n][G][U], A) into pre slot s%2; committed.
// walk: xproj_walk (made once per launch).
template <int G, class A>
__device__ __forceinline__ void prefetch_xproj(A* pre, const A* xproj, const int* steps, int s,
                                               int T, int B, int H, int U, int j0, bool reverse,
                                               const Walk& walk) {
  const int64_t t = time_of(s, T, reverse);
  const int n = step_rows(steps, t, B);
  const A* xp = xproj + step_offset(steps, t, T, B) * (G * H) + j0;
  A* dst = pre + int64_t(s % 2) * B * G * U;
  for (int q = 0; q < G; ++q)
    async_block<Word<A>::bytes>(dst + q * U, G * U, xp + q * H, int64_t(G) * H, n, n, walk);
  portable::cp_async_commit();
}

// The walk of prefetch_xproj's copies: a row is the block's min(U, H - j0) units in words.
template <class A>
__device__ __forceinline__ Walk xproj_walk(int H, int U, int j0) {
  return Walk(min(U, H - j0) / Word<A>::elems);
}

// Prefetch the backward's inputs of step s into pre slot s%2 ([n][G+3][U], S): the saved gates
// (G segments), `one` (cells / ghn), dy (rows ld_dy apart), and the previous state: rows <
// n_prev from `prev` (rows ld_prev apart) at the previous step's rows, the others from `first`
// (c0 / h0). Committed.
template <int G, class S>
__device__ __forceinline__ void prefetch_bwd(S* pre, const S* gates, const S* one, const S* dy,
                                             const S* prev, const S* first, const int* steps,
                                             int s, int T, int B, int H, int U, int j0,
                                             bool reverse, int64_t ld_dy, int64_t ld_prev) {
  constexpr int W = Word<S>::bytes, NP = Prefetch<G>::bwd;
  const BwdStep bs = bwd_step(steps, s, T, reverse, B);
  const int n = bs.n, uv = min(U, H - j0), np = min(n, bs.n_prev), ld = NP * U;
  S* dst = pre + int64_t(s % 2) * B * ld;
  for (int q = 0; q < G; ++q)
    async_block<W>(dst + q * U, ld, gates + bs.off * (G * H) + q * H + j0, int64_t(G) * H, n, n,
                   uv);
  async_block<W>(dst + G * U, ld, one + bs.off * H + j0, H, n, n, uv);
  async_block<W>(dst + (G + 1) * U, ld, dy + bs.off * ld_dy + j0, ld_dy, n, n, uv);
  if (np > 0)
    async_block<W>(dst + (G + 2) * U, ld, prev + bs.off_prev * ld_prev + j0, ld_prev, np, np,
                   uv);
  if (n > np)
    async_block<W>(dst + np * ld + (G + 2) * U, ld, first + int64_t(np) * H + j0, H, n - np,
                   n - np, uv);
  portable::cp_async_commit();
}

// Whether the backward's prefetch can move whole words: always for 4- and 8-byte types; for the
// half types, pairs of elements (U and H even, so every slice starts on a word) at word-aligned
// pointers. Block-uniform (U is the same for every block).
template <class S, class... Ptr>
__device__ __forceinline__ bool can_prefetch(int U, int H, Ptr... ptrs) {
  if (Word<S>::elems == 1) return true;
  if (U % Word<S>::elems || H % Word<S>::elems) return false;
  return (aligned_to(ptrs, Word<S>::bytes) && ...);
}

// The forward's product: mma_pass when the launcher chose tensor cores (the half types, and
// fp32 when TF32 is allowed, in the layout the plan sized), else dot_pass (W in the FFMA
// layout, which fits in the space the plan sized for either).
// staged: the tile already holds h_{t-1} (the cluster forward, one chunk: KC >= H) and the
// caller retired its copies and synchronised the block; hprev is then not read.
// use_wr, wr, Bsplit: W's first fragments in registers (mma only; see WRegs). mk: the step's
// phase marks (kTileReady, kProductDone, kConsumed).
template <int NG, class S, class A, class F>
__device__ __forceinline__ void fwd_pass(bool mma, const S* W, int H, int U, int B,
                                         const S* hprev, S* tile, int ldt, int KC, bool staged,
                                         float* part, F&& consume, bool use_wr = false,
                                         const WRegs& wr = WRegs{}, int Bsplit = 0,
                                         const Marks& mk = Marks{}) {
  if constexpr (sizeof(S) == 2 || std::is_same<S, float>::value) {
    if (mma) {
      mma_pass<S>(W, MmaLayout<S>(U, H).ldw, H, U, B, hprev, H, B, tile, ldt, KC, staged, part,
                  consume, use_wr, wr, Bsplit, mk);
      mk(kConsumed);
      return;
    }
  }
  dot_pass<NG, A>(W, H, U, B, hprev, H, B, tile, ldt, KC, staged, consume, mk);
  mk(kConsumed);
}

// W's elements and the tile's rows of a forward kernel (the carve persistent_plan sizes).
template <class S>
__device__ __forceinline__ size_t fwd_w_elems(bool mma, int NG, int H, int U) {
  return mma ? MmaLayout<S>(U, H).w_elems() : size_t(U) * NG * (H + 1);
}

template <class S>
__device__ __forceinline__ void load_w_fwd(bool mma, S* W, const S* w_hh, int G, int H, int U,
                                           int j0) {
  if (mma)
    load_w_mma(W, MmaLayout<S>(U, H), w_hh, G, H, U, j0);
  else
    load_w_rows(W, w_hh, G, H, U, j0);
}

// The backward's product: mma_bwd_pass when the launcher chose tensor cores (the half types,
// fp32 with TF32 allowed), else dot_pass; W in [U8][K+1] either way when the plan sized
// for tensor cores (dot_pass reads rows < U only).
template <class S, class A, class F>
__device__ __forceinline__ void bwd_pass(bool mma, const S* W, int K, int U, int B, const A* src,
                                         int src_rows, A* tile, int ldt, int KC, float* part,
                                         F&& consume) {
  if constexpr (sizeof(S) <= 4) {
    if (mma) {
      mma_bwd_pass<S>(W, K, U, B, src, K, src_rows, tile, ldt, KC, part, consume);
      return;
    }
  }
  dot_pass<1, A>(W, K, U, B, src, K, src_rows, tile, ldt, KC, false, consume);
}

// W_hh's columns for the backward ([U][K+1], or [U8][K+1] with rows past U zero for tensor
// cores; fp32 then rounded to tf32, the operand every step multiplies).
template <class S>
__device__ __forceinline__ void load_w_bwd(bool mma, S* W, const S* w_hh, int G, int H, int U,
                                           int j0) {
  const int K = G * H;
  if (mma) {
    for (int i = U * (K + 1) + threadIdx.x; i < round_up(U, 8) * (K + 1); i += blockDim.x)
      W[i] = S(0.0f);
  }
  load_w_cols(W, w_hh, G, H, U, j0);
  if constexpr (sizeof(S) == 4) {
    if (mma) {
      __syncthreads();  // every copy landed before it is rounded (each element by one thread)
      for (int i = threadIdx.x; i < U * (K + 1); i += blockDim.x)
        W[i] = __uint_as_float(portable::to_tf32(W[i]));
    }
  }
}

// The wavefront's carve: W_hh's region, then W_ih's (same layout) at this many elements from it.
template <class S>
__device__ __forceinline__ size_t wx_offset(bool mma, int NG, int H, int U) {
  return align16(fwd_w_elems<S>(mma, NG, H, U) * sizeof(S)) / sizeof(S);
}

// A wavefront layer's input projection of step s: pre slot s%2 ([n][NP][U], the layout
// prefetch_xproj writes) = x_in rows [off, off+n) x W_ih's slice + bias, on the same pass as the
// recurrent product (x_in: the layer below's h_t, written before the last grid barrier). The
// recurrent pass that follows synchronises the block before its first consume (fwd_pass's
// contract), so its consume reads every slot written here, and it stages its tile only after
// every thread of this pass finished reading the tile.
template <int NG, int NP, class S, class A>
__device__ __forceinline__ void input_pass(bool mma, const S* Wx, const S* x_in, const A* bias,
                                           int64_t off, int n, int H, int U, int j0,
                                           A* pre, S* tile, int ldt, int KC, float* part) {
  fwd_pass<NG, S, A>(mma, Wx, H, U, n, x_in + off * H, tile, ldt, KC, false, part,
                     [&](int b, int u, const A* acc) {
    const int j = j0 + u;
    if (j >= H) return;
    A* xp = pre + b * NP * U + u;
FRNN_PERS_UNROLL
    for (int q = 0; q < NG; ++q) xp[q * U] = acc[q] + (bias ? bias[q * H + j] : A(0));
  });
}

// A forward kernel's weights: W_hh's slice, W_ih's beside it (a wavefront's layers above the
// first: w_ih non-null, at wxo elements on), and on the cluster W_hh's first fragments in
// registers (WRegs) where they fit. Returns whether wr holds them.
template <class S>
__device__ __forceinline__ bool load_fwd_w(bool mma, bool cluster, S* W, size_t wxo,
                                           const S* w_hh, const S* w_ih, int G, int H, int U,
                                           int B, int KC, int j0, WRegs& wr) {
  load_w_fwd(mma, W, w_hh, G, H, U, j0);
  if (w_ih) load_w_fwd(mma, W + wxo, w_ih, G, H, U, j0);
  if constexpr (sizeof(S) <= 4) {
    if (cluster && mma && wregs_fit<S>(U, B, H, KC)) {
      __syncthreads();  // W complete
      load_wregs<S>(wr, W, MmaLayout<S>(U, H).ldw, H, U, B);
      return true;
    }
  }
  return false;
}

// ------------------------------------------------------------------ the flag-word exchange
// The grid forward without the grid barrier (the params' `flags`, where the launcher chose it:
// 2- and 4-byte types, one chunk (KC >= H), not a wavefront; grid-uniform). Step s's consume
// stores each h_t element as a flag word (cuda/flag_words.h: value and flag in one atomic word)
// into slot (s+1)%2 of flags [2][B][H], flag s+1, and step s+1 stages its tile by polling those
// words until each shows its flag: a block waits only for the words it reads, with no fence
// and no grid barrier. hbuf is then read only as h0 (slot 0): a row that becomes live at a step
// (reverse, packed) starts from it.
// Reuse: slot (s+1)%2 was last read in step s-1. A block stores its step-s words after its own
// step s staged every block's step-(s-1) words, and each of those was stored after its block's
// step s-1 staging (and a block barrier) read the slot; the stored values depend on the loaded
// ones, so no load of step s-1 can see a store of step s. Deadlock-free because a cooperative
// launch keeps every block resident, and every word a step polls for is stored by the step
// before it (rows < the previous step's count: live then, so stored).
// The walk is over the rows' 16-byte loads (vec: H whole loads) or single words.
struct FlagWalk {
  Walk walk;
  bool vec = false;
};

template <class S>
__device__ __forceinline__ FlagWalk flag_walk(int H) {
  constexpr int NV = FlagWord<S>::kPerLoad;
  FlagWalk f;
  f.vec = H % NV == 0;
  f.walk = Walk(f.vec ? H / NV : H);
  return f;
}

// One row-word group's load and its poll: v holds N words of `src` that all show flag s.
template <class S, int N>
__device__ __forceinline__ void poll_words(const typename FlagWord<S>::W* src,
                                           typename FlagWord<S>::W (&v)[N], int s) {
  using F = FlagWord<S>;
  long long polls = 0;
  for (;;) {
    bool ok = true;
FRNN_PERS_UNROLL
    for (int k = 0; k < N; ++k) ok = ok && F::has(v[k], s);
    if (ok) return;
    portable::poll_pause(polls, "the persistent forward's flag words");
    if constexpr (N == F::kPerLoad)
      portable::ld_flag16(src, v);
    else
      v[0] = portable::ld_flag(src);
  }
}

// The flag-word exchange of one forward launch, made once per launch (flag_exchange; words
// null: the launch uses the grid barrier).
template <class S>
struct FlagExchange {
  using W = typename FlagWord<S>::W;
  W* words = nullptr;  // [2][B][H]
  FlagWalk walk;
  int B = 0, H = 0;
  __device__ __forceinline__ explicit operator bool() const { return words != nullptr; }
  // step s's h_t element (b, j): slot (s+1)%2, flag s+1
  __device__ __forceinline__ void put(int s, int b, int j, S h) const {
    portable::st_flag(words + int64_t((s + 1) % 2) * B * H + b * H + j,
                      FlagWord<S>::pack(h, s + 1));
  }
};

// Step s's tile (rows < n, columns < H) from the flag words: rows < min(n, n_prev) (live at the
// previous step, n_prev; 0 at step 0) from slot s%2 of the words once their flag is s, the rest
// from h0. Then this thread's cp.async copies retired and the block synchronised (fwd_pass's
// `staged`). Rows [n, B8) and columns [H, kz) of the tensor-core tile are not written: zeroed
// when the launch starts (flag_exchange), they may hold earlier steps' h later (packed), whose
// products are computed and not consumed. Each thread keeps kBatch loads in flight.
template <class S>
__device__ __forceinline__ void flag_stage(const FlagExchange<S>& fx, S* tile, int ldt,
                                           const S* h0, int n, int s, const int* steps, int T,
                                           bool reverse) {
  using F = FlagWord<S>;
  using W = typename F::W;
  constexpr int kBatch = 4;
  const int H = fx.H;
  const int n_prev = s > 0 ? step_rows(steps, time_of(s - 1, T, reverse), fx.B) : 0;
  const W* words = fx.words + int64_t(s % 2) * fx.B * H;
  const FlagWalk& fw = fx.walk;
  __syncthreads();  // every thread finished reading the previous step's tile
  const int nl = min(n, n_prev), nt = blockDim.x;
  const auto stage = [&](auto vw) {
    constexpr int NV = decltype(vw)::value;
    const int wc = fw.walk.wc, total = nl * wc;
    int r = fw.walk.r, c = fw.walk.c;
    for (int i0 = threadIdx.x; i0 < total; i0 += kBatch * nt) {
      W v[kBatch][NV];
      // element offsets, made once a load and kept for its polls and its store: 32-bit (the
      // words are B*H on chip's worth, far below 2^31), one 64-bit add each
      int off[kBatch], toff[kBatch];
FRNN_PERS_UNROLL
      for (int j = 0; j < kBatch; ++j) {  // the loads first: kBatch in flight
        off[j] = r * H + c * NV, toff[j] = r * ldt + c * NV;
        if (i0 + j * nt < total) {
          if constexpr (NV == F::kPerLoad)
            portable::ld_flag16(words + off[j], v[j]);
          else
            v[j][0] = portable::ld_flag(words + off[j]);
        }
        c += fw.walk.sc, r += fw.walk.sr;
        if (c >= wc) c -= wc, ++r;
      }
FRNN_PERS_UNROLL
      for (int j = 0; j < kBatch; ++j) {
        if (i0 + j * nt >= total) break;
        poll_words<S>(words + off[j], v[j], s);
        S* dst = tile + toff[j];
FRNN_PERS_UNROLL
        for (int k = 0; k < NV; ++k) dst[k] = F::value(v[j][k]);
      }
    }
  };
  if (fw.vec)
    stage(std::integral_constant<int, F::kPerLoad>{});
  else
    stage(std::integral_constant<int, 1>{});
  for (int i = threadIdx.x; i < (n - nl) * H; i += nt) {  // rare: rows joining (reverse, packed)
    const int r = nl + i / H, c = i - (i / H) * H;
    tile[r * ldt + c] = h0[int64_t(r) * H + c];
  }
  portable::cp_async_wait<0>();  // the xproj prefetched at the previous step's end
  __syncthreads();
}

// A forward launch's exchange: where the launcher passed flags (never for 8-byte types), the
// words, their walk, and the tile zeroed once (rows to `rows`, columns to the row's end), as
// flag_stage then stages rows < n and columns < H only.
template <class S>
__device__ __forceinline__ FlagExchange<S> flag_exchange(void* flags, int B, int H, S* tile,
                                                         int ldt, int rows) {
  FlagExchange<S> fx;
  if (!FlagWord<S>::ok || flags == nullptr) return fx;
  fx.words = static_cast<typename FlagExchange<S>::W*>(flags);
  fx.walk = flag_walk<S>(H);
  fx.B = B, fx.H = H;
  for (int i = threadIdx.x; i < rows * ldt; i += blockDim.x) tile[i] = S(0.0f);
  return fx;
}

// Before a cluster forward's first step: step 0's xproj retired (the barrier makes every
// thread's visible), and every block's tiles (and barriers) initialised before a peer pushes.
__device__ __forceinline__ void start_cluster() {
  portable::cp_async_wait<0>();
  portable::cluster_sync();
}

// ------------------------------------------------------------------ the cluster forward
// Launched as one cluster per direction (per_dir blocks; block k of it = rank k), the forward
// keeps the whole h_{t-1} in shared memory: two tiles [rows][H+V] (step s reads tile s%2). A
// block writes its h_t slice into its own tile (s+1)%2 in the consume callback, then pushes the
// slice to the same place in every peer's tile through distributed shared memory, and the
// cluster barrier (arrive: release, wait: acquire) ends the step, instead of hbuf and the grid
// barrier.
// One barrier per step suffices: tile (s+1)%2 of a block was last read in step s-1, which every
// block finished before it arrived at the barrier that ended step s-1; the pushes of step s
// come after that barrier. Each block writes only its own columns of a peer's tile. A cluster
// barrier right after the tiles are initialised keeps a peer's first push from landing before
// them (and from reaching a block that has not started). After the last step nothing reads or
// writes a peer's memory, so blocks may exit. The hardware runs a cluster's blocks at once (the
// launcher asks the occupancy calculator that it can), so the barrier cannot wait on a block
// that is not resident; the pushes are plain stores to the mapped address (st.shared::cluster)
// ordered by the barrier's release / acquire.
// The mbarrier exchange (where every slice is whole 4-byte words: mbar_exchange): instead of the
// cluster barrier, whose release is a device-scope fence on sm_90 (MEMBAR.ALL.GPU, waiting for
// every store of the thread), each block has an mbarrier per tile (bars[k]), and the pushes are
// st.async with a complete-tx on the receiver's bars[(s+1)%2]. At step s thread 0 arms its
// bars[(s+1)%2] for the bytes the peers send it (n rows x the H - uv columns it does not own),
// and every thread waits for bars[s%2]'s phase before reading tile s%2. Tile (s+1)%2 of a block
// was last read in its step s-1; a peer pushes step s's slice only after it received the
// block's own h_{s-1} slice, which the block sends after that read: the data order the reuse,
// so no barrier is needed. bars[k] carries the pushes of the steps s with (s+1)%2 == k, the
// j-th of them in its phase of parity j&1; a block re-arms it only after it waited for the
// previous phase. The cluster barrier after the initialisation makes the barriers' init visible
// before any complete-tx; one at the end keeps every block resident until the last pushes
// landed.

// Both tiles (stride elements apart): rows < B hold h0 (hbuf slot 0; rows not live at a step
// keep it, as hbuf's slots do), the rest zero (the tensor-core pass's padding rows and columns).
template <class S>
__device__ __forceinline__ void init_cluster_tiles(S* tile, size_t stride, int ldt, const S* h0,
                                                   int B, int H) {
  for (size_t i = threadIdx.x; i < 2 * stride; i += blockDim.x) tile[i] = S(0.0f);
  __syncthreads();  // the zeros before the copies that overwrite some of them
  for (int k = 0; k < 2; ++k) copy_block(tile + k * stride, ldt, 1, h0, H, B, B, H, H);
}

// What push_slice sends, in (peer, row, word) order, blockDim.x triples a turn: this thread's
// first triple and the turn's stride in the same digits, made once per launch (the step's push
// is then free of divides). Rows run over the full batch B; a step skips rows >= its count.
// Words are 16 bytes when the slice is whole 16-byte words (the tile is 16-byte aligned), else
// single elements (the mbarrier exchange: pairs of halves, st.async's 4-byte minimum).
struct PushWalk {
  int peers = 0, rows = 0, wpr = 0, width = 1;
  int pi = 0, r = 0, w = 0;     // this thread's first triple
  int dpi = 0, dr = 0, dw = 0;  // blockDim.x in the same digits
  bool vec = false;
};

// Whether the cluster forward exchanges h through mbarriers and st.async (4-, 8- or 16-byte
// words): every block's slice whole 4-byte words (the half types: U and H even). Uniform
// across the cluster (H, U and the type only).
template <class S>
__device__ __forceinline__ bool mbar_exchange(int H, int U) {
  return sizeof(S) >= 4 || (U % 2 == 0 && H % 2 == 0);
}

// mb: the mbarrier exchange (words of 2 halves where not 16 bytes).
template <class S>
__device__ __forceinline__ PushWalk push_walk(int B, int ldt, int j0, int uv, unsigned size,
                                              bool mb) {
  constexpr int V = Vec16<S>::n;
  PushWalk pw;
  pw.vec = j0 % V == 0 && uv % V == 0 && ldt % V == 0;
  pw.width = pw.vec ? V : (mb && sizeof(S) == 2 ? 2 : 1);
  pw.peers = int(size) - 1, pw.rows = B, pw.wpr = uv / pw.width;
  if (pw.wpr <= 0 || pw.peers <= 0) {
    pw.peers = 0;
    return pw;
  }
  auto digits = [&](int x, int& pi, int& r, int& w) {
    const int row = x / pw.wpr;
    w = x - row * pw.wpr, pi = row / B, r = row - pi * B;
  };
  digits(int(threadIdx.x), pw.pi, pw.r, pw.w);
  digits(int(blockDim.x), pw.dpi, pw.dr, pw.dw);
  return pw;
}

// Push rows [0, n) x columns [j0, j0+uv) of this block's tile t (the walk's words) to the same
// place in every other block of its cluster (rank me). Plain stores through the mapped address;
// the caller's cluster barrier orders them before the peers' reads.
template <class S>
__device__ __forceinline__ void push_slice(S* t, int ldt, int n, int j0, const PushWalk& pw,
                                           unsigned me) {
  int pi = pw.pi, r = pw.r, w = pw.w;
  while (pi < pw.peers) {
    if (r < n) {
      const unsigned peer = unsigned(pi) + (unsigned(pi) >= me);
      S* src = t + r * ldt + j0 + w * pw.width;
      S* dst = portable::cluster_map(src, peer);
      if (pw.vec)
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
      else
        *dst = *src;
    }
    w += pw.dw, r += pw.dr, pi += pw.dpi;
    if (w >= pw.wpr) w -= pw.wpr, ++r;
    if (r >= pw.rows) r -= pw.rows, ++pi;
  }
}

// push_slice through st.async (the mbarrier exchange): each word with a complete-tx of its
// bytes on the receiver's bar (this block's address of it: the receiver's is at the same
// offset).
template <class S>
__device__ __forceinline__ void push_slice_async(S* t, int ldt, int n, int j0, const PushWalk& pw,
                                                 unsigned me, uint64_t* bar) {
  int pi = pw.pi, r = pw.r, w = pw.w;
  const int bytes = pw.width * int(sizeof(S));
  while (pi < pw.peers) {
    if (r < n) {
      const unsigned peer = unsigned(pi) + (unsigned(pi) >= me);
      S* src = t + r * ldt + j0 + w * pw.width;
      if (bytes == 16)
        portable::st_async(reinterpret_cast<uint4*>(src), *reinterpret_cast<const uint4*>(src), bar,
                           peer);
      else if (bytes == 8)
        portable::st_async(reinterpret_cast<uint2*>(src), *reinterpret_cast<const uint2*>(src), bar,
                           peer);
      else
        portable::st_async(reinterpret_cast<uint32_t*>(src),
                           *reinterpret_cast<const uint32_t*>(src), bar, peer);
    }
    w += pw.dw, r += pw.dr, pi += pw.dpi;
    if (w >= pw.wpr) w -= pw.wpr, ++r;
    if (r >= pw.rows) r -= pw.rows, ++pi;
  }
}

// The start of an mbarrier-exchange step s: thread 0 arms bars[(s+1)%2] for the peers' step-s
// slices (n rows of the H - uv columns this block does not own; none after the last step),
// then every thread waits until bars[s%2] holds the step-(s-1) slices (phase parity
// ((s-1)/2)&1; step 0 reads h0).
template <class S>
__device__ __forceinline__ void mbar_step_start(uint64_t* bars, int s, int T, int n, int H,
                                                int uv) {
  if (threadIdx.x == 0 && s + 1 < T)
    portable::mbar_arrive_expect_tx(bars + ((s + 1) & 1), unsigned(n * (H - uv)) * sizeof(S));
  if (s > 0) portable::mbar_wait(bars + (s & 1), unsigned((s - 1) >> 1) & 1u);
}

// The cluster forward's y_t: rows [0, n) of this block's columns [j0, j0+uv) of tile `next`
// (consume wrote h_t there) to y at row `off` (rows ldy apart), 16-byte words where y_walk's
// width allows, after the pushes: on the cluster-barrier exchange the arrival's release (a
// device-scope fence on sm_90) then waits for the pushes only, not for these global stores,
// which the next step's fence finds landed. Only this block writes its columns of `next` until
// the next step's consume.
struct YWalk {
  Walk walk;
  int width = 1;
};

template <class S>
__device__ __forceinline__ YWalk y_walk(const S* y, int64_t ldy, int j0, int uv) {
  constexpr int V = Vec16<S>::n;
  YWalk yw;
  const bool vec = j0 % V == 0 && uv % V == 0 && ldy % V == 0 && aligned_to(y, 16);
  yw.width = vec ? V : 1;
  yw.walk = Walk(uv / yw.width);
  return yw;
}

template <class S>
__device__ __forceinline__ void store_y(S* y, int64_t ldy, int64_t off, const S* next, int ldt,
                                        int n, int j0, const YWalk& yw) {
  const int nt = blockDim.x, wc = yw.walk.wc, total = n * wc;
  int r = yw.walk.r, c = yw.walk.c;
  for (int i = threadIdx.x; i < total; i += nt) {
    const S* src = next + r * ldt + j0 + c * yw.width;
    S* dst = y + (off + r) * ldy + j0 + c * yw.width;
    if (yw.width > 1)
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
    else
      *dst = *src;
    c += yw.walk.sc, r += yw.walk.sr;
    if (c >= wc) c -= wc, ++r;
  }
}

// The end of forward step s. On a cluster: this block's h_t slice (written by consume into tile
// `next`) to every peer, the cluster barrier's arrival, y_t (store_y), the wait; after the last
// step (last) y_t only. With the mbarrier exchange (mb) the slice goes by st.async and the
// step ends without a barrier (the next step's mbar_step_start waits for the peers' slices).
// The next step's xproj was prefetched at this step's start, a step ahead. On the grid (not
// after the last step): the prefetch of step s+1's xproj, then the grid barrier (every block's
// h_t in hbuf visible before step s+1 reads it; none with the flag-word exchange, fl); the
// prefetch lands while the block waits. live: this layer ran a step (a wavefront's groups idle
// before and after).
template <class S, class F>
__device__ __forceinline__ void end_fwd_step(bool cluster, bool last, bool live, S* next, int ldt,
                                             int n, int j0, const PushWalk& pw, unsigned rank,
                                             S* y, int64_t ldy, int64_t off, const YWalk& yw,
                                             F&& prefetch, const Marks& mk, uint64_t* bars,
                                             bool mb, int s, bool fl) {
  if (cluster && mb) {
    portable::cp_async_wait<0>();  // step s+1's xproj, issued at this step's start
    __syncthreads();  // every consume of this block wrote its h_t; the xproj visible
    if (!last) push_slice_async(next, ldt, n, j0, pw, rank, bars + ((s + 1) & 1));
    mk(kArrived);
    if (live) store_y(y, ldy, off, next, ldt, n, j0, yw);
  } else if (cluster) {
    portable::cp_async_wait<0>();  // as above
    __syncthreads();  // every consume of this block wrote its h_t; the xproj visible
    if (!last) {
      push_slice(next, ldt, n, j0, pw, rank);
      portable::cluster_arrive();
    }
    mk(kArrived);
    if (live) store_y(y, ldy, off, next, ldt, n, j0, yw);
    if (!last) portable::cluster_wait();
  } else {
    if (!last) prefetch();
    mk(kArrived);
    if (!last && !fl) FRNN_GRID_SYNC();  // fl: the flag words order the exchange instead
  }
  mk(kStepEnd);
}

// Thread 0 initialises the mbarrier exchange's two barriers (one arrival a phase); the cluster
// barrier after it makes them visible to the peers.
__device__ __forceinline__ void init_mbars(uint64_t* bars) {
  if (threadIdx.x == 0) {
    portable::mbar_init(bars, 1);
    portable::mbar_init(bars + 1, 1);
  }
}

// What a forward step repeats, made once per launch: the prefetch's walk and, on a cluster, the
// exchange (mb: mbarriers and st.async) with its push's and y's walks.
struct StepWalks {
  Walk xw;
  bool mb = false;
  PushWalk pw;
  YWalk yw;
};

template <class S, class A>
__device__ __forceinline__ StepWalks step_walks(bool cluster, int H, int U, int B, int j0,
                                                int ldt, int per_dir, const S* y, int64_t ldy) {
  StepWalks w;
  const int uv = min(U, H - j0);
  w.xw = xproj_walk<A>(H, U, j0);
  if (cluster) {
    w.mb = mbar_exchange<S>(H, U);
    w.pw = push_walk<S>(B, ldt, j0, uv, unsigned(per_dir), w.mb);
    w.yw = y_walk<S>(y, ldy, j0, uv);
  }
  return w;
}


// ------------------------------------------------------------------ LSTM forward
template <class S, class A>
__global__ void __launch_bounds__(kMaxThreads, 1) lstm_fwd_kernel(FwdLaunch<LstmFwdParams<S, A>> L) {
  FRNN_DYNAMIC_SMEM(unsigned char, smem_raw);
  const int dir = int(blockIdx.x) / L.per_dir, blk = int(blockIdx.x) - dir * L.per_dir;
  const LstmFwdParams<S, A>& p = L.d[dir];
  const int H = p.H, B = p.B, U = p.U, G4 = 4 * H;
  constexpr int NP = Prefetch<4>::fwd;
  const int j0 = blk * U;
  const bool mma = sizeof(S) <= 4 && p.mma, cl = p.cluster;
  const size_t wxo = wx_offset<S>(mma, 4, H, U);
  Smem<S, S, A, A> sm(smem_raw, L.wave ? 2 * wxo : wxo, mma ? round_up(B, 8) : B, p.KC, B, U, NP,
                      cl ? 2 : 1);
  WRegs wr;
  const bool use_wr = load_fwd_w(mma, cl, sm.w, wxo, p.w_hh, p.w_ih, 4, H, U, B, p.KC, j0, wr);
  for (int i = threadIdx.x; i < B * U; i += blockDim.x) {
    const int b = i / U, j = j0 + i % U;
    sm.state[i] = j < H ? static_cast<A>(p.c0[b * H + j]) : A(0);
  }
  if (cl) init_cluster_tiles(sm.tile, sm.tile_stride, sm.ldt, p.hbuf, B, H);
  const StepWalks sw = step_walks<S, A>(cl, H, U, B, j0, sm.ldt, L.per_dir, p.y, p.ldy);
  const bool mb = sw.mb;
  const FlagExchange<S> fx =  // the launcher's choice, grid-uniform
      flag_exchange<S>(p.flags, B, H, sm.tile, sm.ldt, mma ? round_up(B, 8) : B);
  const bool fl = bool(fx);
  auto prefetch = [&](int s) {  // step s's xproj, when this layer has one and s is a step
    if (!p.w_ih && s >= 0 && s < p.T)
      prefetch_xproj<4>(sm.pre, p.xproj, p.steps, s, p.T, B, H, U, j0, p.reverse, sw.xw);
  };
  prefetch(0);
  if (mb) init_mbars(sm.bars);
  if (cl) start_cluster();
  // (the pass syncs the block after its first wait: W, state and pre complete before first use)
  for (int ls = 0; ls < L.steps; ++ls) {
    const int s = ls - p.lag;  // this layer's step (a wavefront's groups start one apart)
    const Marks mk = s >= 0 && s < p.T ? L.marks(ls) : Marks{};
    mk(kStepStart);
    S* tnext = sm.tile + ((s + 1) & 1) * sm.tile_stride;  // cluster only (no lag there)
    int n = 0;
    int64_t off = 0;
    if (s >= 0 && s < p.T) {  // block-uniform
      const int64_t t = time_of(s, p.T, p.reverse);
      n = step_rows(p.steps, t, B);
      off = step_offset(p.steps, t, p.T, B);
      const S* hprev = p.hbuf + int64_t(s % 2) * B * H;
      S* hnext = p.hbuf + int64_t((s + 1) % 2) * B * H;
      S* tile = sm.tile + (cl ? (s % 2) * sm.tile_stride : 0);
      A* pre = sm.pre + int64_t(s % 2) * B * NP * U;
      if (mb) mbar_step_start<S>(sm.bars, s, p.T, n, H, min(U, H - j0));
      if (fl) flag_stage(fx, tile, sm.ldt, p.hbuf, n, s, p.steps, p.T, p.reverse);
      if (cl) prefetch(s + 1);  // a step ahead (end_fwd_step retires it)
      if (p.w_ih)
        input_pass<4, NP>(mma, sm.w + wxo, p.x_in, p.bias, off, n, H, U, j0, pre, sm.tile,
                          sm.ldt, p.KC, sm.part);
      fwd_pass<4, S, A>(mma, sm.w, H, U, n, hprev, tile, sm.ldt, p.KC, cl || fl, sm.part,
                        [&](int b, int u, const A* acc) {
        const int j = j0 + u;
        if (j >= H) return;
        const int64_t row = off + b;
        const A* xp = pre + b * NP * U + u;
        A i, f, g, o, c, h;
        cells::lstm_forward<A>(acc[0] + xp[0], acc[1] + xp[U], acc[2] + xp[2 * U],
                               acc[3] + xp[3 * U], sm.state[b * U + u], i, f, g, o, c, h);
        if (p.gates) {
          S* gt = p.gates + row * G4;
          gt[j] = static_cast<S>(i);
          gt[H + j] = static_cast<S>(f);
          gt[2 * H + j] = static_cast<S>(g);
          gt[3 * H + j] = static_cast<S>(o);
        }
        if (p.cells) p.cells[row * H + j] = static_cast<S>(c);
        const S hs = static_cast<S>(h);
        if (!cl) p.y[row * p.ldy + j] = hs;  // the cluster's: end_fwd_step (store_y)
        sm.state[b * U + u] = c;
        if (cl)
          tnext[b * sm.ldt + j] = hs;
        else if (fl)
          fx.put(s, b, j, hs);
        else
          hnext[b * H + j] = hs;
      }, use_wr, wr, B, mk);
    }
    end_fwd_step(cl, ls + 1 == L.steps, s >= 0 && s < p.T, tnext, sm.ldt, n, j0, sw.pw,
                 unsigned(blk), p.y, p.ldy, off, sw.yw, [&] { prefetch(s + 1); }, mk, sm.bars,
                 mb, s, fl);
  }
  if (mb) portable::cluster_sync();  // every block resident until the last st.async landed
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
__global__ void __launch_bounds__(kMaxThreads, 1) lstm_bwd_kernel(BwdLaunch<LstmBwdParams<S, A>> L) {
  FRNN_DYNAMIC_SMEM(unsigned char, smem_raw);
  const int dir = int(blockIdx.x) / L.per_dir;
  const LstmBwdParams<S, A>& p = L.d[dir];
  const int H = p.H, B = p.B, U = p.U, G4 = 4 * H;
  constexpr int NP = Prefetch<4>::bwd;
  const int j0 = (int(blockIdx.x) - dir * L.per_dir) * U;
  const bool mma = sizeof(S) <= 4 && p.mma;
  Smem<S, A, A, S> sm(smem_raw, size_t(mma ? round_up(U, 8) : U) * (G4 + 1),
                      mma ? round_up(B, 16) : B, p.KC, B, U, NP);
  load_w_bwd(mma, sm.w, p.w_hh, 4, H, U, j0);
  for (int i = threadIdx.x; i < B * U; i += blockDim.x) {
    const int b = i / U, j = j0 + i % U;
    sm.state[i] = j < H ? static_cast<A>(p.dc_n[b * H + j]) : A(0);
  }
  const bool pf = can_prefetch<S>(U, H, p.gates, p.cells, p.dy, p.c0);
  auto prefetch = [&](int s) {
    prefetch_bwd<4>(sm.pre, p.gates, p.cells, p.dy, p.cells, p.c0, p.steps, s, p.T, B, H, U, j0,
                    p.reverse, p.ldy, H);
  };
  if (pf) prefetch(p.T - 1);
  __syncthreads();  // state complete even when the first pass stages nothing
  for (int s = p.T - 1; s >= 0; --s) {
    // Rows b < n_next take dh from da_{next} W_hh, the others (at their last step) from dh_n;
    // rows b < n_prev start from the previous step's c, the others from c0.
    const BwdStep bs = bwd_step(p.steps, s, p.T, p.reverse, B);
    const int n = bs.n, n_next = bs.n_next, n_prev = bs.n_prev;
    const int64_t off = bs.off;
    const A* da_next = n_next ? p.da + bs.off_next * G4 : nullptr;
    const S* c_prev = n_prev ? p.cells + bs.off_prev * H : p.c0;
    const S* pre = sm.pre + int64_t(s % 2) * B * NP * U;
    bwd_pass<S, A>(mma, sm.w, G4, U, n, da_next, n_next, sm.tile, sm.ldt, p.KC, sm.part,
                   [&](int b, int u, const A* acc) {
      const int j = j0 + u;
      if (j >= H) return;
      const int64_t row = off + b;
      // The step's inputs: prefetched ([b][seg][u]) or, without the prefetch, from global.
      const S* pr = pre + b * NP * U + u;
      const S* gt = p.gates + row * G4;
      auto in = [&](int seg, const S* g) { return static_cast<A>(pf ? pr[seg * U] : *g); };
      A dh = acc[0] + in(5, p.dy + row * p.ldy + j);
      if (b >= n_next) dh += static_cast<A>(p.dh_n[b * H + j]);
      A dai, daf, dag, dao, dcp;
      cells::lstm_backward<A>(in(0, gt + j), in(1, gt + H + j), in(2, gt + 2 * H + j),
                              in(3, gt + 3 * H + j), in(4, p.cells + row * H + j),
                              in(6, b < n_prev ? c_prev + b * H + j : p.c0 + b * H + j), dh,
                              sm.state[b * U + u], dai, daf, dag, dao, dcp);
      A* d = p.da + row * G4;
      d[j] = dai;
      d[H + j] = daf;
      d[2 * H + j] = dag;
      d[3 * H + j] = dao;
      sm.state[b * U + u] = dcp;
    });
    if (pf && s > 0) prefetch(s - 1);  // lands while the block waits at the barrier
    FRNN_GRID_SYNC();  // da_t of every block visible before the next pass reads it
  }
  // dh0 = da_{first step} W_hh, dc0 = the carried dc. The first step of every row is time
  // step time_of(0) (all B rows live) unless packed and reverse: then the host does dh0.
  const int64_t t0 = time_of(0, p.T, p.reverse);
  const A* da0 = p.dh0_on_host ? nullptr : p.da + step_offset(p.steps, t0, p.T, B) * G4;
  bwd_pass<S, A>(mma, sm.w, G4, U, B, da0, B, sm.tile, sm.ldt, p.KC, sm.part,
                 [&](int b, int u, const A* acc) {
    const int j = j0 + u;
    if (j >= H) return;
    p.dh0[b * H + j] = static_cast<S>(acc[0]);
    p.dc0[b * H + j] = static_cast<S>(sm.state[b * U + u]);
  });
}

// ------------------------------------------------------------------ GRU forward
template <class S, class A>
__global__ void __launch_bounds__(kMaxThreads, 1) gru_fwd_kernel(FwdLaunch<GruFwdParams<S, A>> L) {
  FRNN_DYNAMIC_SMEM(unsigned char, smem_raw);
  const int dir = int(blockIdx.x) / L.per_dir, blk = int(blockIdx.x) - dir * L.per_dir;
  const GruFwdParams<S, A>& p = L.d[dir];
  const int H = p.H, B = p.B, U = p.U, G3 = 3 * H;
  constexpr int NP = Prefetch<3>::fwd;
  const int j0 = blk * U;
  const bool mma = sizeof(S) <= 4 && p.mma, cl = p.cluster;
  const size_t wxo = wx_offset<S>(mma, 3, H, U);
  Smem<S, S, A, A> sm(smem_raw, L.wave ? 2 * wxo : wxo, mma ? round_up(B, 8) : B, p.KC, B, U, NP,
                      cl ? 2 : 1);
  WRegs wr;
  const bool use_wr = load_fwd_w(mma, cl, sm.w, wxo, p.w_hh, p.w_ih, 3, H, U, B, p.KC, j0, wr);
  for (int i = threadIdx.x; i < B * U; i += blockDim.x) {  // h_{t-1} of this block's units
    const int b = i / U, j = j0 + i % U;
    sm.state[i] = j < H ? static_cast<A>(p.hbuf[b * H + j]) : A(0);
  }
  if (cl) init_cluster_tiles(sm.tile, sm.tile_stride, sm.ldt, p.hbuf, B, H);
  const StepWalks sw = step_walks<S, A>(cl, H, U, B, j0, sm.ldt, L.per_dir, p.y, p.ldy);
  const bool mb = sw.mb;
  const FlagExchange<S> fx =  // the launcher's choice, grid-uniform
      flag_exchange<S>(p.flags, B, H, sm.tile, sm.ldt, mma ? round_up(B, 8) : B);
  const bool fl = bool(fx);
  auto prefetch = [&](int s) {  // step s's xproj, when this layer has one and s is a step
    if (!p.w_ih && s >= 0 && s < p.T)
      prefetch_xproj<3>(sm.pre, p.xproj, p.steps, s, p.T, B, H, U, j0, p.reverse, sw.xw);
  };
  prefetch(0);
  if (mb) init_mbars(sm.bars);
  if (cl) start_cluster();
  for (int ls = 0; ls < L.steps; ++ls) {
    const int s = ls - p.lag;  // as the LSTM's
    const Marks mk = s >= 0 && s < p.T ? L.marks(ls) : Marks{};
    mk(kStepStart);
    S* tnext = sm.tile + ((s + 1) & 1) * sm.tile_stride;  // cluster only
    int n = 0;
    int64_t off = 0;
    if (s >= 0 && s < p.T) {  // block-uniform
      const int64_t t = time_of(s, p.T, p.reverse);
      n = step_rows(p.steps, t, B);
      off = step_offset(p.steps, t, p.T, B);
      const S* hprev = p.hbuf + int64_t(s % 2) * B * H;
      S* hnext = p.hbuf + int64_t((s + 1) % 2) * B * H;
      S* tile = sm.tile + (cl ? (s % 2) * sm.tile_stride : 0);
      A* pre = sm.pre + int64_t(s % 2) * B * NP * U;
      if (mb) mbar_step_start<S>(sm.bars, s, p.T, n, H, min(U, H - j0));
      if (fl) flag_stage(fx, tile, sm.ldt, p.hbuf, n, s, p.steps, p.T, p.reverse);
      if (cl) prefetch(s + 1);  // a step ahead (end_fwd_step retires it)
      if (p.w_ih)
        input_pass<3, NP>(mma, sm.w + wxo, p.x_in, p.bias, off, n, H, U, j0, pre, sm.tile,
                          sm.ldt, p.KC, sm.part);
      fwd_pass<3, S, A>(mma, sm.w, H, U, n, hprev, tile, sm.ldt, p.KC, cl || fl, sm.part,
                        [&](int b, int u, const A* acc) {
        const int j = j0 + u;
        if (j >= H) return;
        const int64_t row = off + b;
        const A* xp = pre + b * NP * U + u;
        A hr = acc[0], hz = acc[1], hn = acc[2];
        if (p.b_hh) hr += p.b_hh[j], hz += p.b_hh[H + j], hn += p.b_hh[2 * H + j];
        A r, z, n, h;
        cells::gru_forward<A>(xp[0], xp[U], xp[2 * U], hr, hz, hn, sm.state[b * U + u], r, z, n,
                              h);
        if (p.gates) {
          S* gt = p.gates + row * G3;
          gt[j] = static_cast<S>(r);
          gt[H + j] = static_cast<S>(z);
          gt[2 * H + j] = static_cast<S>(n);
        }
        if (p.ghn) p.ghn[row * H + j] = static_cast<S>(hn);
        const S hs = static_cast<S>(h);
        if (!cl) p.y[row * p.ldy + j] = hs;  // the cluster's: end_fwd_step (store_y)
        if (cl)
          tnext[b * sm.ldt + j] = hs;
        else if (fl)
          fx.put(s, b, j, hs);
        else
          hnext[b * H + j] = hs;
        sm.state[b * U + u] = static_cast<A>(hs);  // as the other blocks read it
      }, use_wr, wr, B, mk);
    }
    end_fwd_step(cl, ls + 1 == L.steps, s >= 0 && s < p.T, tnext, sm.ldt, n, j0, sw.pw,
                 unsigned(blk), p.y, p.ldy, off, sw.yw, [&] { prefetch(s + 1); }, mk, sm.bars,
                 mb, s, fl);
  }
  if (mb) portable::cluster_sync();  // every block resident until the last st.async landed
}

// ------------------------------------------------------------------ GRU backward
template <class S, class A>
__global__ void __launch_bounds__(kMaxThreads, 1) gru_bwd_kernel(BwdLaunch<GruBwdParams<S, A>> L) {
  FRNN_DYNAMIC_SMEM(unsigned char, smem_raw);
  const int dir = int(blockIdx.x) / L.per_dir;  // as the LSTM's
  const GruBwdParams<S, A>& p = L.d[dir];
  const int H = p.H, B = p.B, U = p.U, G3 = 3 * H;
  constexpr int NP = Prefetch<3>::bwd;
  const int j0 = (int(blockIdx.x) - dir * L.per_dir) * U;
  const bool mma = sizeof(S) <= 4 && p.mma;
  Smem<S, A, A, S> sm(smem_raw, size_t(mma ? round_up(U, 8) : U) * (G3 + 1),
                      mma ? round_up(B, 16) : B, p.KC, B, U, NP);
  load_w_bwd(mma, sm.w, p.w_hh, 3, H, U, j0);
  for (int i = threadIdx.x; i < B * U; i += blockDim.x) sm.state[i] = A(0);
  const bool pf = can_prefetch<S>(U, H, p.gates, p.ghn, p.dy, p.y, p.h0);
  auto prefetch = [&](int s) {
    prefetch_bwd<3>(sm.pre, p.gates, p.ghn, p.dy, p.y, p.h0, p.steps, s, p.T, B, H, U, j0,
                    p.reverse, p.ldy, p.ldy);
  };
  if (pf) prefetch(p.T - 1);
  __syncthreads();
  for (int s = p.T - 1; s >= 0; --s) {
    const BwdStep bs = bwd_step(p.steps, s, p.T, p.reverse, B);
    const int n = bs.n, n_next = bs.n_next, n_prev = bs.n_prev;
    const int64_t off = bs.off;
    const A* dgh_next = n_next ? p.dgh + bs.off_next * G3 : nullptr;
    const S* h_prev = n_prev ? p.y + bs.off_prev * p.ldy : p.h0;
    const S* pre = sm.pre + int64_t(s % 2) * B * NP * U;
    bwd_pass<S, A>(mma, sm.w, G3, U, n, dgh_next, n_next, sm.tile, sm.ldt, p.KC, sm.part,
                   [&](int b, int u, const A* acc) {
      const int j = j0 + u;
      if (j >= H) return;
      const int64_t row = off + b;
      const S* pr = pre + b * NP * U + u;
      const S* gt = p.gates + row * G3;
      auto in = [&](int seg, const S* g) { return static_cast<A>(pf ? pr[seg * U] : *g); };
      // dh_t = dy_t + z_{t+1} dh_{t+1} (state) + dgh_{t+1} W_hh[:, j] (acc), or + dh_n at the
      // row's last step (b >= n_next)
      A dh = acc[0] + sm.state[b * U + u] + in(4, p.dy + row * p.ldy + j);
      if (b >= n_next) dh += static_cast<A>(p.dh_n[b * H + j]);
      A dxr, dxz, dxn, dhn, dhd;
      cells::gru_backward<A>(in(0, gt + j), in(1, gt + H + j), in(2, gt + 2 * H + j),
                             in(3, p.ghn + row * H + j),
                             in(5, b < n_prev ? h_prev + b * p.ldy + j : p.h0 + b * H + j), dh, dxr,
                             dxz, dxn, dhn, dhd);
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
    if (pf && s > 0) prefetch(s - 1);
    FRNN_GRID_SYNC();
  }
  const int64_t t0 = time_of(0, p.T, p.reverse);
  const A* dgh0 = p.dh0_on_host ? nullptr : p.dgh + step_offset(p.steps, t0, p.T, B) * G3;
  bwd_pass<S, A>(mma, sm.w, G3, U, B, dgh0, B, sm.tile, sm.ldt, p.KC, sm.part,
                 [&](int b, int u, const A* acc) {
    const int j = j0 + u;
    if (j >= H) return;
    p.dh0[b * H + j] = static_cast<S>(acc[0] + sm.state[b * U + u]);
  });
}

}  // namespace persistent_detail
}  // namespace FRNN_BACKEND_NS
}  // namespace fusedrnn
