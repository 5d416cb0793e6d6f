// Run-time choice of the pointwise passes' instruction set (pointwise.h), of the fused LSTM
// step (lstm_step.h) and of the thin LSTM sweeps (lstm_sweep.h).
#include "cpu/pointwise.h"

#include "cpu/gemm.h"
#include "cpu/lstm_step.h"
#include "cpu/lstm_sweep.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>

namespace fusedrnn {
namespace cpu {

template <class S> const Pointwise<S>& pointwise_default();
#if defined(__x86_64__) && defined(__GNUC__)
template <class S> const Pointwise<S>& pointwise_avx2();
template <class S> const Pointwise<S>& pointwise_avx512();
const LstmStepKernel& lstm_step_avx2();
LstmForwardThinFn lstm_forward_thin_avx2();
LstmBackwardThinFn lstm_backward_thin_avx2();
const LstmStepKernel& lstm_step_avx512();
LstmForwardThinFn lstm_forward_thin_avx512();
LstmBackwardThinFn lstm_backward_thin_avx512();
#endif

namespace {

// Levels: 0 the portable code, 1 AVX2 + FMA, 2 AVX-512 F/BW/DQ/VL.
int cpu_level() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const int level =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
          ? 2
      : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1
                                                                         : 0;
  return level;
#else
  return 0;
#endif
}

std::atomic<int> forced_level{-1};  // force_cpu_isa

// The pointwise passes' level: the CPU's, below AVX-512 with FUSEDRNN_CPU_NO_AVX512 (an A/B
// switch for measurements), or the one a test forced.
int pointwise_level() {
  const int f = forced_level.load(std::memory_order_relaxed);
  if (f >= 0) return f;
  static const int level = std::getenv("FUSEDRNN_CPU_NO_AVX512") && cpu_level() == 2 ? 1
                                                                                     : cpu_level();
  return level;
}

int gemm_level() {
  switch (gemm_isa()) {
    case GemmIsa::Avx512: return 2;
    case GemmIsa::Avx2: return 1;
    default: return 0;
  }
}

// The fused step's level: the lower of the pointwise passes' and the GEMM's, so that forcing
// either one down (for measurements) also moves the step; 0 where FUSEDRNN_CPU_FUSED=0.
int step_level() {
  const char* env = std::getenv("FUSEDRNN_CPU_FUSED");
  if (env && env[0] == '0') return 0;
  return std::min(pointwise_level(), gemm_level());
}

// The sweeps run with the step, unless FUSEDRNN_CPU_THIN=0.
int thin_level() {
  const char* env = std::getenv("FUSEDRNN_CPU_THIN");
  return env && env[0] == '0' ? 0 : step_level();
}

}  // namespace

bool force_cpu_isa(int level) {
  if (level > 2 || (level >= 0 && level > cpu_level())) return false;
  const int gemm = level < 0 ? -1 : level == 2 ? int(GemmIsa::Avx512)
                                  : level == 1 ? int(GemmIsa::Avx2)
                                               : int(GemmIsa::Blas);
  if (!force_gemm_isa(gemm)) return false;
  forced_level.store(level, std::memory_order_relaxed);
  return true;
}

template <class S>
const Pointwise<S>& pointwise() {
#if defined(__x86_64__) && defined(__GNUC__)
  switch (pointwise_level()) {
    case 2: return pointwise_avx512<S>();
    case 1: return pointwise_avx2<S>();
    default: break;
  }
#endif
  return pointwise_default<S>();
}

const LstmStepKernel* lstm_step_fn() {
#if defined(__x86_64__) && defined(__GNUC__)
  switch (step_level()) {
    case 2: return &lstm_step_avx512();
    case 1: return &lstm_step_avx2();
    default: break;
  }
#endif
  return nullptr;
}

const LstmStepKernel* lstm_step_for(int64_t B, int64_t H) {
  const LstmStepKernel* k = lstm_step_fn();
  if (!k || B <= kThinRows || H <= k->max_step_h) return k;
  const char* env = std::getenv("FUSEDRNN_CPU_FUSED");
  return env && env[0] == '1' ? k : nullptr;
}

LstmForwardThinFn lstm_forward_thin_fn() {
#if defined(__x86_64__) && defined(__GNUC__)
  switch (thin_level()) {
    case 2: return lstm_forward_thin_avx512();
    case 1: return lstm_forward_thin_avx2();
    default: break;
  }
#endif
  return nullptr;
}

LstmBackwardThinFn lstm_backward_thin_fn() {
#if defined(__x86_64__) && defined(__GNUC__)
  switch (thin_level()) {
    case 2: return lstm_backward_thin_avx512();
    case 1: return lstm_backward_thin_avx2();
    default: break;
  }
#endif
  return nullptr;
}

template const Pointwise<float>& pointwise<float>();
template const Pointwise<double>& pointwise<double>();

}  // namespace cpu
}  // namespace fusedrnn
