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
//   cp.async (kRows, i.e. the forward products, when the operands are staged as stored: kHalf,
//     and kTf32, whose fragments are then rounded after ldmatrix; and when K, lda, ldw and the
//     base pointers are 16-byte aligned, e.g. H a multiple of 8 for the half types, 4 for fp32):
//     16-byte copies from global straight into one of two shared-memory stages, chunk c+1's
//     copies in flight while chunk c multiplies; no registers, 128-bit transactions.
//   registers (otherwise: kColumns, whose W columns would need a transposing copy; kTf32x2's
//     widened W; odd sizes): the next chunk's global loads held in registers meanwhile, element
//     by element (as tile_product_ffma). Warps: WARPS_M x WARPS_N tiles of WM x WN mma tiles (a warp's A fragments serve
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
  // Two stages of staged operands (the cp.async path; the register path uses the first).
  static constexpr int kSmemBytes = cmax(2 * (BT + NC) * kLdTile * int(sizeof(op_t)),
                                         KSPLIT * BT * kLdPart * int(sizeof(float)));
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

// Whether this call can stage by cp.async (see the header): 16-byte copies need K, both leading
// dimensions and the three base pointers on 16-byte boundaries (a null source is never read).
template <class O, class AS, class WS>
FRNN_DEVICE bool async_staging_ok(const AS* a, const AS* a_alt, int lda, const WS* w, int ldw,
                                  int K) {
  constexpr int V = 16 / int(sizeof(O));
  auto aligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; };
  return K % V == 0 && lda % V == 0 && ldw % V == 0 && aligned(a) && aligned(a_alt) && aligned(w);
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
  constexpr int kStage = (BT + NC) * LD;  // one stage: As [BT][LD], then Ws [NC][LD]
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
  // the register path rounds them when staging: the same values).
  auto multiply = [&](const O* As, const O* Ws, auto round_tag) {
    constexpr bool kRound = decltype(round_tag)::value;
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
FRNN_UNROLL
      for (int j = 0; j < WN; ++j)
        portable::ldmatrix_x2(fb[j], Ws + (n0 + 8 * j + (lane & 7)) * LD + kb + ((lane >> 3) & 1) * kHalfK);
      if constexpr (kRound) {
FRNN_UNROLL
        for (int i = 0; i < WM; ++i)
FRNN_UNROLL
          for (int r = 0; r < 4; ++r) fa[i][r] = portable::to_tf32(__uint_as_float(fa[i][r]));
FRNN_UNROLL
        for (int j = 0; j < WN; ++j)
FRNN_UNROLL
          for (int r = 0; r < 2; ++r) fb[j][r] = portable::to_tf32(__uint_as_float(fb[j][r]));
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

  // cp.async staging: both operands in rows (kRows) and staged as stored (16-bit types, or fp32
  // rounded to tf32 per fragment), 16 bytes a copy straight into shared memory; two stages, so
  // chunk c+1's copies are in flight while chunk c multiplies. Otherwise (kColumns, whose W
  // columns would need a transposing copy; kTf32x2's widened W; misaligned rows) the register path.
  constexpr bool kAsync = kView == WView::kRows && std::is_same<AS, O>::value &&
                          std::is_same<typename Sh::scalar_t, O>::value;
  bool use_async = false;
  if constexpr (kAsync) use_async = async_staging_ok<O>(a, a_alt, lda, w, ldw, K);
  if constexpr (kAsync) {
    if (use_async) {
      constexpr int V = 16 / int(sizeof(O)), KV = KC / V;  // elements a copy, copies a row
      static_assert(KC % V == 0, "a chunk row is whole 16-byte copies");
      constexpr int CA = BT * KV, CW = NC * KV;
      constexpr int IA = (CA + NT - 1) / NT, IW = (CW + NT - 1) / NT;
      auto issue = [&](int j0, O* As) {
        O* Ws = As + BT * LD;
FRNN_UNROLL
        for (int i = 0; i < IA; ++i) {
          const int e = tid + i * NT;
          if (CA % NT == 0 || e < CA) {
            const int b = e / KV, jj = (e % KV) * V, j = j0 + jj;
            const bool ok = b < a_rows && j < K;
            const AS* src = b < a_split ? a : a_alt;
            portable::cp_async<16>(As + b * LD + jj, ok ? src + (size_t)b * lda + j : w, ok);
          }
        }
FRNN_UNROLL
        for (int i = 0; i < IW; ++i) {
          const int e = tid + i * NT;
          if (CW % NT == 0 || e < CW) {
            const int n = e / KV, jj = (e % KV) * V, j = j0 + jj;
            const int unit = k0 + n % Sh::HT, wrow = (n / Sh::HT) * H + unit;
            const bool ok = unit < H && j < K;
            portable::cp_async<16>(Ws + n * LD + jj, ok ? w + (size_t)wrow * ldw + j : w, ok);
          }
        }
      };
      const int chunks = (K + KC - 1) / KC;
      if (chunks > 0) issue(0, stages);
      portable::cp_async_commit();
      for (int c = 0; c < chunks; ++c) {
        if (c + 1 < chunks) issue((c + 1) * KC, stages + ((c + 1) & 1) * kStage);
        portable::cp_async_commit();
        portable::cp_async_wait<1>();  // chunk c's group has landed (c+1's may be in flight)
        __syncthreads();
        const O* As = stages + (c & 1) * kStage;
        multiply(As, As + BT * LD, std::integral_constant<bool, Sh::kMma == Prec::kTf32>{});
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
      multiply(As, Ws, std::false_type{});
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
