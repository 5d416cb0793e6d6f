// The CPU backend's own fp32 GEMM (fp64 stays on the BLAS of torch, csrc/cpu/common.h: gemm_rm).
//
// Row-major throughout: C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C, leading dimensions
// (row strides) lda, ldb, ldc >= the stored width; op(X) = X^T when the flag is set. C must not
// alias A or B. beta == 0 never reads C (NaN in C does not leak). M or N == 0 is a no-op; K == 0
// scales C by beta.
//
// B is packed once into K-major panels of nr columns (zero-padded) so that a weight matrix used
// by every time step is rearranged once per call, not once per step: build a PackedB before the
// time loop, then gemm_packed() each step. A is packed per call into a thread-local buffer (no
// allocation once warm). The microkernel's instruction set is chosen at run time:
// AVX-512 (32-column panels), AVX2+FMA (16), else the BLAS path (PackedB only keeps the pointer).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "cpu/big_buffer.h"

namespace fusedrnn {
namespace cpu {

enum class GemmIsa : int { Blas = 0, Avx2 = 1, Avx512 = 2 };

// A packed B (all its panels) of this size and more is prefetched into L2 a chunk ahead while
// the chunk before it is multiplied, a share of the chunk's lines per row tile; only the first
// row tile of a chunk then reads it from beyond L2, one line per k, and faster than the hardware
// prefetchers fetch it (they stop at page ends). Measured on AVX2 (2-core Xeon): one thread
// 80 -> 92 GFLOP/s at M = 1536, N = 4096, K = 1024 (B 16 MB; MKL 103), two threads 155 -> 176
// at M = 800 (the LSTM's hoisted product at H = 1024) and 83 -> 95 at M = 64, N = 8192,
// K = 2048 (a step at H = 2048); with B of 2-3.2 MB (the dW products at H = 512-1024) no change
// beyond the noise, hence the bound. Used by the GEMM (gemm.cpp) and the fused LSTM step
// (lstm_step_impl.h).
constexpr double kPrefetchBytes = 4 << 20;
// ... and only for a slot running this many row tiles and more per chunk: below, the prefetch
// is as much work as the product and a burst of it stalled the step (AVX-512, M = 8,
// N = 4096, K = 1024: 129 -> 102 GFLOP/s). On AVX-512 it measured +10% at M = 64, N = 8192,
// K = 2048 (201-221 -> 223-237), +3% at M = 800 and -3% at M = 6400 (the hoisted product at
// T = 100 B = 64 H = 1024: 272-284 -> 267-272): kept for both instruction sets.
constexpr int64_t kPrefetchTiles = 4;

inline void prefetch_l2(const void* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p, 0, 2);  // prefetcht1 on x86
#else
  (void)p;
#endif
}

// Row tile t of `tiles` asks for its share of the `lines` 64-byte lines at next (the chunk of
// packed weights read after this one; lines = 0: nothing).
inline void prefetch_share_l2(const void* next, int64_t lines, int64_t t, int64_t tiles) {
  const char* p = static_cast<const char*>(next);
  for (int64_t l = lines * t / tiles, le = lines * (t + 1) / tiles; l < le; ++l)
    prefetch_l2(p + l * 64);
}

// Whether a product of this many flops, reading this many bytes of packed weights, should run on
// the calling thread (too small to pay for waking the pool, one thread, or already inside a
// parallel region) rather than split across threads. Shared by the GEMM and the fused LSTM step.
bool run_on_caller(double flops, double packed_bytes);

// The instruction set used by the next PackedB/sgemm: the forced one if set and supported by
// this CPU, else the best supported.
GemmIsa gemm_isa();
// Test hook: -1 = automatic, else a GemmIsa value. Returns false (and changes nothing) if the
// CPU cannot run it.
bool force_gemm_isa(int isa);

struct PackedB {
  GemmIsa isa = GemmIsa::Blas;
  int64_t K = 0, N = 0, nr = 0;
  // Blas: the caller's matrix, which must outlive this object.
  bool tb = false;
  const float* raw = nullptr;
  int64_t ldb = 0;
  // Packed: panel p (columns p*nr ..) holds K rows of nr floats, 64-byte aligned.
  BigBuffer<float> data;
  // Calls so far: every other gemm_packed walks each thread's panels in reverse (same results),
  // so that the panels a thread read last, still in its L2, are the first it reads again. A
  // per-step B larger than L2 then streams only part of itself from L3 each step.
  mutable std::atomic<uint32_t> calls{0};

  PackedB() = default;
  // op(B) is [K,N]; B itself is [K,N] (tb false) or [N,K] (tb true) with row stride ldb.
  // packed = false: B read as stored, for a B used by too few rows to repay packing: products of
  // fewer than 32 rows (not transposed A) on the thin kernels (gemm_thin.h) where the CPU has
  // AVX2, else the BLAS path.
  // lazy: allocate now, pack in the first gemm_packed (B must still be valid then), which packs
  // each thread's panels inside its parallel region where the threads split the panels. For
  // one-shot products; a PackedB shared by concurrent gemm_packed calls must not be lazy.
  PackedB(bool tb, int64_t K, int64_t N, const float* B, int64_t ldb, bool packed = true,
          bool lazy = false);
  // Whether panels still wait to be packed; pack_panels(p0, p1) packs panels p0 .. p1-1;
  // ensure_packed() packs all of them (across threads) unless done; mark_packed() records that
  // every panel was packed by pack_panels.
  bool pending() const { return pending_; }
  void pack_panels(int64_t p0, int64_t p1) const;
  void ensure_packed() const;
  void mark_packed() const { pending_ = false; }

 private:
  mutable bool pending_ = false;
};

// C[M,N] = alpha * op(A) B + beta * C (+ bias[j] on every row when bias, [N], is not null)
// with B packed (B.K, B.N).
// stream: a C of 16 MB or more goes to memory with non-temporal stores, which skip reading its
// lines into cache first. For outputs that would leave the cache before they are read anyway and
// whose reader hides the memory latency (the fused LSTM step prefetches its rows); a reader that
// does not (a plain pass over rows) measured slower with it.
void gemm_packed(int64_t M, float alpha, bool ta, const float* A, int64_t lda, const PackedB& B,
                 float beta, float* C, int64_t ldc, const float* bias = nullptr,
                 bool stream = false);

// One-shot GEMM: packs B, then gemm_packed (or the BLAS path).
void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
           const float* bias = nullptr, bool stream = false);

}  // namespace cpu
}  // namespace fusedrnn
