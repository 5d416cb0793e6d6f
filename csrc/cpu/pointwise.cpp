// Run-time choice of the pointwise passes' instruction set (pointwise.h).
#include "cpu/pointwise.h"

#include <cstdlib>

namespace fusedrnn {
namespace cpu {

template <class S> const Pointwise<S>& pointwise_default();
#if defined(__x86_64__) && defined(__GNUC__)
template <class S> const Pointwise<S>& pointwise_avx2();
template <class S> const Pointwise<S>& pointwise_avx512();
#endif

template <class S>
const Pointwise<S>& pointwise() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool avx512 =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      !std::getenv("FUSEDRNN_CPU_NO_AVX512");  // A/B switch for measurements
  if (avx512) return pointwise_avx512<S>();
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2) return pointwise_avx2<S>();
#endif
  return pointwise_default<S>();
}

template const Pointwise<float>& pointwise<float>();
template const Pointwise<double>& pointwise<double>();

}  // namespace cpu
}  // namespace fusedrnn
