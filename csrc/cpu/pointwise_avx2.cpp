// The pointwise passes, the fused LSTM step and the thin LSTM sweeps compiled for AVX2 + FMA
// (ATen's AVX2 vector type, SLEEF's vectorised exp/tanh exported by libtorch_cpu), chosen at run
// time (pointwise.cpp) only on CPUs that have both.
// setuptools cannot give one file its own -mavx2, so the target is set by pragma and the
// feature macros that the SLEEF and ATen headers test are defined by hand.
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx,avx2,fma,f16c")
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#ifndef __F16C__
#define __F16C__ 1
#endif
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#define FRNN_PW_NS pw_avx2
#define FRNN_PW_TABLE pointwise_avx2
#include "cpu/pointwise_impl.h"

#include <immintrin.h>

#include "cpu/transpose8.h"

namespace fusedrnn {
namespace cpu {
namespace FRNN_PW_NS {

// Traits of the fused step and sweeps (lstm_step_impl.h, lstm_sweep_impl.h) for 16 ymm
// registers: panels of 8 units, tiles of 3 rows (12 accumulators, two of the panel's 4 vectors
// pinned, one broadcast; the other two are FMA memory operands), the backward product with up to
// 12 accumulators. kc = 256 keeps a panel chunk at 32 KB, as AVX-512's 128.
// Tiles of 2 rows with all 4 vectors pinned kept 8 FMA chains (exactly the 2 pipes x 4 cycles of
// latency) and 17 uops per 8 FMAs, at the front end's limit; measured on the 2-core Xeon (AVX2,
// two threads, T=100): LSTM inference B=8 H=256 8.4 -> 5.9 ms, H=512 24.8 -> 22.8, B=64 H=1024
// 660 -> 617, H=2048 3030 -> 2820; B=1, B=4 and training within the noise.
// kMaxStepH (lstm_step_for): above it GEMM + pointwise pass is faster at B >= 16, as measured
// there (fused / unfused, inference): H = 128-384 1.01-1.18x, H = 512 0.94-0.97x, H = 1024
// 0.97-0.98x, H = 2048 0.92x (training, whose forward is a third of it, within +-3%).
struct LstmAvx2 {
  static constexpr int L = 8, MR = 3, kAcc = 12, kMinVectors = 2;
  static constexpr int kPinPanel = 2;
  static constexpr int64_t kMaxStepH = 384;
  static constexpr int64_t KC = 256;
  using V = __m256;
  using Mask = __m256i;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  // Lane j set when j < n (n <= 0: none; n >= 8: all).
  static Mask mask(int64_t n) {
    const int m = int(n < 0 ? 0 : n > L ? L : n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V maskload(Mask m, const float* p) { return _mm256_maskload_ps(p, m); }
  static void maskstore(float* p, Mask m, V v) { _mm256_maskstore_ps(p, m, v); }
  static void transpose(const float* src, int64_t lds, int rows, int cols, float* dst,
                        int64_t ldd) {
    transpose8(src, lds, rows, cols, dst, ldd);
  }
};

}  // namespace FRNN_PW_NS
}  // namespace cpu
}  // namespace fusedrnn

#include "cpu/lstm_step_impl.h"
#include "cpu/lstm_sweep_impl.h"

namespace fusedrnn {
namespace cpu {

const LstmStepKernel& lstm_step_avx2() {
  return FRNN_PW_NS::step::kernel<FRNN_PW_NS::LstmAvx2>("avx2");
}
LstmForwardThinFn lstm_forward_thin_avx2() {
  return &FRNN_PW_NS::sweep::lstm_forward_thin<FRNN_PW_NS::LstmAvx2>;
}
LstmBackwardThinFn lstm_backward_thin_avx2() {
  return &FRNN_PW_NS::sweep::lstm_backward_thin<FRNN_PW_NS::LstmAvx2>;
}

}  // namespace cpu
}  // namespace fusedrnn
#endif
