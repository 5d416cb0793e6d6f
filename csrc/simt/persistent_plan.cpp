// The sizing rule of the persistent kernels (csrc/cuda/persistent.h): whether W_hh fits on chip
// for (kind, B, H, dtype) on a device, with how many blocks, units per block and threads.
//
// Rule and reasoning:
//   - one block per SM, at most `sms` blocks: a cooperative launch needs every block co-resident,
//     and a block holding ~all of an SM's shared memory is one per SM anyway. More blocks = more
//     SMs streaming their W slice from shared memory in parallel, so use them all: the units per
//     block U = ceil(H / sms) is the smallest slice, and blocks = ceil(H / U) <= sms.
//   - shared memory per block (the kernels' carve, persistent_kernels.cuh) = W slice
//     G*U*(H+1)*sizeof(S) (storage dtype: fp16/bf16 hold twice the H of fp32) + a staging tile
//     B*(KC+V) of the exchanged vector (h_{t-1} in S, K = H, forward; da_{t+1} in A, K = G*H,
//     backward; V = 16 bytes of it, the row padding) + state B*U*sizeof(A) + the prefetched
//     inputs of two steps, 2*B*NP*U (forward NP = G segments of xproj in A, backward G+3 in S).
//     KC is as large as the rest of the opt-in limit allows (<= K; a multiple of 32 when < K);
//     W fits if KC >= min(K, 32). Forward and backward have the same W slice (rows vs
//     columns), so the same U and blocks.
//   - threads = clamp(32 * next_pow2(items), 64, 256), items = U * ceil(B / RB) (RB = 4 batch rows
//     per register-blocked item from B >= 4 on, else 1): one warp per item reducing over K while
//     items are few, 256 threads (8 warps, 1 block/SM with up to 255 registers) once they fill it.
//   - a layer wavefront (wave: the layers of a stack in one launch, a group of blocks each,
//     inference): the forward's W region twice (W_hh and W_ih of the same slice), no cluster,
//     and only the forward need fit.
//   - the cluster forward (sm_90, PersistentPlan::cluster): the same rule on max_cluster blocks
//     (U = ceil(H / 16)), the whole h_{t-1} in two tiles (no chunks); preferred where the model
//     predicts it faster (persistent.h: tensor cores, kClusterWBytes).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <string>

#include "cuda/persistent.h"

namespace fusedrnn {

namespace {
std::atomic<int> g_max_blocks{0}, g_max_kc{0}, g_threads{0};
std::atomic<int> g_cluster{0}, g_flags{0};
size_t a16(size_t n) { return (n + 15) / 16 * 16; }
}  // namespace

void persistent_set_tuning(const PersistentTuning& t) {
  TORCH_CHECK(t.max_blocks >= 0 && t.max_kc >= 0 && t.threads >= 0,
              "persistent tuning values must be >= 0");
  TORCH_CHECK(t.threads == 0 || (t.threads % 32 == 0 && t.threads <= 256),
              "persistent tuning: threads must be a multiple of 32 and <= 256, got ", t.threads);
  TORCH_CHECK(t.cluster >= -1 && t.cluster <= 1,
              "persistent tuning: cluster must be -1 (off), 0 (the rule) or 1 (whenever it fits)");
  TORCH_CHECK(t.flags == -1 || t.flags == 0,
              "persistent tuning: flags must be -1 (the grid barrier) or 0 (the rule)");
  // all checked before any is set: a refused tuning changes nothing
  g_max_blocks = t.max_blocks;
  g_max_kc = t.max_kc;
  g_threads = t.threads;
  g_cluster = t.cluster;
  g_flags = t.flags;
}

PersistentTuning persistent_get_tuning() {
  return {g_max_blocks, g_max_kc, g_threads, g_cluster, g_flags};
}

namespace {
// A two-valued run-time switch: false for `dflt` (or unset/empty), true for `alt`, else raises.
bool env_switch(const char* name, const char* dflt, const char* alt) {
  const char* v = std::getenv(name);
  const std::string s = v ? v : "";
  TORCH_CHECK(s.empty() || s == dflt || s == alt, name, " must be '", dflt, "' (the default) or '",
              alt, "', got '", s, "'");
  return s == alt;
}
}  // namespace

// A throw leaves a static uninitialised: a bad value raises at every launch, not once.
bool persistent_exchange_barrier() {
  static const bool on = env_switch("FUSEDRNN_PERSISTENT_EXCHANGE", "flags", "barrier");
  return on;
}

bool persistent_cluster_off() {
  static const bool on = env_switch("FUSEDRNN_PERSISTENT_CLUSTER", "auto", "off");
  return on;
}

namespace {
std::atomic<bool> g_trace{false};
std::mutex g_trace_mu;
at::Tensor& last_trace() {
  static at::Tensor t;
  return t;
}
}  // namespace

void persistent_set_trace(bool on) {
  g_trace = on;
}
bool persistent_trace_on() {
  return g_trace;
}
void persistent_keep_trace(const at::Tensor& t) {
  std::lock_guard<std::mutex> lock(g_trace_mu);
  last_trace() = t;
}
at::Tensor persistent_last_trace() {
  std::lock_guard<std::mutex> lock(g_trace_mu);
  return last_trace();
}

PersistentPlan persistent_plan(RnnKind kind, int64_t B, int64_t H, at::ScalarType dtype,
                               const PersistentArch& arch, bool wave) {
  PersistentPlan p;
  const int64_t G = kind == RnnKind::Lstm ? 4 : 3;
  const char* name = kind == RnnKind::Lstm ? "LSTM" : "GRU";
  if (dtype != at::kFloat && dtype != at::kDouble && dtype != at::kHalf &&
      dtype != at::kBFloat16) {
    p.why = std::string("persistent: unsupported dtype ") + c10::toString(dtype);
    return p;
  }
  if (B < 1 || H < 1) {
    p.why = "persistent: B and H must be >= 1";
    return p;
  }
  const size_t sS = c10::elementSize(dtype), sA = dtype == at::kDouble ? 8 : 4;
  int64_t sms = arch.sms;
  if (g_max_blocks > 0) sms = std::min<int64_t>(sms, g_max_blocks);
  const int64_t U = (H + sms - 1) / sms;
  p.units = int(U);
  p.blocks = int((H + U - 1) / U);
  auto threads_for = [&](int64_t units) {
    const int64_t items = (B >= 4 ? (B + 3) / 4 : B) * units;  // the kernels' register blocking
    int64_t pw = 1;
    while (pw < items && pw < 8) pw *= 2;
    const int64_t tmax = std::min<int64_t>(256, arch.max_threads);
    const int t = int(std::max<int64_t>(std::min<int64_t>(64, tmax), std::min(tmax, 32 * pw)));
    return g_threads > 0 ? int(g_threads) : t;
  };
  p.threads = threads_for(U);

  // Regions as the kernels carve them (each 16-byte aligned): W [U][NG][K+1], tile [B][KC+V],
  // state [B][U], prefetch [2][B][NP][U].
  const size_t wfwd = a16(size_t(G * U * (H + 1)) * sS), wbwd = a16(size_t(U * (G * H + 1)) * sS);
  const size_t sbytes = a16(size_t(B * U) * sA);
  const size_t pfwd = a16(size_t(2 * B * G * U) * sA),
               pbwd = a16(size_t(2 * B * (G + 3) * U) * sS);
  const size_t limit = arch.smem_optin;
  // The chunk of the exchanged vector per pass: the largest kc <= K whose staging tile
  // [rows][kc + 16 bytes] of es-byte elements fits beside `fixed` bytes; a multiple of 32 when
  // < K, capped by the tuning; a multiple of `align` (ldmatrix rows); at least min(K, 32)
  // (tuned: at least align). On success kc_out and smem_out are set.
  auto tile = [&](int64_t rows, int64_t kc, size_t es) {
    return a16(size_t(rows * (kc + int64_t(16 / es))) * es);
  };
  auto fit = [&](int64_t K, size_t fixed, int64_t rows, size_t es, int64_t align, int& kc_out,
                 size_t& smem_out) {
    if (fixed >= limit) return false;
    int64_t kc = std::min<int64_t>(K, int64_t((limit - fixed) / (size_t(rows) * es)) -
                                          int64_t(16 / es));
    if (kc < K) kc = kc / 32 * 32;
    if (g_max_kc > 0) kc = std::min<int64_t>(kc, g_max_kc);
    while (kc > 0 && fixed + tile(rows, kc, es) > limit) --kc;
    const bool enough = kc >= std::min<int64_t>(K, 32) || (g_max_kc > 0 && kc >= align);
    if (kc < 1 || !enough || kc % align) return false;
    kc_out = int(kc);
    smem_out = fixed + tile(rows, kc, es);
    return true;
  };
  // Tensor cores (the half types; fp32 as TF32 when the launcher allows it), when the layout
  // fits; else the FFMA layout, which also fits in the space sized for tensor cores, so fp32
  // without TF32 runs FFMA in the same plan. fp64 is FFMA only.
  //   forward  W [R16][KS*ceil(H/KS) + V]: gate rows 4u+q padded to whole 16-row tiles, KS the
  //            mma's k (16 halves, 8 floats), V = 16 bytes of elements; the tile's rows padded
  //            to 8; H and kc whole 16-byte rows (ldmatrix)
  //   backward W [U8][G*H+1] (rows past U zero); the fp32 tile's rows padded to 16; kc whole
  //            16-byte rows of fp32
  //   both     plus the partial sums, 16 bytes a thread
  auto up = [](int64_t n, int64_t m) { return (n + m - 1) / m * m; };
  const int64_t V = int64_t(16 / sS), KS = sS == 2 ? 16 : 8;
  const size_t part = a16(size_t(p.threads) * 16);
  bool f = false, b = false;
  const size_t nw = wave ? 2 : 1;  // a wavefront's blocks hold W_ih beside W_hh
  if (sS <= 4 && H % V == 0) {
    const size_t wmma = a16(size_t(up(4 * U, 16) * (up(H, KS) + V)) * sS);
    f = p.mma_fwd =
        fit(H, nw * wmma + sbytes + pfwd + part, up(B, 8), sS, V, p.kc_fwd, p.smem_fwd);
  }
  if (!f) f = fit(H, nw * wfwd + sbytes + pfwd, B, sS, 1, p.kc_fwd, p.smem_fwd);
  if (sS <= 4) {
    const size_t wmma = a16(size_t(up(U, 8) * (G * H + 1)) * sS);
    b = p.mma_bwd = fit(G * H, wmma + sbytes + pbwd + part, up(B, 16), sA, 4, p.kc_bwd,
                        p.smem_bwd);
  }
  if (!b) b = fit(G * H, wbwd + sbytes + pbwd, B, sA, 1, p.kc_bwd, p.smem_bwd);
  p.fits = f && (b || wave);  // a wavefront is inference: its backward is never launched
  // The forward on one cluster: W_hh's slices on at most max_cluster blocks, both tiles of the
  // whole h_{t-1} ([rows][H+V], step parity) and two mbarriers (16 bytes) beside them;
  // tensor-core layout first, as above.
  int64_t cs = arch.max_cluster;
  if (g_max_blocks > 0) cs = std::min<int64_t>(cs, g_max_blocks);
  const bool chunked = g_max_kc > 0 && g_max_kc < H;  // the tuning asks for chunked staging
  if (p.fits && cs > 0 && g_cluster >= 0 && !chunked && !wave) {
    PersistentCluster& c = p.cluster;
    const int64_t Uc = (H + cs - 1) / cs;
    const int tc = threads_for(Uc);
    const size_t sc = a16(size_t(B * Uc) * sA), pc = a16(size_t(2 * B * G * Uc) * sA);
    auto two_tiles = [&](int64_t rows) { return 2 * tile(rows, H, sS); };
    size_t need = 0;
    if (sS <= 4 && H % V == 0) {
      const size_t wmma = a16(size_t(up(4 * Uc, 16) * (up(H, KS) + V)) * sS);
      need = wmma + sc + pc + 16 + a16(size_t(tc) * 16) + two_tiles(up(B, 8));
      c.mma = need <= limit;
    }
    if (!c.mma) need = a16(size_t(G * Uc * (H + 1)) * sS) + sc + pc + 16 + two_tiles(B);
    if (need <= limit) {
      c.blocks = int((H + Uc - 1) / Uc);
      c.units = int(Uc);
      c.threads = tc;
      c.smem = need;
      const size_t wbytes = size_t(up(4 * Uc, 16) * H) * sS * size_t(up(B, 8) / 8);
      c.forced = g_cluster > 0;
      c.preferred = c.forced || (c.mma && wbytes <= kClusterWBytes);
    } else {
      c = PersistentCluster();
    }
  }
  if (!p.fits) {
    std::ostringstream m;
    m << "persistent: W_hh of H=" << H << " does not fit on chip for " << name << " "
      << c10::toString(dtype) << " at B=" << B << ": each of " << p.blocks
      << " blocks (at most one per SM, " << arch.sms << " SMs) keeps " << U << " hidden units x "
      << G << " gates x " << H << " = " << std::max(wfwd, wbwd) << " bytes of W_hh, plus "
      << sbytes + std::max(pfwd, pbwd) << " bytes of state and prefetched inputs and at least "
      << tile(B, std::min<int64_t>(H, 32), sS) << " bytes of staging, above the " << limit
      << " bytes of shared memory per block; use the stepwise algorithm";
    p.why = m.str();
  }
  return p;
}

}  // namespace fusedrnn
