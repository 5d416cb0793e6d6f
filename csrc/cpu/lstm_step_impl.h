// The fused LSTM step (contract: lstm_step.h), written once over instruction-set traits and
// instantiated by pointwise_avx512.cpp and pointwise_avx2.cpp after pointwise_impl.h, inside the
// TU's target pragma: it uses FastF and the shared cell math from there, so the cell update is
// the same code as the pointwise pass's.
//
// Isa provides: L (floats per vector = units per panel; the cell math's V<float> must have the
// same width), MR (rows per tile: MR * 4 accumulators and the panel's 4 vectors of one k fit the
// register file), KC (K chunk), kPinPanel (how many of the panel's 4 vectors of one k to keep in
// registers, 0, 2 or 4, rather than as FMA memory operands), kMaxStepH (lstm_step.h:
// lstm_step_for), vector type V and mask type Mask, and static functions zero(),
// load(p) (aligned to the vector), loadu(p), storeu(p, v), set1(x), fma(a, b, c) = a*b + c,
// add(a, b), mask(n) (lanes < n; any n), maskload(m, p) (masked-off lanes read as 0, never
// touched), maskstore(p, m, v), and transpose(src, lds, rows, cols, dst, ldd): an L x L block
// transpose as transpose16.h's.
#pragma once

#include <immintrin.h>

#include "cpu/gemm.h"
#include "cpu/lstm_step.h"

namespace fusedrnn {
namespace cpu {
namespace FRNN_PW_NS {
namespace step {

template <class Isa>
constexpr int64_t kCols = 4 * Isa::L;

// Rows r0..r0+R-1 of the step, units u0..u0+nu-1 (one panel), k in [k0, k0+kc). The gate
// pre-activations live in g between chunks: the first chunk starts from the input
// pre-activations there, middle chunks store partial sums back, the last applies the cell.
template <class Isa, int R>
static void tile(int64_t H, int64_t k0, int64_t kc, bool last, const float* h, const float* bp,
                 int64_t u0, int64_t nu, float* g, float* cs, float* c_out, float* m_out) {
  using Vec = typename Isa::V;
  constexpr int L = Isa::L;
  constexpr int64_t NC = kCols<Isa>;
  static_assert(V<float>::size() == L, "the cell math must run on the panel's vectors");
  // One row has only 4 FMA chains (latency 4 on two pipes wants >= 8): alternate two sets of
  // partial sums over k there.
  constexpr int S = R == 1 ? 2 : 1;
  const bool full = nu >= L;
  const typename Isa::Mask mask = Isa::mask(nu);
  Vec acc[S][R][4];
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const float* p = g + i * 4 * H + q * H + u0;
      acc[0][i][q] = full ? Isa::loadu(p) : Isa::maskload(mask, p);
      if (S == 2) acc[S - 1][i][q] = Isa::zero();
    }
  const float* a = h + k0;
  int64_t k = 0;
  for (; k + S <= kc; k += S) {
#pragma GCC unroll 2
    for (int s = 0; s < S; ++s) {
      const float* b = bp + (k + s) * NC;
      Vec b0 = Isa::load(b), b1 = Isa::load(b + L), b2 = Isa::load(b + 2 * L),
          b3 = Isa::load(b + 3 * L);
      // Left to itself GCC folds these loads into every row's FMAs (R + 1 loads per FMA pair
      // where 1 + R/4 would do); with two loads a cycle that starves the FMA pipes at R = 2.
      if constexpr (Isa::kPinPanel == 4) asm("" : "+x"(b0), "+x"(b1), "+x"(b2), "+x"(b3));
      if constexpr (Isa::kPinPanel == 2) asm("" : "+x"(b0), "+x"(b1));
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        const Vec ai = Isa::set1(a[i * H + k + s]);
        acc[s][i][0] = Isa::fma(ai, b0, acc[s][i][0]);
        acc[s][i][1] = Isa::fma(ai, b1, acc[s][i][1]);
        acc[s][i][2] = Isa::fma(ai, b2, acc[s][i][2]);
        acc[s][i][3] = Isa::fma(ai, b3, acc[s][i][3]);
      }
    }
  }
  for (; k < kc; ++k) {
    const float* b = bp + k * NC;
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const Vec ai = Isa::set1(a[i * H + k]);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q)
        acc[0][i][q] = Isa::fma(ai, Isa::load(b + L * q), acc[0][i][q]);
    }
  }
  if (S == 2) {
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) acc[0][i][q] = Isa::add(acc[0][i][q], acc[S - 1][i][q]);
  }
  for (int i = 0; i < R; ++i) {
    float* gi = g + i * 4 * H + u0;
    if (!last) {
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        if (full) {
          Isa::storeu(gi + q * H, acc[0][i][q]);
        } else {
          Isa::maskstore(gi + q * H, mask, acc[0][i][q]);
        }
      }
      continue;
    }
    const int64_t e = i * H + u0;
    using F = C<float>;
    F gi_, gf, gg, go, c, m;
    cells::lstm_forward<F>(F(V<float>(acc[0][i][0])), F(V<float>(acc[0][i][1])),
                           F(V<float>(acc[0][i][2])), F(V<float>(acc[0][i][3])),
                           ld(cs + e, nu), gi_, gf, gg, go, c, m);
    st(gi_, gi, nu), st(gf, gi + H, nu), st(gg, gi + 2 * H, nu), st(go, gi + 3 * H, nu);
    st(c, cs + e, nu), st(c, c_out + e, nu), st(m, m_out + e, nu);
  }
}

template <class Isa, int R = 1>
static void tile_rows(int64_t r, int64_t H, int64_t k0, int64_t kc, bool last, const float* h,
                      const float* bp, int64_t u0, int64_t nu, float* g, float* cs,
                      float* c_out, float* m_out) {
  if constexpr (R < Isa::MR) {
    if (r != R)
      return tile_rows<Isa, R + 1>(r, H, k0, kc, last, h, bp, u0, nu, g, cs, c_out, m_out);
  }
  tile<Isa, R>(H, k0, kc, last, h, bp, u0, nu, g, cs, c_out, m_out);
}

// Panels p0 .. p1-1 of the step (arguments as lstm_step.h), in reverse order when rev.
template <class Isa>
static void panels(const LstmStepWeights& w, int64_t n, const float* h, float* g, float* cs,
                   float* c_out, float* m_out, int64_t p0, int64_t p1, bool rev) {
  constexpr int64_t kU = Isa::L, NC = kCols<Isa>, MR = Isa::MR;
  const int64_t H = w.H;
  const int64_t tiles = (n + MR - 1) / MR;
  const bool prefetch = double(w.panels) * double(H) * NC * sizeof(float) >= kPrefetchBytes &&
                        tiles >= kPrefetchTiles;
  for (int64_t q = p0; q < p1; ++q) {
    const int64_t p = rev ? p0 + p1 - 1 - q : q;
    const int64_t u0 = p * kU, nu = std::min(kU, H - u0);
    const float* bp = w.data.get() + p * H * NC;
    // the first chunk of the panel this slot takes next (null after its last)
    const float* bnext = q + 1 < p1 ? w.data.get() + (rev ? p - 1 : p + 1) * H * NC : nullptr;
    for (int64_t k0 = 0; k0 < H; k0 += Isa::KC) {
      const int64_t kc = std::min<int64_t>(Isa::KC, H - k0);
      const bool last = k0 + kc == H;
      // The next chunk of W_hh into L2 while this one is multiplied, a share per row tile (as
      // the GEMM's driver, gemm.h: kPrefetchBytes).
      const float* nx = last ? bnext : bp + (k0 + kc) * NC;
      const int64_t nk = std::min<int64_t>(Isa::KC, last ? H : H - k0 - kc);
      const int64_t lines = nx && prefetch ? nk * NC * int64_t(sizeof(float)) / 64 : 0;
      for (int64_t r0 = 0, t = 0; r0 < n; r0 += MR, ++t) {
        prefetch_share_l2(nx, lines, t, tiles);
        // The next tile's first loads (input pre-activations at k0 = 0, the cell state in the
        // last chunk) miss the cache: their rows are 8 KB apart. Asking for them one tile
        // ahead hides that latency (it was ~13% of the step's time).
        if (r0 + MR < n && (k0 == 0 || last)) {
          for (int64_t i = r0 + MR; i < std::min(n, r0 + 2 * MR); ++i) {
            if (k0 == 0)
              for (int gate = 0; gate < 4; ++gate)
                _mm_prefetch(reinterpret_cast<const char*>(g + i * 4 * H + gate * H + u0),
                             _MM_HINT_T0);
            if (last) _mm_prefetch(reinterpret_cast<const char*>(cs + i * H + u0), _MM_HINT_T0);
          }
        }
        tile_rows<Isa>(std::min(MR, n - r0), H, k0, kc, last, h + r0 * H, bp + k0 * NC, u0, nu,
                       g + r0 * 4 * H, cs + r0 * H, c_out + r0 * H, m_out + r0 * H);
      }
    }
  }
}

template <class Isa>
static void lstm_step(const LstmStepWeights& w, int64_t n, const float* h, float* g,
                      float* cs, float* c_out, float* m_out) {
  const int64_t H = w.H;
  TORCH_CHECK(w.units == Isa::L, "fusedrnn: W_hh packed for another instruction set");
  if (n == 0 || H == 0) return;
  w.ensure_packed();
  const bool reverse = w.steps.fetch_add(1, std::memory_order_relaxed) & 1;
  auto run = [&](int64_t p0, int64_t p1) {
    panels<Isa>(w, n, h, g, cs, c_out, m_out, p0, p1, reverse);
  };
  const double flops = 8.0 * double(n) * double(H) * double(H);
  const double bytes = double(w.panels) * double(H) * kCols<Isa> * sizeof(float);
  if (run_on_caller(flops, bytes)) {  // thin steps (B = 1) still split: two cores read W_hh faster
    run(0, w.panels);
  } else {
    at::parallel_for(0, w.panels, 1, run);
  }
}

template <class Isa>
static void pack_panel(const float* w_hh, int64_t H, int64_t p, float* d) {
  constexpr int64_t L = Isa::L, NC = kCols<Isa>;
  const int rows = int(std::min(L, H - p * L));
  // Gate q's L units are rows q*H + Lp + u of W_hh; their first L k land, transposed, in
  // columns Lq .. Lq+L-1 of the panel's first L rows; and so on along k.
  for (int64_t q = 0; q < 4; ++q)
    for (int64_t k0 = 0; k0 < H; k0 += L)
      Isa::transpose(w_hh + (q * H + p * L) * H + k0, H, rows, int(std::min(L, H - k0)),
                     d + k0 * NC + q * L, NC);
}

template <class Isa>
const LstmStepKernel& kernel(const char* name) {
  static const LstmStepKernel k{name, Isa::L, Isa::kMaxStepH, &pack_panel<Isa>, &lstm_step<Isa>};
  return k;
}

}  // namespace step
}  // namespace FRNN_PW_NS
}  // namespace cpu
}  // namespace fusedrnn
