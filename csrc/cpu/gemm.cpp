// The fp32 GEMM driver (contract: gemm.h): instruction-set choice, packing of B and A, cache
// blocking and threading around the microkernels of gemm_kernel_*.cpp.
//
// Blocking: K is cut into slices of at most kKSlice (a transposed A) or kKSliceDirect (A in
// place); per slice, A is taken in row blocks of equal height (MC*slice floats sized for L2;
// packed only when transposed);
// threads split the column panels; within a panel the K dimension runs in chunks of kc (per
// instruction set, gemm_kernel_*.cpp) that every row tile of the block reuses from cache.
#include "cpu/gemm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#if __has_include(<unistd.h>)
#include <unistd.h>  // sysconf: the L2 size
#endif

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "cpu/common.h"
#include "cpu/gemm_kernel.h"
#include "cpu/slot_barrier.h"

namespace fusedrnn {
namespace cpu {

namespace {

std::atomic<int> forced_isa{-1};

bool supported(GemmIsa isa) {
#if defined(__x86_64__) && defined(__GNUC__)
  switch (isa) {
    case GemmIsa::Avx512:
      return __builtin_cpu_supports("avx512f");
    case GemmIsa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default:
      return true;
  }
#else
  return isa == GemmIsa::Blas;
#endif
}

const GemmArch& arch_of(GemmIsa isa) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (isa == GemmIsa::Avx512) return gemm_arch_avx512();
  if (isa == GemmIsa::Avx2) return gemm_arch_avx2();
#endif
  TORCH_CHECK(false, "fusedrnn: no GEMM microkernel for this instruction set");
}

// Floats of A per row block: sized so the block stays in L2 next to B's stream; at least
// kMinRows rows, so that the per-step products (M = batch <= 64) read B from memory only once.
// kABudget (512 KB, half of a 1 MB L2) where the system does not say how large L2 is.
constexpr int64_t kABudget = 128 * 1024;
constexpr int64_t kMinRows = 64;
// Half of a core's L2 where sysconf knows it (within 64K-1M floats). A 2 MB L2 (the 2-core Xeon)
// then takes 1 MB blocks: each block streams all of B, and with B of 64 MB (the hoisted product
// at H = 2048, M = 6400) 64-row blocks read 6.4 GB of it per call: AVX-512 196-234 -> 219-244
// GFLOP/s there, dx (K = 2048, 8192) +5-10%; on AVX2 within the noise or better.
int64_t a_block_floats() {
#if defined(_SC_LEVEL2_CACHE_SIZE)
  const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (l2 > 0)
    return std::clamp<int64_t>(int64_t(l2) / 2 / int64_t(sizeof(float)), 64 << 10, 1 << 20);
#endif
  return kABudget;
}
// Longest K slice of a packed (transposed) A per pass over its row blocks (see gemm_packed). 1024:
// MC = 128 rows (with kABudget), packed block 512 KB in L2, each panel's slice 128 KB; half the
// passes over C of 512 (C = dW is 4-64 MB at H = 512-2048): dW products at T*B = 6400 measured
// 5-10% faster on two threads (H = 512: ~330 -> ~350 GFLOP/s, H = 2048: ~365 -> ~405).
constexpr int64_t kKSlice = 1024;
constexpr int64_t kKSliceDirect = 2048;
// Packing a transposed A (da^T in dW = da^T x) reads a few lines of each of ks rows lda = 4H
// floats apart: pages apart, where the hardware prefetchers stop, so each row was a wait on
// memory. Prefetched this many rows ahead, dW at T*B = 6400 on AVX2 (2-core Xeon, two threads)
// went 121 -> 137-167 GFLOP/s at H = 512 and 141-154 -> 150-168 at H = 1024.
constexpr int64_t kPackAhead = 16;
// A product runs on the calling thread below both this many flops (waking the pool costs more;
// measured: 4 MFLOP left the per-step products of T=20 B=8 H=128 on one thread, and LSTM there
// at ~0.8x of torch.nn on two threads, ~1.0x with 1 MFLOP) and this many bytes of packed B (thin
// products, the per-step ones at B = 1, stream B from L3, and two cores read it faster than one:
// LSTM T=100 B=1 H=512 went from 0.7x to 1.1x of torch.nn on two threads with 2 MiB; 512 KiB
// took single steps at B = 1 on a 2-core Xeon from RNN H=512 102 -> 42 µs, GRU H=256 70 -> 38,
// LSTM H=256 118 -> 55).
constexpr double kParallelFlops = 1e6;
constexpr double kParallelBytes = 512 << 10;
// Outputs from this size on are written with non-temporal stores (their last K chunk) when the
// caller asks (gemm.h): such a C (the hoisted input projection, T*B x 4H) leaves the cache before
// anyone reads it, and ordinary stores first read every line from memory. Measured on the hoisted
// product of LSTM T=100 B=64 H=512 (52 MB): 190-200 -> ~240 GFLOP/s on one core, the whole
// forward ~8% faster.
constexpr double kStreamBytes = 16 << 20;
// Products of fewer rows than this on an unpacked B (PackedB's packed = false: matmul.h leaves B
// unpacked below kPackMinRows rows) run on the thin kernels (gemm_thin.h) instead of the BLAS of
// torch.
constexpr int64_t kThinBelowRows = 32;

void store_fence() {
#if defined(__x86_64__)
  _mm_sfence();  // non-temporal stores are weakly ordered: publish them before the pool's barrier
#endif
}

// C = beta * C + bias (beta == 0 does not read C): the K == 0 case, and the epilogue of the
// BLAS path, applied before it with beta = 1.
void scale_bias(int64_t M, int64_t N, float beta, const float* bias, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j)
      C[i * ldc + j] = (beta == 0.f ? 0.f : beta * C[i * ldc + j]) + (bias ? bias[j] : 0.f);
}

// The best supported set, or FUSEDRNN_CPU_GEMM=blas|avx2|avx512 when this CPU can run it (for
// A/B measurements against the BLAS of torch).
GemmIsa default_isa() {
  const char* env = std::getenv("FUSEDRNN_CPU_GEMM");
  if (env) {
    const std::string e(env);
    const GemmIsa want = e == "blas"   ? GemmIsa::Blas
                         : e == "avx2" ? GemmIsa::Avx2
                                       : GemmIsa::Avx512;
    if ((e == "blas" || e == "avx2" || e == "avx512") && supported(want)) return want;
  }
  return supported(GemmIsa::Avx512) ? GemmIsa::Avx512
         : supported(GemmIsa::Avx2) ? GemmIsa::Avx2
                                    : GemmIsa::Blas;
}

}  // namespace

bool run_on_caller(double flops, double packed_bytes) {
  return (flops < kParallelFlops && packed_bytes < kParallelBytes) ||
         at::get_num_threads() == 1 || at::in_parallel_region();
}

GemmIsa gemm_isa() {
  const int f = forced_isa.load(std::memory_order_relaxed);
  if (f >= 0) return GemmIsa(f);
  static const GemmIsa chosen = default_isa();
  return chosen;
}

bool force_gemm_isa(int isa) {
  if (isa >= 0 && (isa > int(GemmIsa::Avx512) || !supported(GemmIsa(isa)))) return false;
  forced_isa.store(isa, std::memory_order_relaxed);
  return true;
}

PackedB::PackedB(bool tb_, int64_t K_, int64_t N_, const float* B, int64_t ldb_, bool packed,
                 bool lazy)
    : isa(packed ? gemm_isa() : GemmIsa::Blas), K(K_), N(N_), tb(tb_), raw(B), ldb(ldb_) {
  if (isa == GemmIsa::Blas || K == 0 || N == 0) return;
  nr = arch_of(isa).nr;
  const int64_t panels = (N + nr - 1) / nr;
  data.reset(static_cast<float*>(alloc_big(size_t(panels * K * nr) * sizeof(float))));
  TORCH_CHECK(data, "fusedrnn: out of memory packing a GEMM operand");
  pending_ = true;
  if (!lazy) ensure_packed();
}

void PackedB::pack_panels(int64_t p0, int64_t p1) const {
  const GemmArch& ar = arch_of(isa);
  float* d0 = data.get();
  const float* B = raw;
  for (int64_t p = p0; p < p1; ++p) {
    float* d = d0 + p * K * nr;
    const int64_t n0 = p * nr, w = std::min(nr, N - n0);
    if (!tb) {
      for (int64_t k = 0; k < K; ++k) {
        std::memcpy(d + k * nr, B + k * ldb + n0, w * sizeof(float));
        std::fill(d + k * nr + w, d + (k + 1) * nr, 0.f);
      }
    } else if (ar.pack_t) {
      ar.pack_t(B, ldb, K, n0, w, d);
    } else {
      // Column n0+c of op(B) is row n0+c of B; 16 k at a time so that the 16 x nr block
      // being written stays in L1 while whole cache lines of B are read.
      for (int64_t k0 = 0; k0 < K; k0 += 16) {
        const int64_t kn = std::min<int64_t>(16, K - k0);
        for (int64_t c = 0; c < w; ++c) {
          const float* src = B + (n0 + c) * ldb + k0;
          for (int64_t k = 0; k < kn; ++k) d[(k0 + k) * nr + c] = src[k];
        }
        for (int64_t k = k0; k < k0 + kn; ++k) std::fill(d + k * nr + w, d + (k + 1) * nr, 0.f);
      }
    }
  }
}

void PackedB::ensure_packed() const {
  if (!pending_) return;
  const int64_t panels = (N + nr - 1) / nr;
  at::parallel_for(0, panels, std::max<int64_t>(1, 262144 / std::max<int64_t>(1, K * nr)),
                   [&](int64_t p0, int64_t p1) { pack_panels(p0, p1); });
  pending_ = false;
}

void gemm_packed(int64_t M, float alpha, bool ta, const float* A, int64_t lda, const PackedB& B,
                 float beta, float* C, int64_t ldc, const float* bias, bool stream_ok) {
  const int64_t N = B.N, K = B.K;
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_bias(M, N, beta, bias, C, ldc);
  if (B.isa == GemmIsa::Blas) {
    const GemmIsa cpu = gemm_isa();
    if (!ta && M < kThinBelowRows && cpu != GemmIsa::Blas) {
      // Few rows on B as stored (gemm_thin.h); columns in blocks of 64 across threads when B
      // is large enough that two cores stream it faster than one.
      const GemmThin thin = arch_of(cpu).thin;
      auto run = [&](int64_t b0, int64_t b1) {
        thin(M, B.tb, b0 * 64, std::min(N, b1 * 64), K, A, lda, B.raw, B.ldb, alpha, beta, bias,
             C, ldc);
      };
      const int64_t blocks = (N + 63) / 64;
      const double flops = 2.0 * double(M) * double(N) * double(K);
      if (run_on_caller(flops, double(N) * double(K) * sizeof(float)))
        run(0, blocks);
      else
        at::parallel_for(0, blocks, 1, run);
      return;
    }
    if (bias) scale_bias(M, N, beta, bias, C, ldc), beta = 1.f;
    return gemm_rm<float>(ta, B.tb, M, N, K, alpha, A, lda, B.raw, B.ldb, beta, C, ldc);
  }
  const GemmArch& ar = arch_of(B.isa);
  const int64_t MR = ar.mr, NR = ar.nr, KC = ar.kc;
  // A transposed A (the weight gradients da^T x, K = T*B) is packed and taken in K slices of at
  // most kKSlice (BLIS order: K slice outside the row blocks), so that the packed row block is
  // MC x slice (L2) instead of MC x K (> L2) and each panel's slice of B is streamed once per
  // MC >= 128 rows instead of once per 64 (dW at T=100 B=64 H=512: ~150 -> ~180 GFLOP/s).
  // A read in place keeps K up to kKSliceDirect whole: slicing it measured ~7% slower on
  // dx = da W at K = 4H = 2048, from the extra passes over C; beyond, the row block (64 rows
  // x K) outgrows L2 and was read from L3 for every panel (dx at H = 2048, K = 8192: 155-159 ->
  // 174-178 GFLOP/s on AVX2 in slices of 2048). Later slices accumulate onto C with beta = 1.
  const int64_t slice = ta ? kKSlice : kKSliceDirect;
  const int64_t KS = K <= slice ? K : slice;
  // Row blocks of equal height, a multiple of MR, at least kMinRows: rounding kMinRows down to
  // MR's multiple (60 rows on AVX2) cut a step's 64 rows at H = 2048 into 60 + 4 and streamed
  // its 64 MB of W_hh twice (the step product ran at 83 GFLOP/s on two threads, MKL at 151); an
  // unbalanced last block does the same for a few rows (M = 800 at K = 1024: 6 x 126 + 44).
  static const int64_t a_budget = a_block_floats();
  const int64_t MC0 = (std::max<int64_t>(kMinRows, a_budget / KS) + MR - 1) / MR * MR;
  const int64_t row_blocks = (M + MC0 - 1) / MC0;
  const int64_t MC = ((M + row_blocks - 1) / row_blocks + MR - 1) / MR * MR;
  const int64_t panels = (N + NR - 1) / NR;
  const bool stream =
      stream_ok && KS == K && double(M) * double(N) * sizeof(float) >= kStreamBytes;
  const bool reverse = B.calls.fetch_add(1, std::memory_order_relaxed) & 1;
  // A lazy B (one-shot products) is packed here: where the slots split the panels, each packs
  // its own inside the region (in parallel, into the cache of the core that reads them; the
  // hoisted input projection of LSTM T=20 B=8 H=128 packed W_ih on the calling thread while the
  // other waited); every other path needs all of B first.
  if (ta) B.ensure_packed();
  thread_local std::vector<float> abuf;  // grows to the largest block, then no more allocation
  for (int64_t ps = 0; ps < K; ps += KS) {
    const int64_t ks = std::min(KS, K - ps);
    const float beta_s = ps == 0 ? beta : 1.f;
    const float* bias_s = ps == 0 ? bias : nullptr;
    for (int64_t ic = 0; ic < M; ic += MC) {
      const int64_t mc = std::min(MC, M - ic), blocks = (mc + MR - 1) / MR;
      // op(A) = A is read in place (the kernel broadcasts from its rows); A^T is packed: row
      // block r holds, for every k of the slice, the MR values A[k, ic + r*MR + i] together.
      const float* ap = A + ic * lda + ps;
      // A read in place is cut into tiles of equal height (at most MR) rather than MR rows and a
      // remainder: M = 8 on AVX2 (MR = 6) runs two tiles of 4 instead of 6 + 2, whose 2-row
      // tile keeps only 4 FMA chains in flight for as many loads of B as a full one (the
      // per-step products of a batch of 8). Packed A keeps MR-row blocks (its layout).
      const int64_t TH = ta ? MR : (mc + blocks - 1) / blocks;
      const int64_t ald = ta ? 0 : lda, rstride = ta ? MR * ks : TH * lda, kstride = ta ? MR : 1;
      float* dst0 = nullptr;
      if (ta) {
        if (abuf.size() < size_t(blocks * MR * ks)) abuf.resize(blocks * MR * ks);
        dst0 = abuf.data();
        ap = dst0;
      }
      // Rows k0 .. k1-1 of the slice into the packed block. k outer: each row of A (mc
      // contiguous floats) is read once, sequentially, and its MR-float pieces go whole to the
      // row blocks (8% of the dW product's time with r outer, which read one 32-byte piece per
      // row of A and came back to the line later).
      auto pack = [&](int64_t k0, int64_t k1, int64_t r0, int64_t r1) {
        // The rows kPackAhead further on into L2 first (see there).
        const int64_t c0 = ic + r0 * MR, c1 = std::min(ic + mc, ic + r1 * MR);
        for (int64_t k = k0; k < k1; ++k) {
          const float* src = A + (ps + k) * lda + ic;
          if (k + kPackAhead < k1) {
            const char* ahead = reinterpret_cast<const char*>(A + (ps + k + kPackAhead) * lda);
            for (int64_t b = (c0 * int64_t(sizeof(float))) & ~int64_t(63);
                 b < c1 * int64_t(sizeof(float)); b += 64)
              prefetch_l2(ahead + b);
          }
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t i0 = r * MR, rows = std::min(MR, mc - i0);
            float* dst = dst0 + r * MR * ks + k * MR;
            if (rows == 8 && MR == 8) {  // constant size: one 32-byte move, no call
              std::memcpy(dst, src + i0, 8 * sizeof(float));
            } else if (rows == 6 && MR == 6) {  // AVX2's row tile: the same, 24 bytes
              std::memcpy(dst, src + i0, 6 * sizeof(float));
            } else {
              for (int64_t i = 0; i < rows; ++i) dst[i] = src[i0 + i];
            }
          }
        }
      };
      const float* bp0 = B.data.get();
      const double bytes = double(panels) * double(NR) * double(ks) * sizeof(float);
      const bool prefetch = bytes >= kPrefetchBytes;
      auto run = [&](int64_t p0, int64_t p1, int64_t r0, int64_t r1) {
        for (int64_t q = p0; q < p1; ++q) {
          const int64_t p = reverse ? p0 + p1 - 1 - q : q;
          const int64_t n0 = p * NR, nv = std::min(NR, N - n0);
          const float* bp = bp0 + p * K * NR + ps * NR;
          // the first chunk of the panel this slot takes next (null after its last)
          const float* bnext =
              q + 1 < p1 ? bp0 + (reverse ? p - 1 : p + 1) * K * NR + ps * NR : nullptr;
          for (int64_t pc = 0; pc < ks; pc += KC) {
            const int64_t kc = std::min(KC, ks - pc);
            // later chunks accumulate onto the first, which applies beta and the bias
            const float be = pc == 0 ? beta_s : 1.f;
            const float* bb = pc == 0 && bias_s ? bias_s + n0 : nullptr;
            const bool nt = stream && pc + kc == ks;
            // The next chunk of B into L2 while this one is multiplied, a share per row tile
            // (kPrefetchBytes).
            const float* nx = pc + kc < ks ? bp + (pc + kc) * NR : bnext;
            const int64_t nk = pc + kc < ks ? std::min(KC, ks - pc - kc) : std::min(KC, ks);
            const bool ahead = nx && prefetch && r1 - r0 >= kPrefetchTiles;
            const int64_t lines = ahead ? nk * NR * int64_t(sizeof(float)) / 64 : 0;
            for (int64_t r = r0; r < r1; ++r) {
              prefetch_share_l2(nx, lines, r - r0, r1 - r0);
              ar.kernel(std::min(TH, mc - r * TH), nv, kc, ap + r * rstride + pc * kstride, ald,
                        bp + pc * NR, alpha, be, bb, C + (ic + r * TH) * ldc + n0, ldc, nt);
            }
          }
        }
        if (stream) store_fence();
      };
      const double flops = 2.0 * double(mc) * double(N) * double(ks);
      if (run_on_caller(flops, bytes)) {
        B.ensure_packed();
        if (ta) pack(0, ks, 0, blocks);
        run(0, panels, 0, blocks);
      } else if (ta) {
        // One region per block; each slot packs its own share of the row blocks and multiplies
        // them by every panel, so a packed row never leaves the core that packed it. (Packing
        // shares of k and splitting the panels instead, every slot read the other's half of
        // the packed block across cores: the dW products of LSTM T=20 B=8 H=128, K = 160, ran
        // at 1.1x their one-thread speed on two threads and 1.7x slower than the same product
        // on A as stored; packed by the caller alone, the dW product at T*B = 6400, H = 512 ran
        // at 1.3x.)
        const int64_t slots = std::min<int64_t>(at::get_num_threads(), blocks);
        run_slots(slots, [&](int64_t w0, int64_t w1) {
          const int64_t r0 = blocks * w0 / slots, r1 = blocks * w1 / slots;
          pack(0, ks, r0, r1);
          run(0, panels, r0, r1);
        });
      } else {
        // A as stored: the slots take an even share of the panels each.
        const int64_t slots = std::min<int64_t>(at::get_num_threads(), panels);
        const bool pack_b = B.pending();
        run_slots(slots, [&](int64_t w0, int64_t w1) {
          if (pack_b) B.pack_panels(panels * w0 / slots, panels * w1 / slots);
          run(panels * w0 / slots, panels * w1 / slots, 0, blocks);
        });
        B.mark_packed();
      }
    }
  }
}

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
           const float* bias, bool stream) {
  if (M == 0 || N == 0) return;
  gemm_packed(M, alpha, ta, A, lda, PackedB(tb, K, N, B, ldb, true, /*lazy=*/true), beta, C,
              ldc, bias, stream);
}

}  // namespace cpu
}  // namespace fusedrnn
