// The recurrent product of the stepwise kernels on tensor cores (mma.sync): the same contract as
// tile_product_ffma in cuda/tile.cuh (same P[b][n], same views of W_hh, same zero padding, same
// partials left in shared memory for tile_sum), for tile shapes declared with MmaShape.
//
// Precision (Prec; kFfma is tile.cuh's):
//   kHalf  bf16/fp16 operands as stored (h and W_hh of the forward), fp32 accumulation:
//          mma.m16n8k16 .bf16/.f16. Exact products; only the summation order differs from FFMA.
//   kTf32  fp32 operands rounded to tf32 (cvt.rna, 10 mantissa bits) when staged: mma.m16n8k8
//          .tf32. For fp32 when TF32 is allowed (torch.backends.cudnn.allow_tf32 / rnn
//          fp32_precision, as cuDNN's RNNs).
//   kTf32x2  the backward of the half types: their gate gradients (the a rows) stay fp32, and
//          are split into two tf32 terms, hi = tf32(a), lo = tf32(a - hi), multiplied by W_hh
//          in two mmas; W_hh is exact in tf32 (bf16's 8 and fp16's 11 significant bits fit in
//          tf32's 11), so the product is fp32-accurate (about 21 bits of a, not 11) at twice
//          the mma count, which the latency-bound step loop hides.
//
// Schedule: mma's M is the batch (16 rows a tile), N the product columns (8 a tile): every
// shape's BT is a multiple of 16 and NC of 8 (GRU's 24 included). K is walked in chunks of KC,
// staged in shared memory in the operand type ([BT][KC+pad] rows of a, [NC][KC+pad] rows of Wsel,
// both k-contiguous: 16 bytes of padding a row make the 8 row addresses of an ldmatrix fall in
// 8 distinct 16-byte bank groups). Two ways to stage a chunk:
//   cp.async, when every row is 16-byte aligned (H a multiple of 8 for the half types, 4 for
//     fp32): 16-byte copies of each operand as stored, from global straight into one of two
//     shared-memory stages, chunk c+1's copies in flight while chunk c multiplies; no registers,
//     128-bit transactions. kTf32 rounds its fragments after loading them instead of when
//     staging (the same values). The backward's W (kColumns) is copied along its rows into
//     [KC][NC + 8] and its tf32 B fragments read per lane (ldmatrix.trans moves 16-bit
//     elements only), widened from the storage type there (exact for the half types).
//   registers (otherwise): the next chunk's global loads held in registers meanwhile, element
//     by element, converted to the staging type (as tile_product_ffma). Warps: WARPS_M x WARPS_N tiles of WM x WN mma tiles (a warp's A fragments serve
// its WN column tiles, its B fragments its WM row tiles), times KSPLIT groups that take turns
// over the chunk's k-steps; each group's partial tile goes to shared memory, summed by tile_sum.
// Fragments come from ldmatrix: .x4 for a 16-row A tile, .x2 for an 8-column B tile; for tf32
// the same instructions move 32-bit elements as pairs of 16-bit halves (a 16-byte row = 4 floats;
// PTX's tf32 fragment positions are exactly where those pairs land).
#pragma once

#include <type_traits>

#include "cuda/tile.cuh"

namespace fusedrnn {
namespace kern {

enum class Prec { kFfma, kHalf, kTf32, kTf32x2 };

template <class S, Prec kMma> struct MmaOperand { using type = S; };  // 16-bit, as stored
template <class S> struct MmaOperand<S, Prec::kTf32> { using type = float; };  // tf32 bits
template <class S> struct MmaOperand<S, Prec::kTf32x2> { using type = float; };  // a: fp32

template <class S, int BT_, int HT_, int NG_, int WM_, int WN_, int KSPLIT_, int KC_, Prec kMma_>
struct MmaShape {
  using scalar_t = S;
  using acc_t = float;
  using op_t = typename MmaOperand<S, kMma_>::type;
  static constexpr Prec kMma = kMma_;
  static constexpr bool kTensorCores = true;
  static constexpr int BT = BT_, HT = HT_, NG = NG_, NC = NG_ * HT_;
  static constexpr int WM = WM_, WN = WN_, KSPLIT = KSPLIT_, KC = KC_;
  static constexpr bool kTf32 = kMma_ == Prec::kTf32 || kMma_ == Prec::kTf32x2;
  static constexpr int kKStep = kTf32 ? 8 : 16;  // k of one mma
  static constexpr int kWarpsM = BT / (16 * WM), kWarpsN = NC / (8 * WN);
  static constexpr int kGroupThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kThreads = kGroupThreads * KSPLIT;
  static constexpr int kLdTile = KC + 16 / int(sizeof(op_t));
  static constexpr int kLdPart = NC + 1;
  // One stage of the cp.async path: A [BT][kLdTile] in op_t, then W either [NC][kLdTile] (rows)
  // or [KC][kLdCols] as stored (columns; bounded here with op_t, never narrower than storage).
  // Two stages (the register path uses the first), or the partial tiles, whichever is larger.
  static constexpr int kLdCols = NC + 8;  // 8 elements of padding: conflict-free fragment loads
  static constexpr int kStageBytes =
      BT * kLdTile * int(sizeof(op_t)) + cmax(NC * kLdTile, KC * kLdCols) * int(sizeof(op_t));
  static constexpr int kSmemBytes = cmax(2 * kStageBytes, KSPLIT * BT * kLdPart * int(sizeof(float)));
  static_assert(kSmemBytes <= 48 * 1024, "dynamic shared memory above 48 KB needs an opt-in");
  static_assert(BT % (16 * WM) == 0 && NC % (8 * WN) == 0, "warp tiles must divide the block tile");
  static_assert(KC % kKStep == 0, "K chunk: whole mma k-steps");
  static_assert(kThreads <= 1024, "at most 1024 threads");
  static_assert(kTf32 || (kMma_ == Prec::kHalf && sizeof(S) == 2),
                "kHalf takes bf16 or fp16 storage; kFfma shapes are TileShapes");
};

// A kernel's tile shape for precision P: the FFMA TileShape or the tensor-core MmaShape.
template <Prec P, class FfmaShape, class TensorCoreShape>
using StepShape = std::conditional_t<P == Prec::kFfma, FfmaShape, TensorCoreShape>;

// The shape of the kernels with one product column per unit (every backward, the RNN forward):
// 16 rows x 16 units; FFMA 2x2 register tiles in 4 k-groups (KC 32), or 4 warps each of 1 x 2
// mma tiles taking turns over the k-steps of a 128-wide chunk.
template <class S, Prec P>
using Square16Shape = StepShape<P, TileShape<S, 16, 16, 1, 2, 2, 4, 32>,
                                MmaShape<S, 16, 16, 1, 1, 2, 4, 128, P>>;

// v (an a row or W element, of any type) as staged: unchanged for kHalf and for kTf32x2's a rows
// (split when multiplied), rounded to tf32 otherwise.
template <Prec kMma, bool kARow, class O, class V> FRNN_DEVICE O to_operand(V v) {
  if constexpr (kMma == Prec::kTf32 || (kMma == Prec::kTf32x2 && !kARow))
    return __uint_as_float(portable::to_tf32(static_cast<float>(v)));
  else
    return static_cast<O>(v);
}

template <Prec kMma, bool kARow, class O> struct ToOperand {
  template <class V> FRNN_DEVICE O operator()(V v) const { return to_operand<kMma, kARow, O>(v); }
};

template <class S> FRNN_DEVICE void mma_half(float (&d)[4], const uint32_t (&a)[4],
                                             const uint32_t (&b)[2]) {
  if constexpr (std::is_same<S, c10::Half>::value) portable::mma_f16_16816(d, a, b, d);
  else portable::mma_bf16_16816(d, a, b, d);
}

// Whether this call can stage by cp.async (see the header): 16-byte copies need the a rows (K,
// lda, both sources) and the W rows (ldw, w) on 16-byte boundaries; by columns also each copy's
// units all in or all out of range (k0 and H whole copies). A null source is never read.
template <WView kView, class AS, class WS>
FRNN_DEVICE bool async_staging_ok(const AS* a, const AS* a_alt, int lda, const WS* w, int ldw,
                                  int H, int k0, int K) {
  constexpr int VA = 16 / int(sizeof(AS)), VW = 16 / int(sizeof(WS));
  auto aligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; };
  const bool rows_ok = K % VA == 0 && lda % VA == 0 && aligned(a) && aligned(a_alt) &&
                       ldw % VW == 0 && aligned(w);
  if (kView == WView::kRows) return rows_ok && K % VW == 0;
  return rows_ok && k0 % VW == 0 && H % VW == 0;
}

template <class Sh, WView kView, class AS = typename Sh::scalar_t>
FRNN_DEVICE void tile_product_mma(const AS* __restrict__ a, const AS* __restrict__ a_alt,
                                  int a_split, int lda, int a_rows,
                                  const typename Sh::scalar_t* __restrict__ w, int ldw, int H,
                                  int k0, int K, float* smem_f) {
  using O = typename Sh::op_t;
  static_assert(Sh::kTf32 || std::is_same<AS, typename Sh::scalar_t>::value,
                "16-bit operands are taken as stored: fp32 rows (gate gradients) need kTf32*");
  constexpr int BT = Sh::BT, NC = Sh::NC, KC = Sh::KC, LD = Sh::kLdTile;
  constexpr int NT = Sh::kThreads, WM = Sh::WM, WN = Sh::WN, KS = Sh::kKStep;
  constexpr int NA = (BT * KC + NT - 1) / NT, NW = (NC * KC + NT - 1) / NT;
  constexpr int kHalfK = KS / 2;  // k columns of one ldmatrix matrix: 8 halves or 4 floats
  O* const stages = reinterpret_cast<O*>(smem_f);
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int q = warp / (Sh::kWarpsM * Sh::kWarpsN);
  const int wi = warp % (Sh::kWarpsM * Sh::kWarpsN);
  const int m0 = (wi / Sh::kWarpsN) * 16 * WM;  // first batch row of the warp's tiles
  const int n0 = (wi % Sh::kWarpsN) * 8 * WN;   // first product column

  float acc[WM][WN][4];
FRNN_UNROLL
  for (int i = 0; i < WM; ++i)
FRNN_UNROLL
    for (int j = 0; j < WN; ++j)
FRNN_UNROLL
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

  // Group q's k-steps of one staged chunk into the accumulators. kRound: the staged operands are
  // fp32 as stored (the cp.async path), rounded to tf32 here, fragment by fragment (cvt.rna, as
  // the register path rounds them when staging: the same values). kCols: W staged by the
  // cp.async path in columns, [KC][kLdCols] as stored (type S); its tf32 B fragment is read
  // per lane (b0 = Wsel(n0 + g, k t), b1 at k t + 4; g = lane / 4, t = lane % 4, PTX's
  // m16n8k8 layout) and widened, since ldmatrix.trans moves 16-bit elements only.
  using S = typename Sh::scalar_t;
  auto multiply = [&](const O* As, const void* Wv, auto round_tag, auto cols_tag) {
    constexpr bool kRound = decltype(round_tag)::value, kCols = decltype(cols_tag)::value;
    const O* Ws = static_cast<const O*>(Wv);
    const S* Wc = static_cast<const S*>(Wv);
FRNN_UNROLL
    for (int s = q; s < KC / KS; s += Sh::KSPLIT) {
      const int kb = s * KS;
      uint32_t fa[WM][4], fb[WN][2];
      // A (16 rows x KS): lanes 0-15 address rows 0-15 at k kb, lanes 16-31 the same rows at
      // kb + KS/2: matrices (rows 0-7, k lo), (8-15, lo), (0-7, hi), (8-15, hi) = a[0..3].
FRNN_UNROLL
      for (int i = 0; i < WM; ++i)
        portable::ldmatrix_x4(fa[i], As + (m0 + 16 * i + (lane & 15)) * LD + kb + (lane >> 4) * kHalfK);
      // B (KS x 8 columns) from the 8 Wsel rows: matrices (k lo), (k hi) = b[0], b[1]; lanes
      // 16-31 repeat lanes 0-15's addresses (ignored by .x2, but valid).
      if constexpr (kCols) {
        static_assert(decltype(cols_tag)::value && Sh::kTf32,
                      "W by columns feeds the tf32 mma (the backward)");
        const int g = lane >> 2, t = lane & 3;
FRNN_UNROLL
        for (int j = 0; j < WN; ++j)
FRNN_UNROLL
          for (int r = 0; r < 2; ++r) {
            const float v = static_cast<float>(Wc[(kb + t + 4 * r) * Sh::kLdCols + n0 + 8 * j + g]);
            fb[j][r] = sizeof(S) == 2 ? __float_as_uint(v) : portable::to_tf32(v);  // halves: exact
          }
      } else {
FRNN_UNROLL
        for (int j = 0; j < WN; ++j)
          portable::ldmatrix_x2(fb[j], Ws + (n0 + 8 * j + (lane & 7)) * LD + kb + ((lane >> 3) & 1) * kHalfK);
      }
      if constexpr (kRound) {
FRNN_UNROLL
        for (int i = 0; i < WM; ++i)
FRNN_UNROLL
          for (int r = 0; r < 4; ++r) fa[i][r] = portable::to_tf32(__uint_as_float(fa[i][r]));
        if constexpr (!kCols) {
FRNN_UNROLL
          for (int j = 0; j < WN; ++j)
FRNN_UNROLL
            for (int r = 0; r < 2; ++r) fb[j][r] = portable::to_tf32(__uint_as_float(fb[j][r]));
        }
      }
      if constexpr (Sh::kMma == Prec::kTf32x2) {
        uint32_t lo[WM][4];  // a = hi + lo, both tf32: the small term first
FRNN_UNROLL
        for (int i = 0; i < WM; ++i)
FRNN_UNROLL
          for (int r = 0; r < 4; ++r) {
            const float x = __uint_as_float(fa[i][r]);
            fa[i][r] = portable::to_tf32(x);
            lo[i][r] = portable::to_tf32(x - __uint_as_float(fa[i][r]));
          }
FRNN_UNROLL
        for (int i = 0; i < WM; ++i)
FRNN_UNROLL
          for (int j = 0; j < WN; ++j) portable::mma_tf32_1688(acc[i][j], lo[i], fb[j], acc[i][j]);
      }
FRNN_UNROLL
      for (int i = 0; i < WM; ++i)
FRNN_UNROLL
        for (int j = 0; j < WN; ++j) {
          if constexpr (Sh::kTf32) portable::mma_tf32_1688(acc[i][j], fa[i], fb[j], acc[i][j]);
          else mma_half<typename Sh::scalar_t>(acc[i][j], fa[i], fb[j]);
        }
    }
  };

  // cp.async staging: each operand copied as stored, 16 bytes a copy, straight into shared
  // memory; two stages, so chunk c+1's copies are in flight while chunk c multiplies. The a rows
  // need the staging type (bf16/fp16 as stored; fp32 for TF32, rounded per fragment; the fp32
  // gate gradients of kTf32x2). W: by rows (kRows) when the staging type is its storage; by
  // columns (kColumns: W[j][k0 + n], contiguous along n) into [KC][kLdCols] for the tf32 mma.
  // Otherwise (rows off 16-byte boundaries: odd H) the register path below.
  constexpr bool kAsync = std::is_same<AS, O>::value &&
                          (kView == WView::kRows ? std::is_same<S, O>::value : Sh::kTf32);
  bool use_async = false;
  if constexpr (kAsync) use_async = async_staging_ok<kView>(a, a_alt, lda, w, ldw, H, k0, K);
  if constexpr (kAsync) {
    if (use_async) {
      constexpr int VA = 16 / int(sizeof(AS)), VW = 16 / int(sizeof(S));
      static_assert(KC % VA == 0 && KC % VW == 0 && NC % VW == 0, "whole 16-byte copies");
      constexpr int KVA = KC / VA;                                           // copies an a row
      constexpr int CA = BT * KVA;
      constexpr int CW = kView == WView::kRows ? NC * (KC / VW) : KC * (NC / VW);
      constexpr int IA = (CA + NT - 1) / NT, IW = (CW + NT - 1) / NT;
      constexpr int kStageElems = Sh::kStageBytes / int(sizeof(O));
      static_assert(Sh::kStageBytes % 16 == 0 && (BT * LD * int(sizeof(O))) % 16 == 0,
                    "stages and their W part start on 16-byte boundaries");
      auto issue = [&](int j0, O* As) {
        S* Ws = reinterpret_cast<S*>(As + BT * LD);
FRNN_UNROLL
        for (int i = 0; i < IA; ++i) {
          const int e = tid + i * NT;
          if (CA % NT == 0 || e < CA) {
            const int b = e / KVA, jj = (e % KVA) * VA, j = j0 + jj;
            const bool ok = b < a_rows && j < K;
            const AS* src = b < a_split ? a : a_alt;
            const void* from = ok ? static_cast<const void*>(src + (size_t)b * lda + j) : w;
            portable::cp_async<16>(As + b * LD + jj, from, ok);
          }
        }
FRNN_UNROLL
        for (int i = 0; i < IW; ++i) {
          const int e = tid + i * NT;
          if (CW % NT == 0 || e < CW) {
            if constexpr (kView == WView::kRows) {
              const int n = e / (KC / VW), jj = (e % (KC / VW)) * VW, j = j0 + jj;
              const int unit = k0 + n % Sh::HT, wrow = (n / Sh::HT) * H + unit;
              const bool ok = unit < H && j < K;
              portable::cp_async<16>(Ws + n * LD + jj, ok ? w + (size_t)wrow * ldw + j : w, ok);
            } else {  // row kk of the chunk: W[j0 + kk][k0 + n .. + VW)
              const int kk = e / (NC / VW), n = (e % (NC / VW)) * VW, j = j0 + kk;
              const bool ok = k0 + n < H && j < K;
              portable::cp_async<16>(Ws + kk * Sh::kLdCols + n,
                                     ok ? w + (size_t)j * ldw + k0 + n : w, ok);
            }
          }
        }
      };
      constexpr bool kRound = Sh::kMma == Prec::kTf32;
      constexpr bool kCols = kView == WView::kColumns;
      const int chunks = (K + KC - 1) / KC;
      if (chunks > 0) issue(0, stages);
      portable::cp_async_commit();
      for (int c = 0; c < chunks; ++c) {
        if (c + 1 < chunks) issue((c + 1) * KC, stages + ((c + 1) & 1) * kStageElems);
        portable::cp_async_commit();
        portable::cp_async_wait<1>();  // chunk c's group has landed (c+1's may be in flight)
        __syncthreads();
        const O* As = stages + (c & 1) * kStageElems;
        multiply(As, As + BT * LD, std::integral_constant<bool, kRound>{},
                 std::integral_constant<bool, kCols>{});
        __syncthreads();  // stage c&1 is free for chunk c+2's copies
      }
      portable::cp_async_wait<0>();
    }
  }
  if (!use_async) {
    O* As = stages;            // [BT][LD]
    O* Ws = stages + BT * LD;  // [NC][LD]
    O ra[NA], rw[NW];
    auto load = [&](int j0) {
      load_chunk<Sh, kView, ToOperand<Sh::kMma, true, O>, ToOperand<Sh::kMma, false, O>>(
          ra, rw, a, a_alt, a_split, lda, a_rows, w, ldw, H, k0, K, j0);
    };
    if (K > 0) load(0);
    for (int j0 = 0; j0 < K; j0 += KC) {
      store_chunk<Sh, kView>(ra, rw, As, Ws);
      __syncthreads();
      if (j0 + KC < K) load(j0 + KC);
      multiply(As, Ws, std::false_type{}, std::false_type{});
      __syncthreads();
    }
  }
  // Partials of group q: part[q][b][n]; C/D fragment: c[r] at row g + 8*(r/2), column 2t + r%2.
  float* part = smem_f;
  const int g = lane >> 2, t = lane & 3;
FRNN_UNROLL
  for (int i = 0; i < WM; ++i)
FRNN_UNROLL
    for (int j = 0; j < WN; ++j)
FRNN_UNROLL
      for (int r = 0; r < 4; ++r)
        part[(q * BT + m0 + 16 * i + g + 8 * (r / 2)) * Sh::kLdPart + n0 + 8 * j + 2 * t + r % 2] =
            acc[i][j][r];
  __syncthreads();
}

// The product every stepwise kernel calls: on tensor cores for an MmaShape, FFMA for a TileShape.
template <class Sh, WView kView, class AS = typename Sh::scalar_t>
FRNN_DEVICE void tile_product(const AS* __restrict__ a, const AS* __restrict__ a_alt, int a_split,
                              int lda, int a_rows, const typename Sh::scalar_t* __restrict__ w,
                              int ldw, int H, int k0, int K, typename Sh::acc_t* smem) {
  if constexpr (Sh::kTensorCores)
    tile_product_mma<Sh, kView, AS>(a, a_alt, a_split, lda, a_rows, w, ldw, H, k0, K, smem);
  else
    tile_product_ffma<Sh, kView, AS>(a, a_alt, a_split, lda, a_rows, w, ldw, H, k0, K, smem);
}

}  // namespace kern
}  // namespace fusedrnn
