// The portable CUDA subset every kernel in csrc/cuda is written against.
//
// Kernel headers (*.cuh) include only this file (plus csrc/cells). Under nvcc it maps to CUDA;
// in a host C++ translation unit it maps to the SIMT layer (csrc/simt/simt.h), which runs the
// same kernel source on CPU threads. Anything a kernel needs that is not listed here (other inline PTX,
// static __shared__, wgmma, TMA) is outside the subset.
//
//   FRNN_LAUNCH(kernel, grid, block, smem_bytes, stream, args...)      launch + launch check
//   FRNN_LAUNCH_COOPERATIVE(kernel, grid, block, smem_bytes, stream, args...)
//       all blocks co-resident (cooperative launch); kernels may call FRNN_GRID_SYNC()
//   FRNN_SET_MAX_DYNAMIC_SMEM(kernel, bytes)   opt-in above 48 KB of dynamic shared memory; CUDA:
//                                              set once per kernel and device to the device's
//                                              maximum (thread-safe), bytes only checked
//   FRNN_DYNAMIC_SMEM(type, name)              inside a kernel: type* name = the block's
//                                              dynamic shared memory (16-byte aligned)
//   FRNN_GRID_SYNC()                           grid-wide barrier (cooperative launches only)
//   FRNN_BACKEND_NS                            `cuda` under nvcc, `simt` on the host: the namespace
//                                              (inside fusedrnn) of the launchers compiled here
//   FRNN_POISON(tensor)                        SIMT: fill a fresh output with NaN so an element a
//                                              kernel forgets to write fails the tests; CUDA: no-op
//   portable::clock_ticks()                    a thread's clock for phase marks: CUDA the SM's cycle
//                                              counter (clock64), SIMT steady_clock nanoseconds;
//                                              monotonic within a block, not comparable across SMs
// stream is a cudaStream_t under nvcc and ignored by the SIMT layer (pass FRNN_CURRENT_STREAM).
// Tensor-core and asynchronous-copy instructions (mma.sync, ldmatrix, cvt.rna.tf32, cp.async) are
// in the subset as functions in fusedrnn::portable: cuda/warp_matrix.h, cuda/async_copy.h.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#if defined(__CUDACC__)

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#define FRNN_BACKEND_NS cuda
#define FRNN_CURRENT_STREAM (at::cuda::getCurrentCUDAStream().stream())

#define FRNN_LAUNCH(kernel, grid, block, smem, stream, ...)      \
  do {                                                           \
    kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__);  \
    C10_CUDA_KERNEL_LAUNCH_CHECK();                              \
  } while (0)

#define FRNN_LAUNCH_COOPERATIVE(kernel, grid, block, smem, stream, ...)                       \
  do {                                                                                        \
    auto frnn_fn_ = (kernel);                                                                 \
    ::fusedrnn::portable::CoopArgs frnn_args_(__VA_ARGS__);                                   \
    C10_CUDA_CHECK(cudaLaunchCooperativeKernel((const void*)frnn_fn_, (grid), (block),        \
                                               frnn_args_.ptrs, (smem), (stream)));           \
  } while (0)

#define FRNN_SET_MAX_DYNAMIC_SMEM(kernel, bytes) \
  ::fusedrnn::portable::allow_dynamic_smem((const void*)(kernel), (size_t)(bytes))

#define FRNN_DYNAMIC_SMEM(type, name)                          \
  extern __shared__ __align__(16) unsigned char frnn_smem_[];  \
  type* name = reinterpret_cast<type*>(frnn_smem_)

#define FRNN_GRID_SYNC() cooperative_groups::this_grid().sync()
#define FRNN_POISON(t) ((void)0)

namespace fusedrnn {
namespace portable {
__device__ __forceinline__ long long clock_ticks() { return clock64(); }
}  // namespace portable
}  // namespace fusedrnn

#include <mutex>
#include <set>
#include <utility>

namespace fusedrnn {
namespace portable {
// The dynamic shared memory opt-in of `kernel` on the current device, raised once to the
// device's maximum. Setting it per launch to the launch's own size raced: two host threads
// launching one kernel with different sizes could each launch under the other's smaller limit.
inline void allow_dynamic_smem(const void* kernel, size_t bytes) {
  static std::mutex mu;
  static std::set<std::pair<const void*, int>> done;
  int dev = 0, optin = 0;
  C10_CUDA_CHECK(cudaGetDevice(&dev));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  TORCH_CHECK(bytes <= size_t(optin), "fusedrnn: a kernel needs ", bytes,
              " bytes of shared memory, the device allows ", optin, " per block");
  std::lock_guard<std::mutex> lock(mu);
  if (done.count({kernel, dev})) return;
  C10_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
  done.insert({kernel, dev});
}
// cudaLaunchCooperativeKernel takes an array of pointers to the arguments.
template <class... A>
struct CoopArgs {
  std::tuple<A...> vals;
  void* ptrs[sizeof...(A) > 0 ? sizeof...(A) : 1];
  explicit CoopArgs(A... a) : vals(a...) { fill(std::index_sequence_for<A...>{}); }
  template <size_t... I> void fill(std::index_sequence<I...>) {
    ((ptrs[I] = (void*)&std::get<I>(vals)), ...);
  }
};
template <class... A> CoopArgs(A...) -> CoopArgs<A...>;
}  // namespace portable
}  // namespace fusedrnn

#else  // host compile: the SIMT layer

#include "simt/simt.h"

#define FRNN_BACKEND_NS simt
#define FRNN_CURRENT_STREAM nullptr

#define FRNN_LAUNCH(kernel, grid, block, smem, stream, ...) \
  ::simt::launch((kernel), dim3(grid), dim3(block), (size_t)(smem), __VA_ARGS__)

#define FRNN_LAUNCH_COOPERATIVE(kernel, grid, block, smem, stream, ...) \
  ::simt::launch_cooperative((kernel), dim3(grid), dim3(block), (size_t)(smem), __VA_ARGS__)

#define FRNN_SET_MAX_DYNAMIC_SMEM(kernel, bytes) \
  ::simt::set_max_dynamic_smem((const void*)(kernel), (size_t)(bytes))

#define FRNN_DYNAMIC_SMEM(type, name) type* name = reinterpret_cast<type*>(::simt::dynamic_smem())

#define FRNN_GRID_SYNC() ::simt::grid_sync()
#define FRNN_POISON(t) ::fusedrnn::portable::poison(t)

#include <ATen/ATen.h>
#include <chrono>
#include <limits>

namespace fusedrnn {
namespace portable {
inline long long clock_ticks() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline void poison(const at::Tensor& t) {
  if (at::isFloatingType(t.scalar_type())) t.fill_(std::numeric_limits<double>::quiet_NaN());
}
}  // namespace portable
}  // namespace fusedrnn

#endif

#include "cuda/warp_matrix.h"
#include "cuda/async_copy.h"
