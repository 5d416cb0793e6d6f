// Asynchronous global -> shared copies of the portable subset (part of cuda/portable.h):
// cp.async with commit and wait groups. Under nvcc the PTX instructions (sm_80 and later); on the
// host the SIMT layer (simt/async_copy.h), which performs each copy only when a wait retires it,
// so a kernel that reads a tile before waiting reads stale shared memory in its tests.
//
//   cp_async<N>(dst, src, valid)  N = 4, 8 or 16 bytes from global `src` to shared `dst`, both
//                                 N-byte aligned; valid == false writes N zero bytes instead (the
//                                 source is not read, but must still be a valid address)
//   cp_async_commit()             close this thread's group of copies issued since the last one
//   cp_async_wait<n>()            wait until at most n of this thread's committed groups are
//                                 pending; the copies are then visible to this thread, and to the
//                                 block after a __syncthreads()
#pragma once

namespace fusedrnn {
namespace portable {

#if defined(__CUDACC__)

template <int N>
__device__ __forceinline__ void cp_async(void* dst, const void* src, bool valid) {
  static_assert(N == 4 || N == 8 || N == 16, "cp.async copies 4, 8 or 16 bytes");
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  const int src_size = valid ? N : 0;
  if constexpr (N == 16)  // .cg: L2 only, the tile is read once per block
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
                 :: "r"(s), "l"(src), "r"(src_size) : "memory");
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n"
                 :: "r"(s), "l"(src), "n"(N), "r"(src_size) : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int n>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" :: "n"(n) : "memory");
}

#else

template <int N>
inline void cp_async(void* dst, const void* src, bool valid) {
  static_assert(N == 4 || N == 8 || N == 16, "cp.async copies 4, 8 or 16 bytes");
  ::simt::cp_async(dst, src, N, valid ? N : 0);
}
inline void cp_async_commit() { ::simt::cp_async_commit(); }
template <int n>
inline void cp_async_wait() { ::simt::cp_async_wait(n); }

#endif

}  // namespace portable
}  // namespace fusedrnn
