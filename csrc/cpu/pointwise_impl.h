// Implementation of the CPU pointwise passes (contract: pointwise.h) over SIMD vectors of the
// instruction set the including translation unit selects (CPU_CAPABILITY), calling the shared
// cell math of csrc/cells with T = at::vec::Vectorized<S>. The includer defines FRNN_PW_NS, the
// namespace of this copy, and FRNN_PW_TABLE, the name of its table getter.
#pragma once

#define FRNN_CELLS_VECTORIZED 1
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#endif

#include <algorithm>

#include "cells/cells.h"
#include "cells/gru_reset_before.h"
#include "cells/layer_norm_lstm.h"
#include "cpu/pointwise.h"

namespace fusedrnn {
namespace cpu {
namespace FRNN_PW_NS {

template <class S>
using V = at::vec::Vectorized<S>;

// fp32 cells run on FastF: ATen's vector with exp inline (fast_exp) and tanh computed from it,
// tanh x = 1 - 2 / (e^{2x} + 1) (e^{2x} = inf or 0 gives exactly +-1), and for |x| < 1/16,
// where that form loses relative accuracy to cancellation, the Taylor series to x^7 (next term
// < 1e-11 relative). The library tanh (and expm1) cost several times more here: perf showed
// tanh as the largest item after the GEMM. Absolute error stays ~1e-7. The shared cell math
// (csrc/cells) finds exp_/tanh_/relu_ for FastF by argument-dependent lookup.
struct FastF {
  V<float> v;
  FastF() = default;
  explicit FastF(const V<float>& x) : v(x) {}
  explicit FastF(float s) : v(s) {}
};
static inline FastF operator+(const FastF& a, const FastF& b) { return FastF(a.v + b.v); }
static inline FastF operator-(const FastF& a, const FastF& b) { return FastF(a.v - b.v); }
static inline FastF operator*(const FastF& a, const FastF& b) { return FastF(a.v * b.v); }
static inline FastF operator/(const FastF& a, const FastF& b) { return FastF(a.v / b.v); }
static inline FastF operator-(const FastF& a) { return FastF(a.v.neg()); }
// e^x for FastF, inline on AVX2 / AVX-512 (SLEEF's exp is a call of ~17 cycles a vector; the
// LSTM forward at T=20 B=8 H=128 spent ~10% of its time there, five exps per unit and step).
// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then e^r by Cephes' degree-6 polynomial
// (relative error < 2 ulp) and 2^n put into the exponent bits. x is clamped to
// [-87.34, 88.72] first, so 2^n stays a normal float except at the top (x > 88.37), where
// n = 128 makes the exponent field all ones: the result is then +inf, which the cells read as
// SLEEF's overflow (sigmoid 0 or 1, tanh +-1); below the range it is ~1.2e-38 instead of a
// denormal or 0, the same to the cells. NaN passes through: MINPS/MAXPS return their second
// operand when one is NaN, and x is that operand. Forced inline: GCC kept it (and tanh_) a call
// on AVX-512.
__attribute__((always_inline)) static inline V<float> fast_exp(const V<float>& xv) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  using at::vec::fmadd;
  // clamp is MINPS(hi, MAXPS(lo, x)) on both instruction sets: x second, so NaN passes.
  const V<float> x = at::vec::clamp(xv, V<float>(-87.3365478515625f), V<float>(88.7228391116729f));
  const V<float> n = (x * V<float>(1.44269504088896341f)).round();  // to nearest
  V<float> r = fmadd(n, V<float>(-0.693359375f), x);
  r = fmadd(n, V<float>(2.12194440e-4f), r);
  V<float> p(1.9875691500e-4f);
  p = fmadd(p, r, V<float>(1.3981999507e-3f));
  p = fmadd(p, r, V<float>(8.3334519073e-3f));
  p = fmadd(p, r, V<float>(4.1665795894e-2f));
  p = fmadd(p, r, V<float>(1.6666665459e-1f));
  p = fmadd(p, r, V<float>(5.0000001201e-1f));
  const V<float> y = fmadd(p, r * r, r) + V<float>(1.f);
  // 2^n: the float whose exponent field is n + 127.
#if defined(CPU_CAPABILITY_AVX512)
  const __m512 two_n = _mm512_castsi512_ps(_mm512_slli_epi32(
      _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
#else
  const __m256 two_n = _mm256_castsi256_ps(_mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
#endif
  return y * V<float>(two_n);
#else
  return xv.exp();
#endif
}
static inline FastF exp_(const FastF& x) { return FastF(fast_exp(x.v)); }
static inline FastF tanh_(const FastF& x) {
  const V<float> one(1.f), two(2.f);
  const V<float> big = one - two / (fast_exp(x.v + x.v) + one);
  const V<float> x2 = x.v * x.v;  // x - x^3/3 + 2x^5/15 - 17x^7/315
  const V<float> small =
      x.v + x.v * x2 * at::vec::fmadd(x2, at::vec::fmadd(x2, V<float>(-17.f / 315.f),
                                                         V<float>(2.f / 15.f)),
                                      V<float>(-1.f / 3.f));
  return FastF(V<float>::blendv(big, small, x.v.abs() < V<float>(0.0625f)));
}
static inline FastF relu_(const FastF& x) { return FastF(cells::relu_(x.v)); }
static inline FastF relu_grad_(const FastF& h, const FastF& dh) {
  return FastF(cells::relu_grad_(h.v, dh.v));
}

template <class S> struct CellVec { using type = V<S>; };
template <> struct CellVec<float> { using type = FastF; };
// The vector type the cell math runs on for S.
template <class S>
using C = typename CellVec<S>::type;

static inline const V<double>& raw(const V<double>& x) { return x; }
static inline const V<float>& raw(const FastF& x) { return x.v; }

template <class S>
static inline C<S> ld(const S* p, int64_t k) {
  return C<S>(k == V<S>::size() ? V<S>::loadu(p) : V<S>::loadu(p, k));
}
template <class S>
static inline void st(const C<S>& c, S* p, int64_t k) {
  const V<S>& v = raw(c);
  if (k == V<S>::size()) {
    v.store(p);
  } else {
    v.store(p, k);
  }
}

// fn(b, j, k) for every row b < n and every vector j, j+k of the row's H units. Threads split
// rows only when there is enough work to pay for waking the pool.
template <class F>
static inline void for_units(int64_t n, int64_t H, int64_t width, const F& fn) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, H));
  auto rows = [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t j = 0; j < H; j += width) fn(b, j, std::min(width, H - j));
  };
  if (n <= grain) {
    rows(0, n);
  } else {
    at::parallel_for(0, n, grain, rows);
  }
}

template <class S>
static void lstm_forward(int64_t n, int64_t H, S* g, S* c_state, S* c_out, S* m_out,
                         S* h_state) {
  for_units(n, H, V<S>::size(), [&](int64_t b, int64_t j, int64_t k) {
    S* gb = g + b * 4 * H + j;
    const int64_t e = b * H + j;
    C<S> i, f, gg, o, c, m;
    cells::lstm_forward<C<S>>(ld(gb, k), ld(gb + H, k), ld(gb + 2 * H, k), ld(gb + 3 * H, k),
                              ld(c_state + e, k), i, f, gg, o, c, m);
    st(i, gb, k), st(f, gb + H, k), st(gg, gb + 2 * H, k), st(o, gb + 3 * H, k);
    st(c, c_state + e, k), st(c, c_out + e, k), st(m, m_out + e, k);
    if (h_state) st(m, h_state + e, k);
  });
}

// The LSTM backward cell of row b, units j .. j+k-1 (arguments as Pointwise::lstm_backward):
// the pointwise pass and the thin backward sweep (lstm_sweep_impl.h) both run it.
template <class S>
static inline void lstm_backward_units(int64_t b, int64_t j, int64_t k, int64_t H, const S* g,
                                       const S* c, const S* c_prev, const S* dm_a,
                                       const S* dm_b, S* dc_state, S* da) {
  const S* gb = g + b * 4 * H + j;
  S* db = da + b * 4 * H + j;
  const int64_t e = b * H + j;
  C<S> dm = ld(dm_a + e, k);
  if (dm_b) dm = dm + ld(dm_b + e, k);
  C<S> dai, daf, dag, dao, dcp;
  cells::lstm_backward<C<S>>(ld(gb, k), ld(gb + H, k), ld(gb + 2 * H, k), ld(gb + 3 * H, k),
                             ld(c + e, k), ld(c_prev + e, k), dm, ld(dc_state + e, k), dai, daf,
                             dag, dao, dcp);
  st(dai, db, k), st(daf, db + H, k), st(dag, db + 2 * H, k), st(dao, db + 3 * H, k);
  st(dcp, dc_state + e, k);
}

template <class S>
static void lstm_backward(int64_t n, int64_t H, const S* g, const S* c, const S* c_prev,
                          const S* dm_a, const S* dm_b, S* dc_state, S* da) {
  for_units(n, H, V<S>::size(), [&](int64_t b, int64_t j, int64_t k) {
    lstm_backward_units<S>(b, j, k, H, g, c, c_prev, dm_a, dm_b, dc_state, da);
  });
}

template <class S>
static void gru_forward(int64_t n, int64_t H, S* g, const S* gh, const S* b_hh, S* h_state,
                        S* h_out, S* ghn_out) {
  for_units(n, H, V<S>::size(), [&](int64_t b, int64_t j, int64_t k) {
    S* gb = g + b * 3 * H + j;
    const S* hb = gh + b * 3 * H + j;
    const int64_t e = b * H + j;
    C<S> hr = ld(hb, k), hz = ld(hb + H, k), hn = ld(hb + 2 * H, k);
    if (b_hh) hr = hr + ld(b_hh + j, k), hz = hz + ld(b_hh + H + j, k),
              hn = hn + ld(b_hh + 2 * H + j, k);
    C<S> r, z, nn, h;
    cells::gru_forward<C<S>>(ld(gb, k), ld(gb + H, k), ld(gb + 2 * H, k), hr, hz, hn,
                             ld(h_state + e, k), r, z, nn, h);
    st(r, gb, k), st(z, gb + H, k), st(nn, gb + 2 * H, k);
    st(h, h_state + e, k), st(h, h_out + e, k), st(hn, ghn_out + e, k);
  });
}

template <class S>
static void gru_backward(int64_t n, int64_t H, const S* g, const S* ghn, const S* h_prev,
                         S* dh_state, const S* dy, S* dgx, S* dgh) {
  for_units(n, H, V<S>::size(), [&](int64_t b, int64_t j, int64_t k) {
    const S* gb = g + b * 3 * H + j;
    S* xb = dgx + b * 3 * H + j;
    S* hb = dgh + b * 3 * H + j;
    const int64_t e = b * H + j;
    C<S> dxr, dxz, dxn, dhn, direct;
    cells::gru_backward<C<S>>(ld(gb, k), ld(gb + H, k), ld(gb + 2 * H, k), ld(ghn + e, k),
                              ld(h_prev + e, k), ld(dh_state + e, k) + ld(dy + e, k), dxr, dxz,
                              dxn, dhn, direct);
    st(dxr, xb, k), st(dxz, xb + H, k), st(dxn, xb + 2 * H, k);
    st(dxr, hb, k), st(dxz, hb + H, k), st(dhn, hb + 2 * H, k);
    st(direct, dh_state + e, k);
  });
}

template <class S>
static void grurb_forward_rz(int64_t n, int64_t H, S* g, const S* gh, int64_t ldgh,
                             const S* h_state, S* rh_out) {
  const bool z_product = ldgh == 2 * H;
  for_units(n, H, V<S>::size(), [&](int64_t b, int64_t j, int64_t k) {
    S* gb = g + b * 3 * H + j;
    const S* hb = gh + b * ldgh + j;
    const int64_t e = b * H + j;
    C<S> r, z, rh, az = ld(gb + H, k);
    if (z_product) az = az + ld(hb + H, k);
    cells::grurb_forward_rz<C<S>>(ld(gb, k) + ld(hb, k), az, ld(h_state + e, k), r, z, rh);
    st(r, gb, k), st(z, gb + H, k), st(rh, rh_out + e, k);
  });
}

template <class S>
static void grurb_forward_n(int64_t n, int64_t H, S* g, const S* ghn, S* h_state, S* h_out,
                            S* th_out, bool mut) {
  using cells::tanh_;  // V<double>'s; FastF's is found by argument-dependent lookup
  for_units(n, H, V<S>::size(), [&](int64_t b, int64_t j, int64_t k) {
    S* gb = g + b * 3 * H + j;
    const int64_t e = b * H + j;
    C<S> nn, h;
    cells::grurb_forward_n<C<S>>(ld(gb + 2 * H, k) + ld(ghn + e, k), ld(gb + H, k),
                                 ld(h_state + e, k), nn, h, mut);
    st(nn, gb + 2 * H, k), st(h, h_state + e, k), st(h, h_out + e, k);
    if (th_out) st(tanh_(h), th_out + e, k);
  });
}

template <class S>
static void grurb_backward_zn(int64_t n, int64_t H, const S* g, const S* h_prev, S* dh_state,
                              const S* dy, S* dg, bool mut) {
  for_units(n, H, V<S>::size(), [&](int64_t b, int64_t j, int64_t k) {
    const S* gb = g + b * 3 * H + j;
    S* db = dg + b * 3 * H + j;
    const int64_t e = b * H + j;
    C<S> dz, dn, direct;
    cells::grurb_backward_zn<C<S>>(ld(gb + H, k), ld(gb + 2 * H, k), ld(h_prev + e, k),
                                   ld(dh_state + e, k) + ld(dy + e, k), dz, dn, direct, mut);
    st(dz, db + H, k), st(dn, db + 2 * H, k), st(direct, dh_state + e, k);
  });
}

template <class S>
static void grurb_backward_r(int64_t n, int64_t H, const S* g, const S* h_prev, const S* drh,
                             S* dh_state, S* dg) {
  for_units(n, H, V<S>::size(), [&](int64_t b, int64_t j, int64_t k) {
    const int64_t e = b * H + j;
    C<S> dr, dh = ld(dh_state + e, k);
    cells::grurb_backward_r<C<S>>(ld(g + b * 3 * H + j, k), ld(h_prev + e, k), ld(drh + e, k),
                                  dr, dh);
    st(dr, dg + b * 3 * H + j, k), st(dh, dh_state + e, k);
  });
}

// fn(b) for every row b < n; threads split the rows as for_units does (work: elements a row
// touches).
template <class F>
static inline void for_rows(int64_t n, int64_t work, const F& fn) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work));
  auto rows = [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) fn(b);
  };
  if (n <= grain) {
    rows(0, n);
  } else {
    at::parallel_for(0, n, grain, rows);
  }
}

// Mean and 1/sqrt(var + eps) of v[0..K), two passes in double (the row is in cache).
template <class S>
static inline void row_stats(const S* v, int64_t K, S& mean, S& rstd) {
  double m = 0, q = 0;
  for (int64_t u = 0; u < K; ++u) m += double(v[u]);
  m /= double(K);
  for (int64_t u = 0; u < K; ++u) q += (double(v[u]) - m) * (double(v[u]) - m);
  mean = S(m);
  rstd = S(1.0 / std::sqrt(q / double(K) + cells::kLayerNormEps));
}

// dgh = LN's backward of dhat * gain over a row of K (gh the raw row, statistics mean, rstd).
template <class S>
static inline void layer_norm_row_backward(int64_t K, const S* dhat, const S* gain, const S* gh,
                                           S mean, S rstd, S* dgh) {
  double m3 = 0, m4 = 0;
  for (int64_t u = 0; u < K; ++u) {
    const double dx = double(dhat[u]) * double(gain[u]);
    m3 += dx;
    m4 += dx * (double(gh[u]) - double(mean)) * double(rstd);
  }
  const int64_t W = V<S>::size();
  const C<S> mh(mean), rh(rstd), cm3(S(m3 / double(K))), cm4(S(m4 / double(K)));
  for (int64_t j = 0; j < K; j += W) {
    const int64_t k = std::min(W, K - j);
    st(cells::layer_norm_backward<C<S>>(ld(dhat + j, k) * ld(gain + j, k),
                                        (ld(gh + j, k) - mh) * rh, cm3, cm4, rh),
       dgh + j, k);
  }
}

template <class S>
static void lnlstm_forward(int64_t n, int64_t H, const S* xp, const S* gh, const S* g_hh,
                           const S* g_c, const S* b_c, S* c_state, S* gates, S* cells, S* stats,
                           S* h_state, S* y) {
  const int64_t W = V<S>::size(), G = 4 * H;
  auto row = [&](int64_t b) {
    const S* xb = xp + b * G;
    const S* hb = gh + b * G;
    S* gb = gates + b * G;
    S* cb = cells + b * H;
    S* sb = stats + b * 4;
    row_stats(hb, G, sb[0], sb[1]);
    const C<S> mh(sb[0]), rh(sb[1]);
    for (int64_t j = 0; j < H; j += W) {
      const int64_t k = std::min(W, H - j);
      C<S> a[4], act[4], c;
      for (int q = 0; q < 4; ++q)
        a[q] = cells::layer_norm_affine<C<S>>(ld(xb + q * H + j, k), ld(g_hh + q * H + j, k),
                                              ld(hb + q * H + j, k), mh, rh);
      cells::lnlstm_cell<C<S>>(a[0], a[1], a[2], a[3], ld(c_state + b * H + j, k), act[0],
                               act[1], act[2], act[3], c);
      for (int q = 0; q < 4; ++q) st(act[q], gb + q * H + j, k);
      st(c, cb + j, k), st(c, c_state + b * H + j, k);
    }
    row_stats(cb, H, sb[2], sb[3]);
    const C<S> mc(sb[2]), rc(sb[3]);
    for (int64_t j = 0; j < H; j += W) {
      const int64_t k = std::min(W, H - j);
      const C<S> h = cells::lnlstm_hidden<C<S>>(ld(gb + 3 * H + j, k), ld(cb + j, k), mc, rc,
                                                ld(g_c + j, k), b_c ? ld(b_c + j, k) : C<S>(S(0)));
      st(h, h_state + b * H + j, k), st(h, y + b * H + j, k);
    }
  };
  for_rows(n, 8 * H, row);
}

template <class S>
static void lnlstm_backward(int64_t n, int64_t H, const S* gates, const S* gh, const S* cells,
                            const S* c_prev, const S* stats, const S* g_hh, const S* g_c,
                            const S* b_c, const S* dh_state, const S* dy, S* dc_state, S* da,
                            S* dgh, S* dyc) {
  const int64_t W = V<S>::size(), G = 4 * H;
  auto row = [&](int64_t b) {
    const S* gb = gates + b * G;
    const S* hb = gh + b * G;
    const S* cb = cells + b * H;
    const S* sb = stats + b * 4;
    S* dab = da + b * G;
    S* dgb = dgh + b * G;
    S* dyb = dyc + b * H;
    const C<S> mc(sb[2]), rc(sb[3]);
    // h' = o tanh(y_c): dao and dyc, then LN(c')'s backward needs the row means of dchat and
    // dchat * chat.
    for (int64_t j = 0; j < H; j += W) {
      const int64_t k = std::min(W, H - j);
      const int64_t e = b * H + j;
      C<S> dao, dy_c, dchat;
      cells::lnlstm_backward_hidden<C<S>>(ld(gb + 3 * H + j, k), ld(cb + j, k), mc, rc,
                                          ld(g_c + j, k), b_c ? ld(b_c + j, k) : C<S>(S(0)),
                                          ld(dh_state + e, k) + ld(dy + e, k), dao, dy_c, dchat);
      st(dao, dab + 3 * H + j, k), st(dy_c, dyb + j, k);
    }
    double m1 = 0, m2 = 0;
    for (int64_t u = 0; u < H; ++u) {
      const double dchat = double(dyb[u]) * double(g_c[u]);
      m1 += dchat;
      m2 += dchat * (double(cb[u]) - double(sb[2])) * double(sb[3]);
    }
    const C<S> cm1(S(m1 / double(H))), cm2(S(m2 / double(H)));
    for (int64_t j = 0; j < H; j += W) {
      const int64_t k = std::min(W, H - j);
      const int64_t e = b * H + j;
      const C<S> chat = (ld(cb + j, k) - mc) * rc;
      const C<S> dc = cells::layer_norm_backward<C<S>>(ld(dyb + j, k) * ld(g_c + j, k), chat,
                                                       cm1, cm2, rc) +
                      ld(dc_state + e, k);
      C<S> dai, daf, dag, dcp;
      cells::lnlstm_backward_cell<C<S>>(ld(gb + j, k), ld(gb + H + j, k), ld(gb + 2 * H + j, k),
                                        ld(c_prev + e, k), dc, dai, daf, dag, dcp);
      st(dai, dab + j, k), st(daf, dab + H + j, k), st(dag, dab + 2 * H + j, k);
      st(dcp, dc_state + e, k);
    }
    // LN(gh)'s backward: dxhat = da * g_hh.
    layer_norm_row_backward(G, dab, g_hh, hb, sb[0], sb[1], dgb);
  };
  for_rows(n, 16 * H, row);
}

template <class S>
static void lngru_forward(int64_t n, int64_t H, const S* xp, const S* gh, const S* g_hh,
                          const S* b_hh, S* h_state, S* gates, S* stats, S* y) {
  const int64_t W = V<S>::size(), G = 3 * H;
  auto row = [&](int64_t b) {
    const S* xb = xp + b * G;
    const S* hb = gh + b * G;
    S* gb = gates + b * G;
    S* sb = stats + b * 2;
    row_stats(hb, G, sb[0], sb[1]);
    const C<S> mh(sb[0]), rh(sb[1]);
    for (int64_t j = 0; j < H; j += W) {
      const int64_t k = std::min(W, H - j), e = b * H + j;
      C<S> hh[3], r, z, nn, h;
      for (int q = 0; q < 3; ++q)
        hh[q] = cells::layer_norm_affine<C<S>>(b_hh ? ld(b_hh + q * H + j, k) : C<S>(S(0)),
                                               ld(g_hh + q * H + j, k), ld(hb + q * H + j, k),
                                               mh, rh);
      cells::gru_forward<C<S>>(ld(xb + j, k), ld(xb + H + j, k), ld(xb + 2 * H + j, k), hh[0],
                               hh[1], hh[2], ld(h_state + e, k), r, z, nn, h);
      st(r, gb + j, k), st(z, gb + H + j, k), st(nn, gb + 2 * H + j, k);
      st(h, h_state + e, k), st(h, y + e, k);
    }
  };
  for_rows(n, 6 * H, row);
}

template <class S>
static void lngru_backward(int64_t n, int64_t H, const S* gates, const S* gh, const S* stats,
                           const S* g_hh, const S* b_hh, const S* h_prev, S* dh_state,
                           const S* dy, S* da, S* dhh, S* dgh) {
  const int64_t W = V<S>::size(), G = 3 * H;
  auto row = [&](int64_t b) {
    const S* gb = gates + b * G;
    const S* hb = gh + b * G;
    const S* sb = stats + b * 2;
    S* dab = da + b * G;
    S* dhb = dhh + b * G;
    const C<S> mh(sb[0]), rh(sb[1]);
    for (int64_t j = 0; j < H; j += W) {
      const int64_t k = std::min(W, H - j), e = b * H + j;
      const C<S> hn = cells::layer_norm_affine<C<S>>(
          b_hh ? ld(b_hh + 2 * H + j, k) : C<S>(S(0)), ld(g_hh + 2 * H + j, k),
          ld(hb + 2 * H + j, k), mh, rh);
      C<S> dxr, dxz, dxn, dhn, direct;
      cells::gru_backward<C<S>>(ld(gb + j, k), ld(gb + H + j, k), ld(gb + 2 * H + j, k), hn,
                                ld(h_prev + e, k), ld(dh_state + e, k) + ld(dy + e, k), dxr, dxz,
                                dxn, dhn, direct);
      st(dxr, dab + j, k), st(dxz, dab + H + j, k), st(dxn, dab + 2 * H + j, k);
      st(dxr, dhb + j, k), st(dxz, dhb + H + j, k), st(dhn, dhb + 2 * H + j, k);
      st(direct, dh_state + e, k);
    }
    layer_norm_row_backward(G, dhb, g_hh, hb, sb[0], sb[1], dgh + b * G);
  };
  for_rows(n, 9 * H, row);
}

template <class S>
static void rnn_forward(int64_t n, int64_t H, int act, S* y, S* h_state) {
  const auto a = static_cast<cells::Act>(act);
  for_units(n, H, V<S>::size(), [&](int64_t b, int64_t j, int64_t k) {
    const int64_t e = b * H + j;
    C<S> h = cells::rnn_forward<C<S>>(a, ld(y + e, k));
    st(h, y + e, k), st(h, h_state + e, k);
  });
}

template <class S>
static void rnn_backward(int64_t n, int64_t H, int act, const S* y, const S* dh_state,
                         const S* dy, S* da) {
  const auto a = static_cast<cells::Act>(act);
  for_units(n, H, V<S>::size(), [&](int64_t b, int64_t j, int64_t k) {
    const int64_t e = b * H + j;
    st(cells::rnn_backward<C<S>>(a, ld(y + e, k), ld(dh_state + e, k) + ld(dy + e, k)), da + e,
       k);
  });
}

template <class S>
const Pointwise<S>& table() {
  static const Pointwise<S> t{lstm_forward<S>,      lstm_backward<S>,     gru_forward<S>,
                              gru_backward<S>,      grurb_forward_rz<S>,  grurb_forward_n<S>,
                              grurb_backward_zn<S>, grurb_backward_r<S>,  lnlstm_forward<S>,
                              lnlstm_backward<S>,   lngru_forward<S>,     lngru_backward<S>,
                              rnn_forward<S>,       rnn_backward<S>};
  return t;
}

}  // namespace FRNN_PW_NS

template <class S>
const Pointwise<S>& FRNN_PW_TABLE() {
  return FRNN_PW_NS::table<S>();
}
template const Pointwise<float>& FRNN_PW_TABLE<float>();
template const Pointwise<double>& FRNN_PW_TABLE<double>();

}  // namespace cpu
}  // namespace fusedrnn
