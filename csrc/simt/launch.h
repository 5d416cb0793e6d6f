// Kernel launches and block-level primitives of the SIMT layer (part of simt/simt.h).
//
// Contract:
//   simt::launch(kernel, grid, block, smem, args...)   like kernel<<<grid, block, smem>>>(args...):
//       arguments are converted to the kernel's parameter types and copied once; every thread
//       calls the kernel with its own copies. Synchronous: returns when every block finished.
//       Throws simt::Error when the device would refuse the launch (message names the limit),
//       and rethrows the first exception any kernel thread threw.
//   simt::launch_cooperative(...)   same, plus the co-residency check of cudaLaunchCooperativeKernel
//       for the configured architecture; all blocks are alive at once and may call grid_sync().
//   simt::dynamic_smem()   the calling block's dynamic shared memory: 16-byte aligned, one buffer
//       per block, filled with 0xFF bytes (NaN / -1) at block start so unwritten reads show.
//   simt::set_max_dynamic_smem(kernel, bytes)   the opt-in above 48 KB (cudaFuncSetAttribute with
//       MaxDynamicSharedMemorySize); throws above the architecture's opt-in limit.
// Registers per thread are not modelled, so a launch the GPU refuses for register pressure runs here.
#pragma once

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#include "simt/config.h"
#include "simt/types.h"

namespace simt {
namespace detail {

struct LaunchSpec {
  dim3 grid, block;
  size_t smem;
  const void* kernel;
  bool cooperative;
  dim3 cluster;  // thread-block cluster dims (simt/cluster.h); (1,1,1): no clusters
};

// The kernel call with its bound arguments, type-erased so the scheduler is not a template.
struct Body {
  const void* obj;
  void (*call)(const void*);
};

void check_launch(const LaunchSpec& spec);    // throws simt::Error naming the violated limit
void run(const LaunchSpec& spec, Body body);  // check_launch + execute

template <class... P, class... A>
void launch_impl(bool cooperative, dim3 cluster, void (*kernel)(P...), dim3 grid, dim3 block,
                 size_t smem, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "simt::launch: wrong number of kernel arguments");
  using Params = std::tuple<std::decay_t<P>...>;
  struct Bound {
    void (*fn)(P...);
    Params params;
  } bound{kernel, Params(std::forward<A>(args)...)};
  Body body{&bound, [](const void* p) {
              const Bound& b = *static_cast<const Bound*>(p);
              std::apply(b.fn, b.params);  // by-value parameters: each thread gets copies
            }};
  run(LaunchSpec{grid, block, smem, reinterpret_cast<const void*>(kernel), cooperative, cluster},
      body);
}

}  // namespace detail

template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A&&... args) {
  detail::launch_impl(false, dim3(), kernel, grid, block, smem, std::forward<A>(args)...);
}

template <class... P, class... A>
void launch_cooperative(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A&&... args) {
  detail::launch_impl(true, dim3(), kernel, grid, block, smem, std::forward<A>(args)...);
}

void set_max_dynamic_smem(const void* kernel, size_t bytes);
void* dynamic_smem();
void grid_sync();  // only inside a cooperative launch
// A polling thread's turn given up (cuda/flag_words.h): the fiber goes back to the end of its
// worker's ready queue, so the threads whose stores it waits for run. `polls` is the caller's
// state for one wait (0 before its first pause); after 30 s of one wait it throws simt::Error:
// a word that never arrives is a deadlock, reported, not a hang.
void poll_pause(long long& polls, const char* what);

}  // namespace simt

void __syncthreads();
int __syncthreads_count(int predicate);
int __syncthreads_and(int predicate);
int __syncthreads_or(int predicate);
[[noreturn]] void __trap();  // fails the launch with simt::Error
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __nanosleep(unsigned int) {}
