// Flag words: a value and the step that stored it in one single-copy-atomic word, so a reader
// that sees the flag it expects has the value too: no fence, no barrier between the writer and
// the reader (the grid forward's exchange of h_t, cuda/persistent_kernels.cuh). Part of the
// portable subset, included by the kernels that use it (not by cuda/portable.h).
//
//   FlagWord<S>              S a 2-byte type: W = uint32_t, S's bits low, the flag high (16);
//                            S a 4-byte type: W = uint64_t, S's bits low, the flag high (32).
//                            flag(s) = s mod 2^15 (2^31) with the top bit set: never 0, so a
//                            zeroed buffer holds no step's word, and the words a slot holds at
//                            steps two apart differ.
//   portable::st_flag(p, w)  st.relaxed.gpu of one word (single-copy atomic: aligned)
//   portable::ld_flag16(p, v)  one 16-byte ld.relaxed.gpu (.v4.b32 / .v2.b64) of 16 / sizeof(W)
//                            words: each word single-copy atomic (PTX models a vector access
//                            as scalar accesses), not the 16 bytes together; at gpu scope, so
//                            from L2 (an SM's L1 is not coherent with the others')
//   portable::ld_flag(p)     the same, one word
//   portable::poll_pause(polls, what)   between a wait's loads (polls = 0 before its first
//                            pause). CUDA: the watchdog (cuda/watchdog.h: a device-side assert
//                            after 10 s of one wait); SIMT: the thread gives up its turn
//                            (simt::poll_pause: an error after 30 s of one wait)
// Pointers: global memory, aligned to a word (16 bytes for ld_flag16). A reader may poll only
// for a word some thread of a co-resident block (a cooperative launch) will store.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda/portable.h"
#include "cuda/watchdog.h"

namespace fusedrnn {

// ok: S is a 2- or 4-byte type (an 8-byte one has no room for a flag: the members below then
// exist only so that kernels compile for it, and must not be used).
template <class S>
struct FlagWord {
  static constexpr bool ok = sizeof(S) == 2 || sizeof(S) == 4;
  using W = std::conditional_t<sizeof(S) == 2, uint32_t, uint64_t>;
  using Bits = std::conditional_t<sizeof(S) == 2, uint16_t, uint32_t>;
  static constexpr int kShift = sizeof(S) == 2 ? 16 : 32;
  static constexpr int kPerLoad = 16 / int(sizeof(W));  // words a 16-byte load brings
  __device__ __forceinline__ static W flag(int s) {
    const W top = W(1) << (kShift - 1);
    return (W(unsigned(s)) & (top - 1)) | top;
  }
  __device__ __forceinline__ static W pack(S v, int s) {
    Bits b = 0;
    memcpy(&b, &v, sizeof b < sizeof v ? sizeof b : sizeof v);
    return W(b) | (flag(s) << kShift);
  }
  __device__ __forceinline__ static bool has(W w, int s) { return (w >> kShift) == flag(s); }
  __device__ __forceinline__ static S value(W w) {
    const Bits b = Bits(w);
    S v{};
    memcpy(&v, &b, sizeof b < sizeof v ? sizeof b : sizeof v);
    return v;
  }
};

namespace portable {

#if defined(__CUDACC__)

__device__ __forceinline__ void st_flag(uint32_t* p, uint32_t w) {
  asm volatile("st.relaxed.gpu.global.b32 [%0], %1;" ::"l"(p), "r"(w));
}
__device__ __forceinline__ void st_flag(uint64_t* p, uint64_t w) {
  asm volatile("st.relaxed.gpu.global.b64 [%0], %1;" ::"l"(p), "l"(w));
}
__device__ __forceinline__ uint32_t ld_flag(const uint32_t* p) {
  uint32_t w;
  asm volatile("ld.relaxed.gpu.global.b32 %0, [%1];" : "=r"(w) : "l"(p));
  return w;
}
__device__ __forceinline__ uint64_t ld_flag(const uint64_t* p) {
  uint64_t w;
  asm volatile("ld.relaxed.gpu.global.b64 %0, [%1];" : "=l"(w) : "l"(p));
  return w;
}
__device__ __forceinline__ void ld_flag16(const uint32_t* p, uint32_t (&v)[4]) {
  asm volatile("ld.relaxed.gpu.global.v4.b32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v[0]), "=r"(v[1]), "=r"(v[2]), "=r"(v[3])
               : "l"(p));
}
__device__ __forceinline__ void ld_flag16(const uint64_t* p, uint64_t (&v)[2]) {
  asm volatile("ld.relaxed.gpu.global.v2.b64 {%0, %1}, [%2];" : "=l"(v[0]), "=l"(v[1]) : "l"(p));
}
__device__ __forceinline__ void poll_pause(long long& polls, const char* what) {
  stall_check(polls, what);
}

#else  // SIMT: blocks run on several OS threads; relaxed atomics are the same contract

template <class W>
inline void st_flag(W* p, W w) {
  __atomic_store_n(p, w, __ATOMIC_RELAXED);
}
template <class W>
inline W ld_flag(const W* p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}
template <class W, int N>
inline void ld_flag16(const W* p, W (&v)[N]) {
  static_assert(N * sizeof(W) == 16, "16 bytes of words");
  for (int i = 0; i < N; ++i) v[i] = __atomic_load_n(p + i, __ATOMIC_RELAXED);
}
inline void poll_pause(long long& polls, const char* what) { ::simt::poll_pause(polls, what); }

#endif

}  // namespace portable
}  // namespace fusedrnn
