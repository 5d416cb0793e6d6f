// The pointwise passes, the fused LSTM step and the thin LSTM sweeps compiled for AVX-512 (ATen's
// AVX512 vector type, SLEEF's vectorised exp/tanh exported by libtorch_cpu), chosen at run time
// (pointwise.cpp) only on CPUs with AVX-512 F/BW/DQ/VL, the subset ATen's AVX512 build assumes. As in pointwise_avx2.cpp, the target is set by pragma
// and the feature macros that the SLEEF and ATen headers test are defined by hand.
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx,avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")
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
#ifndef __AVX512F__
#define __AVX512F__ 1
#endif
#ifndef __AVX512BW__
#define __AVX512BW__ 1
#endif
#ifndef __AVX512DQ__
#define __AVX512DQ__ 1
#endif
#ifndef __AVX512VL__
#define __AVX512VL__ 1
#endif
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#define FRNN_PW_NS pw_avx512
#define FRNN_PW_TABLE pointwise_avx512
#include "cpu/pointwise_impl.h"

#include <immintrin.h>

#include "cpu/transpose16.h"

namespace fusedrnn {
namespace cpu {
namespace FRNN_PW_NS {

// Traits of the fused step and sweeps (lstm_step_impl.h, lstm_sweep_impl.h) for 32 zmm
// registers: panels of 16 units, tiles of 4 rows (16 accumulators), the backward product with up
// to 16 accumulators. kc = 128: a panel chunk of 32 KB stays in L1.
// kMaxStepH (lstm_step_for): above it GEMM + pointwise pass is faster at B >= 16, as measured on
// the 2-core Xeon (two threads, T=100, fused / unfused, inference): H = 128-256 1.05-1.12x,
// H = 512 1.03-1.08x at B = 64 but 0.94-0.97x at B = 128-256, H = 768 1.00x, H = 1024
// 0.91-0.99x, H = 2048 0.97x.
struct LstmAvx512 {
  static constexpr int L = 16, MR = 4, kAcc = 16, kMinVectors = 4;
  static constexpr int kPinPanel = 0;
  static constexpr int64_t kMaxStepH = 512;
  static constexpr int64_t KC = 128;
  using V = __m512;
  using Mask = __mmask16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  // Lane j set when j < n (n <= 0: none; n >= 16: all).
  static Mask mask(int64_t n) {
    return n >= L ? Mask(0xFFFF) : n <= 0 ? Mask(0) : Mask((1u << n) - 1);
  }
  static V maskload(Mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void maskstore(float* p, Mask m, V v) { _mm512_mask_storeu_ps(p, m, v); }
  static void transpose(const float* src, int64_t lds, int rows, int cols, float* dst,
                        int64_t ldd) {
    transpose16(src, lds, rows, cols, dst, ldd);
  }
};

}  // namespace FRNN_PW_NS
}  // namespace cpu
}  // namespace fusedrnn

#include "cpu/lstm_step_impl.h"
#include "cpu/lstm_sweep_impl.h"

namespace fusedrnn {
namespace cpu {

const LstmStepKernel& lstm_step_avx512() {
  return FRNN_PW_NS::step::kernel<FRNN_PW_NS::LstmAvx512>("avx512");
}
LstmForwardThinFn lstm_forward_thin_avx512() {
  return &FRNN_PW_NS::sweep::lstm_forward_thin<FRNN_PW_NS::LstmAvx512>;
}
LstmBackwardThinFn lstm_backward_thin_avx512() {
  return &FRNN_PW_NS::sweep::lstm_backward_thin<FRNN_PW_NS::LstmAvx512>;
}

}  // namespace cpu
}  // namespace fusedrnn
#endif
