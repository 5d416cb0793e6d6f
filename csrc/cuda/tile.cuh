// The recurrent product shared by every stepwise kernel: one thread block computes a tile
//     P[b][n] = sum_{j < K} A[b0 + b][j] * Wsel(n, j)        b < BT, n < NC
// with A row-major (row stride lda) and Wsel one of two views of W_hh [G*H, H] (row stride ldw):
//   kRows    (forward):  Wsel(n, j) = W[(n / HT) * H + k0 + n % HT][j]
//                        n runs over NG = G gates x HT hidden units, K = H; the block gets every gate
//                        of its HT units, so the cell update stays inside the block.
//   kColumns (backward): Wsel(n, j) = W[j][k0 + n]          (NG = 1, K = G*H: da W_hh)
// Out-of-range rows (b0 + b >= B), units (k0 + n % HT >= H) and j >= K read as zero.
//
// This file is the FFMA version (fp64, and fp32 when TF32 is not allowed): tile_product_ffma, for
// shapes declared with TileShape. cuda/tile_mma.cuh has the tensor-core version and the
// tile_product the kernels call, which picks one by the shape.
//
// Schedule: K is walked in chunks of KC; the chunk of A (BT x KC) and of W (NC x KC) is staged in
// shared memory in the accumulation type, padded by one element per row so both the transposed
// stores of the kColumns loads and the column reads of the compute loop are bank-conflict free.
// The next chunk's global loads are issued into registers before the current chunk is multiplied,
// so their L2 latency overlaps the FMAs (one barrier pair per chunk). The 256
// threads form KSPLIT groups; group q multiplies its KC/KSPLIT slice of every chunk (split-K inside
// the block: 4x the warps a 64-thread block would have to hide shared-memory latency) into an
// RB x RN register tile (rows r + i*BT/RB, columns u + j*NC/RN). At the end every group stores its
// partial tile to shared memory; the epilogue reads the sum with tile_sum().
//
// Contract: called by every thread of a block of Shape::kThreads threads, with
// Shape::kSmemBytes of dynamic shared memory at `smem`. Rows b < a_split come from `a`, rows
// a_split <= b < a_rows from `a_alt` (both point at the block's row b0; a packed step whose rows
// start partly from the previous step and partly from h0); rows >= a_rows read as zero. A source
// no row reads may be null; both are null-safe when K == 0. Returns after a __syncthreads(), the
// partials in smem.
#pragma once

#include "cuda/portable.h"

#if defined(__CUDACC__)
#define FRNN_DEVICE __device__ __forceinline__
// At least 2 blocks of n threads per SM: caps registers at 128 for 256 threads. Without the
// minimum, ptxas chose 48 registers for the fp64 relu RNN forward kernel and spilled 4 bytes.
#define FRNN_LAUNCH_BOUNDS(n) __launch_bounds__(n, 2)
#define FRNN_UNROLL _Pragma("unroll")
#else
#define FRNN_UNROLL _Pragma("GCC unroll 16")
#define FRNN_DEVICE inline
#define FRNN_LAUNCH_BOUNDS(n)
#endif

namespace fusedrnn {
namespace kern {

// Accumulation type: float for fp32/fp16/bf16, double for fp64.
template <class S> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };

template <class A, class S> FRNN_DEVICE A to_acc(S v) { return static_cast<A>(v); }
template <class S, class A> FRNN_DEVICE S from_acc(A v) { return static_cast<S>(v); }

enum class WView { kRows, kColumns };

constexpr int cmax(int a, int b) { return a > b ? a : b; }

template <class S, int BT_, int HT_, int NG_, int RB_, int RN_, int KSPLIT_, int KC_>
struct TileShape {
  using scalar_t = S;
  using acc_t = typename AccType<S>::type;
  static constexpr bool kTensorCores = false;
  static constexpr int BT = BT_;       // batch rows per block
  static constexpr int HT = HT_;       // hidden units per block
  static constexpr int NG = NG_;       // gates per unit in the product's columns
  static constexpr int NC = NG_ * HT_; // product columns per block
  static constexpr int RB = RB_, RN = RN_, KSPLIT = KSPLIT_, KC = KC_;
  static constexpr int kRowThreads = BT / RB;
  static constexpr int kColThreads = NC / RN;
  static constexpr int kGroupThreads = kRowThreads * kColThreads;
  static constexpr int kThreads = kGroupThreads * KSPLIT;
  static constexpr int kLdTile = KC + 1;
  static constexpr int kLdPart = NC + 1;
  static constexpr int kSmemElems = cmax((BT + NC) * kLdTile, KSPLIT * BT * kLdPart);
  static constexpr int kSmemBytes = kSmemElems * int(sizeof(acc_t));
  static_assert(BT % RB == 0 && NC % RN == 0, "register tile must divide the block tile");
  static_assert(KC % KSPLIT == 0, "K chunk must split evenly over the groups");
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps, at most 1024 threads");
};

// Element e of the staged A chunk (e < BT*KC): row e / KC, column e % KC (coalesced along j).
// Element e of the staged W chunk (e < NC*KC): kRows like A (W rows are contiguous along j);
// kColumns transposed (column n = e % NC, W columns are contiguous along the units).
template <class Sh, WView kView>
FRNN_DEVICE void tile_coords_w(int e, int& n, int& kk) {
  if (kView == WView::kRows) {
    n = e / Sh::KC;
    kk = e % Sh::KC;
  } else {
    kk = e / Sh::NC;
    n = e % Sh::NC;
  }
}

// The staging shared by both products. load_chunk: this thread's elements of the chunk at
// k = j0 into registers, ra[i] = a chunk element tid + i*kThreads (row e / KC, column e % KC),
// rw[i] = Wsel chunk element tid + i*kThreads (tile_coords_w), converted by CvA{} / CvW{} to the
// staging type O; out-of-range elements (and, when the chunk does not split evenly over the
// threads, the ones past its end) are zero. store_chunk: the registers into the shared tiles
// As [BT][kLdTile] and Ws [NC][kLdTile].
template <class Sh, WView kView, class CvA, class CvW, class O, int NA, int NW, class AS>
FRNN_DEVICE void load_chunk(O (&ra)[NA], O (&rw)[NW], const AS* __restrict__ a,
                            const AS* __restrict__ a_alt, int a_split, int lda, int a_rows,
                            const typename Sh::scalar_t* __restrict__ w, int ldw, int H, int k0,
                            int K, int j0) {
  constexpr int HT = Sh::HT, KC = Sh::KC, NT = Sh::kThreads;
  constexpr bool kEvenA = Sh::BT * KC % NT == 0, kEvenW = Sh::NC * KC % NT == 0;
  const int tid = int(threadIdx.x);
FRNN_UNROLL
  for (int i = 0; i < NA; ++i) {
    const int e = tid + i * NT, b = e / KC, j = j0 + e % KC;
    const AS* src = b < a_split ? a : a_alt;
    ra[i] = ((kEvenA || e < Sh::BT * KC) && b < a_rows && j < K)
                ? CvA{}(src[(size_t)b * lda + j]) : O(0.f);
  }
FRNN_UNROLL
  for (int i = 0; i < NW; ++i) {
    const int e = tid + i * NT;
    int n, kk;
    tile_coords_w<Sh, kView>(e, n, kk);
    const int j = j0 + kk, unit = k0 + n % HT, wrow = (n / HT) * H + unit;
    const bool ok = (kEvenW || e < Sh::NC * KC) && unit < H && j < K;
    if (kView == WView::kRows)
      rw[i] = ok ? CvW{}(w[(size_t)wrow * ldw + j]) : O(0.f);
    else
      rw[i] = ok ? CvW{}(w[(size_t)j * ldw + wrow]) : O(0.f);
  }
}

template <class Sh, WView kView, class O, int NA, int NW>
FRNN_DEVICE void store_chunk(const O (&ra)[NA], const O (&rw)[NW], O* As, O* Ws) {
  constexpr int KC = Sh::KC, LD = Sh::kLdTile, NT = Sh::kThreads;
  constexpr bool kEvenA = Sh::BT * KC % NT == 0, kEvenW = Sh::NC * KC % NT == 0;
  const int tid = int(threadIdx.x);
FRNN_UNROLL
  for (int i = 0; i < NA; ++i) {
    const int e = tid + i * NT;
    if (kEvenA || e < Sh::BT * KC) As[(e / KC) * LD + e % KC] = ra[i];
  }
FRNN_UNROLL
  for (int i = 0; i < NW; ++i) {
    const int e = tid + i * NT;
    int n, kk;
    tile_coords_w<Sh, kView>(e, n, kk);
    if (kEvenW || e < Sh::NC * KC) Ws[n * LD + kk] = rw[i];
  }
}

template <class A> struct ToAcc {
  template <class V> FRNN_DEVICE A operator()(V v) const { return to_acc<A>(v); }
};

// AS: the type of the a rows (the storage dtype, or the accumulation type for the backward's
// gate gradients, which stay fp32 across steps for the half types).
template <class Sh, WView kView, class AS = typename Sh::scalar_t>
FRNN_DEVICE void tile_product_ffma(const AS* __restrict__ a, const AS* __restrict__ a_alt, int a_split,
                              int lda, int a_rows,
                              const typename Sh::scalar_t* __restrict__ w, int ldw, int H, int k0,
                              int K, typename Sh::acc_t* smem) {
  using A = typename Sh::acc_t;
  constexpr int BT = Sh::BT, NC = Sh::NC, KC = Sh::KC, LD = Sh::kLdTile;
  constexpr int RB = Sh::RB, RN = Sh::RN, NT = Sh::kThreads;
  constexpr int KSLICE = KC / Sh::KSPLIT;
  constexpr int NA = BT * KC / NT, NW = NC * KC / NT;  // staged elements per thread
  static_assert(BT * KC % NT == 0 && NC * KC % NT == 0, "chunks must split evenly over threads");
  A* As = smem;            // [BT][LD]
  A* Ws = smem + BT * LD;  // [NC][LD]
  const int tid = int(threadIdx.x);
  const int q = tid / Sh::kGroupThreads;
  const int pidx = tid % Sh::kGroupThreads;
  const int r = pidx / Sh::kColThreads;
  const int u = pidx % Sh::kColThreads;

  A acc[RB][RN];
FRNN_UNROLL
  for (int i = 0; i < RB; ++i)
FRNN_UNROLL
    for (int j = 0; j < RN; ++j) acc[i][j] = A(0);

  // The next chunk is loaded from global memory into registers while the current one is
  // multiplied out of shared memory, so the L2 latency is hidden behind the FMAs.
  A ra[NA], rw[NW];
  auto load = [&](int j0) {
    load_chunk<Sh, kView, ToAcc<A>, ToAcc<A>>(ra, rw, a, a_alt, a_split, lda, a_rows, w, ldw, H,
                                               k0, K, j0);
  };
  if (K > 0) load(0);
  for (int j0 = 0; j0 < K; j0 += KC) {
    store_chunk<Sh, kView>(ra, rw, As, Ws);
    __syncthreads();
    if (j0 + KC < K) load(j0 + KC);
FRNN_UNROLL
    for (int s = 0; s < KSLICE; ++s) {
      const int kk = q * KSLICE + s;
      A av[RB], wv[RN];
FRNN_UNROLL
      for (int i = 0; i < RB; ++i) av[i] = As[(r + i * Sh::kRowThreads) * LD + kk];
FRNN_UNROLL
      for (int j = 0; j < RN; ++j) wv[j] = Ws[(u + j * Sh::kColThreads) * LD + kk];
FRNN_UNROLL
      for (int i = 0; i < RB; ++i)
FRNN_UNROLL
        for (int j = 0; j < RN; ++j) acc[i][j] += av[i] * wv[j];
    }
    __syncthreads();
  }
  // Partials of group q: part[q][b][n].
  A* part = smem;
FRNN_UNROLL
  for (int i = 0; i < RB; ++i)
FRNN_UNROLL
    for (int j = 0; j < RN; ++j)
      part[(q * BT + r + i * Sh::kRowThreads) * Sh::kLdPart + u + j * Sh::kColThreads] = acc[i][j];
  __syncthreads();
}

// Sum over the KSPLIT groups of the product at (row b, column n) of the block tile.
template <class Sh>
FRNN_DEVICE typename Sh::acc_t tile_sum(const typename Sh::acc_t* smem, int b, int n) {
  typename Sh::acc_t s = 0;
FRNN_UNROLL
  for (int q = 0; q < Sh::KSPLIT; ++q) s += smem[(q * Sh::BT + b) * Sh::kLdPart + n];
  return s;
}

}  // namespace kern
}  // namespace fusedrnn
