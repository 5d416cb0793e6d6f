// Atomic functions of the SIMT layer (part of simt/simt.h).
//
// Contract: the CUDA overload set (int, unsigned, unsigned long long, float, double, and 2-byte
// float types such as c10::Half / c10::BFloat16 for atomicAdd), each returning the old value. Blocks
// run on different OS threads, so these are real hardware atomics: gcc __atomic builtins, CAS
// loops for floating point. Relaxed order like CUDA's device-scope atomics (on x86 every locked
// RMW is a full barrier anyway); __threadfence() is a seq_cst fence (simt/launch.h).
#pragma once

#include <type_traits>

namespace simt {
namespace detail {
// Read-modify-write by CAS loop; works bitwise on any 2/4/8-byte trivially copyable T.
template <class T, class F>
inline T atomic_update(T* addr, F f) {
  T old;
  __atomic_load(addr, &old, __ATOMIC_RELAXED);
  for (;;) {
    T desired = f(old);
    if (__atomic_compare_exchange(addr, &old, &desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      return old;
  }
}
}  // namespace detail
}  // namespace simt

#define SIMT_ATOMIC_INT(T)                                                                       \
  inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }           \
  inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }         \
  inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_RELAXED); }           \
  inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }             \
  inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_RELAXED); }           \
  inline T atomicMin(T* a, T v) {                                                                \
    return simt::detail::atomic_update(a, [v](T o) { return v < o ? v : o; });                   \
  }                                                                                              \
  inline T atomicMax(T* a, T v) {                                                                \
    return simt::detail::atomic_update(a, [v](T o) { return v > o ? v : o; });                   \
  }                                                                                              \
  inline T atomicCAS(T* a, T compare, T v) {                                                     \
    __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);      \
    return compare; /* the old value, whether or not the swap happened */                         \
  }
SIMT_ATOMIC_INT(int)
SIMT_ATOMIC_INT(unsigned int)
SIMT_ATOMIC_INT(unsigned long long)
#undef SIMT_ATOMIC_INT

inline int atomicSub(int* a, int v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }
inline unsigned int atomicSub(unsigned int* a, unsigned int v) {
  return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED);
}
inline long long atomicMin(long long* a, long long v) {
  return simt::detail::atomic_update(a, [v](long long o) { return v < o ? v : o; });
}
inline long long atomicMax(long long* a, long long v) {
  return simt::detail::atomic_update(a, [v](long long o) { return v > o ? v : o; });
}
inline unsigned short atomicCAS(unsigned short* a, unsigned short compare, unsigned short v) {
  __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return compare;
}
// ((old >= limit) ? 0 : old + 1) and (((old == 0) || (old > limit)) ? limit : old - 1), as in CUDA.
inline unsigned int atomicInc(unsigned int* a, unsigned int limit) {
  return simt::detail::atomic_update(a, [limit](unsigned o) { return o >= limit ? 0u : o + 1; });
}
inline unsigned int atomicDec(unsigned int* a, unsigned int limit) {
  return simt::detail::atomic_update(
      a, [limit](unsigned o) { return (o == 0 || o > limit) ? limit : o - 1; });
}

inline float atomicAdd(float* a, float v) {
  return simt::detail::atomic_update(a, [v](float o) { return o + v; });
}
inline double atomicAdd(double* a, double v) {
  return simt::detail::atomic_update(a, [v](double o) { return o + v; });
}
inline float atomicExch(float* a, float v) {
  float old;
  __atomic_exchange(a, &v, &old, __ATOMIC_RELAXED);
  return old;
}

// 2-byte floating-point classes (c10::Half, c10::BFloat16): CUDA's atomicAdd(__half*, __half).
template <class T, std::enable_if_t<std::is_class<T>::value && sizeof(T) == 2 &&
                                        std::is_trivially_copyable<T>::value, int> = 0>
inline T atomicAdd(T* a, T v) {
  return simt::detail::atomic_update(a, [v](T o) { return static_cast<T>(o + v); });
}
