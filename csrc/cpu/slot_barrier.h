// A barrier between the slots of one parallel region, run_slots(slots, body): work with phases
// (a GEMM block's packing then its product; every step of a time loop) inside a single region,
// one wake-up of the pool instead of one per phase, synchronised here.
//
// at::parallel_for may give one body call several slots (fewer threads than slots, or inline on
// the caller inside another parallel region), so the barrier counts slots, not threads: a call
// arrives for all of its slots at once. Every slot must arrive exactly once per phase, and the
// phases are numbered 1, 2, ... by the caller; the counter only grows, so no reset is needed.
// Stores made before arrive() are visible to every slot after its wait() returns.
#pragma once

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>
#include <thread>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fusedrnn {
namespace cpu {

class SlotBarrier {
 public:
  explicit SlotBarrier(int64_t slots) : slots_(slots) {}
  // The calling body's k slots have finished phase `phase`; returns once all slots have.
  void arrive_and_wait(int64_t k, int64_t phase) {
    count_.fetch_add(k, std::memory_order_acq_rel);
    const int64_t target = slots_ * phase;
    // Steps last microseconds: spin, but let the core go on a machine with more busy threads
    // than cores, where the slot being waited for may be descheduled.
    for (int spins = 0; count_.load(std::memory_order_acquire) < target; ++spins) {
#if defined(__x86_64__)
      _mm_pause();
#endif
      if (spins >= 4096) std::this_thread::yield(), spins = 0;
    }
  }

 private:
  std::atomic<int64_t> count_{0};
  const int64_t slots_;
};

// body(w0, w1) for slot ranges covering [0, slots), concurrently: on the caller for one slot,
// else on the pool (at::parallel_for(0, slots, 1, body)).
template <class F>
inline void run_slots(int64_t slots, const F& body) {
  if (slots == 1) {
    body(0, 1);
  } else {
    at::parallel_for(0, slots, 1, body);
  }
}

}  // namespace cpu
}  // namespace fusedrnn
