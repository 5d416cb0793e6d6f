// CUDA keywords and built-in types for host compilation of kernels (part of simt/simt.h).
//
// Contract: the function-space qualifiers are defined away (every function is host code here),
// __restrict__ keeps gcc's native meaning, and a static `__shared__` declaration is a compile
// error naming the fix: a static array would be one variable shared by every block running on an
// OS thread, silently wrong, so kernels use FRNN_DYNAMIC_SMEM instead. dim3/uint3 and the vector
// types match CUDA's layout (float4 etc. 16-byte aligned) so reinterpret_cast'ed loads behave alike.
// threadIdx/blockIdx/blockDim/gridDim read per-OS-thread state the scheduler updates at every
// context switch (fibers never move between OS threads, so a cached TLS address stays valid).
#pragma once

#include <cstdint>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__                                                                            \
  _Pragma("GCC error \"static __shared__ is not supported by the SIMT layer: use FRNN_DYNAMIC_SMEM\"") \
  SIMT_static_shared_is_not_supported_use_FRNN_DYNAMIC_SMEM
#define __constant__ \
  _Pragma("GCC error \"__constant__ is not supported by the SIMT layer: pass values as kernel arguments\"")

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

inline constexpr uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { return {x, y, z}; }

#define SIMT_VECTOR_TYPES(T, NAME, A2, A4)                                     \
  struct alignas(A2) NAME##2 { T x, y; };                                      \
  struct alignas(A4) NAME##4 { T x, y, z, w; };                                \
  inline constexpr NAME##2 make_##NAME##2(T x, T y) { return {x, y}; }         \
  inline constexpr NAME##4 make_##NAME##4(T x, T y, T z, T w) { return {x, y, z, w}; }
SIMT_VECTOR_TYPES(float, float, 8, 16)
SIMT_VECTOR_TYPES(int, int, 8, 16)
SIMT_VECTOR_TYPES(unsigned int, uint, 8, 16)
SIMT_VECTOR_TYPES(double, double, 16, 16)
#undef SIMT_VECTOR_TYPES

constexpr int warpSize = 32;

namespace simt {
namespace detail {
// Written by the scheduler before it resumes a fiber; read through the macros below.
struct Builtins {
  uint3 thread_idx, block_idx, block_dim, grid_dim;
};
// Hidden: kernels and the layer are one shared object, so TLS access needs no symbol lookup.
extern thread_local Builtins tls_builtins __attribute__((visibility("hidden")));
}  // namespace detail
}  // namespace simt

#define threadIdx (static_cast<const uint3&>(::simt::detail::tls_builtins.thread_idx))
#define blockIdx (static_cast<const uint3&>(::simt::detail::tls_builtins.block_idx))
#define blockDim (static_cast<const uint3&>(::simt::detail::tls_builtins.block_dim))
#define gridDim (static_cast<const uint3&>(::simt::detail::tls_builtins.grid_dim))
