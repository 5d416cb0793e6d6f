// Run-time choice of the pointwise passes' instruction set (pointwise.h), of the fused LSTM
// step (lstm_step.h) and of the thin LSTM sweeps (lstm_sweep.h).
#include "cpu/pointwise.h"

#include "cpu/gemm.h"
#include "cpu/lstm_step.h"
#include "cpu/lstm_sweep.h"

#include <cstdlib>

namespace fusedrnn {
namespace cpu {

template <class S> const Pointwise<S>& pointwise_default();
#if defined(__x86_64__) && defined(__GNUC__)
template <class S> const Pointwise<S>& pointwise_avx2();
template <class S> const Pointwise<S>& pointwise_avx512();
#endif

#if defined(__x86_64__) && defined(__GNUC__)
LstmStepFn lstm_step_avx512();
LstmForwardThinFn lstm_forward_thin_avx512();
LstmBackwardThinFn lstm_backward_thin_avx512();

namespace {
bool use_avx512() {
  static const bool avx512 =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      !std::getenv("FUSEDRNN_CPU_NO_AVX512");  // A/B switch for measurements
  return avx512;
}
}  // namespace
#endif

template <class S>
const Pointwise<S>& pointwise() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (use_avx512()) return pointwise_avx512<S>();
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2) return pointwise_avx2<S>();
#endif
  return pointwise_default<S>();
}

#if !(defined(__x86_64__) && defined(__GNUC__))
void lstm_step_pack_panel(const float*, int64_t, int64_t, float*) {
  TORCH_CHECK(false, "fusedrnn: the fused LSTM step needs AVX-512");  // lstm_step_fn() is null
}
#endif

LstmStepFn lstm_step_fn() {
#if defined(__x86_64__) && defined(__GNUC__)
  const char* env = std::getenv("FUSEDRNN_CPU_FUSED");
  if (use_avx512() && gemm_isa() == GemmIsa::Avx512 && !(env && env[0] == '0'))
    return lstm_step_avx512();
#endif
  return nullptr;
}

#if defined(__x86_64__) && defined(__GNUC__)
namespace {
bool thin_enabled() {
  const char* env = std::getenv("FUSEDRNN_CPU_THIN");
  return lstm_step_fn() && !(env && env[0] == '0');
}
}  // namespace
#endif

LstmForwardThinFn lstm_forward_thin_fn() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (thin_enabled()) return lstm_forward_thin_avx512();
#endif
  return nullptr;
}

LstmBackwardThinFn lstm_backward_thin_fn() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (thin_enabled()) return lstm_backward_thin_avx512();
#endif
  return nullptr;
}

template const Pointwise<float>& pointwise<float>();
template const Pointwise<double>& pointwise<double>();

}  // namespace cpu
}  // namespace fusedrnn
