// The watchdog of a GPU spin wait: a wait that can never end (a deadlock: no thread will store
// the word or complete the barrier) fails the launch instead of hanging the process. CUDA only;
// the SIMT layer's waits have limits of their own (simt::poll_pause, its barrier deadlock
// check). Part of the portable subset, included by the headers whose waits use it
// (cuda/flag_words.h, cuda/cluster.h), not by cuda/portable.h.
//
//   portable::stall_check(since, what)   in a spin wait's retry path. since: the caller's state
//       for one wait, 0 before its first retry; the first call stores the wait's start (the
//       %globaltimer, ns). A call kStallNs after that start fails the launch with a device-side
//       assert naming `what` (torch raises "CUDA error: device-side assert triggered" at the
//       next synchronisation, and the CUDA context is lost, as after any device-side assert).
// kStallNs, 10 s: far beyond any legitimate wait (a cooperative or cluster launch keeps every
// block resident, and the words and barriers a step waits for come within microseconds), and
// beyond what time-slicing with other processes on the GPU holds a launch back.
#pragma once

#if defined(__CUDACC__)

#include <assert.h>

namespace fusedrnn {
namespace portable {

constexpr long long kStallNs = 10000000000LL;

// Out of line: the assert's call and its arguments stay off the wait's fast path.
__device__ __noinline__ inline void stalled(const char* what) {
  __assert_fail(what, __FILE__, __LINE__, "fusedrnn: waited 10 s (a deadlock) for");
}

__device__ __forceinline__ void stall_check(long long& since, const char* what) {
  long long now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  if (since == 0)
    since = now;
  else if (now - since > kStallNs)
    stalled(what);
}

}  // namespace portable
}  // namespace fusedrnn

#endif
