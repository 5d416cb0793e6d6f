// Thread-block clusters (sm_90) in the portable subset: included by the kernels that use them
// (not by cuda/portable.h). Under nvcc cooperative_groups' cluster calls and the PTX cluster
// barrier, compiled for sm_90 and later (on older architectures each call traps: the launcher
// never launches clusters there); on the host the SIMT layer's emulation (simt/cluster.h).
//
//   FRNN_LAUNCH_CLUSTER(kernel, grid, block, cluster, smem, stream, args...)   a launch whose
//       1-D clusters are `cluster` consecutive blocks (grid a multiple of it), + launch check
//   FRNN_ALLOW_NON_PORTABLE_CLUSTER(kernel)   clusters above 8 blocks (16 at most on sm_90)
//   portable::max_active_clusters(kernel, grid, block, cluster, smem)   how many such clusters
//       the device runs at once (cudaOccupancyMaxActiveClusters; registers included); 0: none
//   portable::cluster_rank()            the block's rank in its cluster
//   portable::cluster_map(p, rank)      p (this block's dynamic shared memory) at the same offset
//                                       in block `rank`'s: plain loads and stores reach it
//   portable::cluster_arrive()          barrier.cluster.arrive.release: this thread's writes
//                                       (its own and peers' shared memory) before it are seen
//   portable::cluster_wait()            barrier.cluster.wait.acquire: after every non-exited
//                                       thread of the cluster arrived; arrive/wait alternate
//   portable::cluster_sync()            both
// mbarrier objects with transaction counts, and st.async (sm_90; simt/mbarrier.h has the
// semantics; bar: an 8-byte aligned uint64_t in the block's dynamic shared memory):
//   portable::mbar_init(bar, count)     mbarrier.init (count arrivals a phase), then
//                                       fence.mbarrier_init.release.cluster: a cluster barrier
//                                       after it lets peers' complete-tx reach it
//   portable::mbar_arrive_expect_tx(bar, bytes)   mbarrier.arrive.expect_tx: expect `bytes`
//                                       more of this phase, and one arrival
//   portable::mbar_wait(bar, parity)    mbarrier.try_wait.parity until the phase of that parity
//                                       completed (acquire: the bytes that completed it are seen);
//                                       CUDA: a device-side assert after 10 s (cuda/watchdog.h)
//   portable::st_async(dst, v, bar, rank)   st.async.shared::cluster.mbarrier::complete_tx::bytes
//                                       of v (4, 8 or 16 bytes) to dst and a complete-tx on bar,
//                                       both in block `rank` (given as this block's addresses:
//                                       mapa maps them); no fence orders it against other
//                                       stores, and the receiver learns of it only through bar
// A block must not exit while a peer may still read or write its shared memory.
#pragma once

#include "cuda/portable.h"

#if defined(__CUDACC__)

#include <cooperative_groups.h>

#include "cuda/watchdog.h"

#define FRNN_LAUNCH_CLUSTER(kernel, grid, block, cluster, smem, strm, ...)                 \
  do {                                                                                     \
    cudaLaunchConfig_t frnn_cfg_ = {};                                                     \
    cudaLaunchAttribute frnn_attr_[1];                                                     \
    frnn_attr_[0].id = cudaLaunchAttributeClusterDimension;                                \
    frnn_attr_[0].val.clusterDim.x = (cluster);                                            \
    frnn_attr_[0].val.clusterDim.y = 1;                                                    \
    frnn_attr_[0].val.clusterDim.z = 1;                                                    \
    frnn_cfg_.gridDim = dim3(grid);                                                        \
    frnn_cfg_.blockDim = dim3(block);                                                      \
    frnn_cfg_.dynamicSmemBytes = (smem);                                                   \
    frnn_cfg_.stream = (strm);                                                             \
    frnn_cfg_.attrs = frnn_attr_;                                                          \
    frnn_cfg_.numAttrs = 1;                                                                \
    C10_CUDA_CHECK(cudaLaunchKernelEx(&frnn_cfg_, (kernel), __VA_ARGS__));                 \
  } while (0)

#define FRNN_ALLOW_NON_PORTABLE_CLUSTER(kernel) \
  C10_CUDA_CHECK(cudaFuncSetAttribute((const void*)(kernel),      \
                                      cudaFuncAttributeNonPortableClusterSizeAllowed, 1))

namespace fusedrnn {
namespace portable {

template <class Kernel>
inline int max_active_clusters(Kernel kernel, int grid, int block, int cluster, size_t smem) {
  cudaLaunchConfig_t cfg = {};
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = cluster;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(block);
  cfg.dynamicSmemBytes = smem;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  int n = 0;
  if (cudaOccupancyMaxActiveClusters(&n, (const void*)kernel, &cfg) != cudaSuccess) {
    (void)cudaGetLastError();  // a refused configuration: none run
    return 0;
  }
  return n;
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
// No clusters below sm_90: the launcher does not launch them there.
__device__ __forceinline__ unsigned cluster_rank() { __trap(); return 0; }
template <class T>
__device__ __forceinline__ T* cluster_map(T* p, unsigned) { __trap(); return p; }
__device__ __forceinline__ void cluster_arrive() { __trap(); }
__device__ __forceinline__ void cluster_wait() { __trap(); }
__device__ __forceinline__ void mbar_init(uint64_t*, unsigned) { __trap(); }
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t*, unsigned) { __trap(); }
__device__ __forceinline__ void mbar_wait(uint64_t*, unsigned) { __trap(); }
template <class T>
__device__ __forceinline__ void st_async(T*, const T&, uint64_t*, unsigned) { __trap(); }
#else
__device__ __forceinline__ unsigned cluster_rank() {
  return cooperative_groups::this_cluster().block_rank();
}
template <class T>
__device__ __forceinline__ T* cluster_map(T* p, unsigned rank) {
  return cooperative_groups::this_cluster().map_shared_rank(p, rank);
}
__device__ __forceinline__ void cluster_arrive() {
  asm volatile("barrier.cluster.arrive.release;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() {
  asm volatile("barrier.cluster.wait.acquire;\n" ::: "memory");
}
// (smem_addr: cuda/warp_matrix.h, through cuda/portable.h)
__device__ __forceinline__ unsigned cluster_addr(const void* p, unsigned rank) {
  unsigned r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(smem_addr(p)), "r"(rank));
  return r;
}
__device__ __forceinline__ void mbar_init(uint64_t* bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count)
               : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, unsigned bytes) {
  asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }"
               ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, unsigned parity) {
  unsigned done = 0;
  long long since = 0;
  for (;;) {
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; "
        "selp.u32 %0, 1, 0, p; }"
        : "=r"(done)
        : "r"(smem_addr(bar)), "r"(parity & 1u)
        : "memory");
    if (done) return;
    stall_check(since, "an mbarrier phase that never completed");
  }
}
template <class T>
__device__ __forceinline__ void st_async(T* dst, const T& v, uint64_t* bar, unsigned rank) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8 || sizeof(T) == 16,
                "st.async stores 4, 8 or 16 bytes");
  const unsigned d = cluster_addr(dst, rank), b = cluster_addr(bar, rank);
  unsigned w[sizeof(T) / 4];
  memcpy(w, &v, sizeof(T));
  if constexpr (sizeof(T) == 4) {
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];"
                 ::"r"(d), "r"(w[0]), "r"(b)
                 : "memory");
  } else if constexpr (sizeof(T) == 8) {
    asm volatile(
        "st.async.shared::cluster.mbarrier::complete_tx::bytes.v2.b32 [%0], {%1, %2}, [%3];"
        ::"r"(d), "r"(w[0]), "r"(w[1]), "r"(b)
        : "memory");
  } else {
    asm volatile(
        "st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [%0], {%1, %2, %3, %4}, "
        "[%5];" ::"r"(d), "r"(w[0]), "r"(w[1]), "r"(w[2]), "r"(w[3]), "r"(b)
        : "memory");
  }
}
#endif

}  // namespace portable
}  // namespace fusedrnn

#else  // host compile: the SIMT layer

#include "simt/cluster.h"
#include "simt/mbarrier.h"

#define FRNN_LAUNCH_CLUSTER(kernel, grid, block, cluster, smem, stream, ...)               \
  ::simt::launch_cluster((kernel), dim3(grid), dim3(block), (size_t)(smem), dim3(cluster), \
                         __VA_ARGS__)

#define FRNN_ALLOW_NON_PORTABLE_CLUSTER(kernel) \
  ::simt::allow_non_portable_cluster((const void*)(kernel))

namespace fusedrnn {
namespace portable {

// The SIMT layer's launch checks decide; here every cluster that passes them runs.
template <class Kernel>
inline int max_active_clusters(Kernel, int, int, int cluster, size_t) {
  return cluster <= ::simt::max_cluster_size() ? 1 : 0;
}
inline unsigned cluster_rank() { return ::simt::cluster_block_rank(); }
template <class T>
inline T* cluster_map(T* p, unsigned rank) {
  return static_cast<T*>(::simt::cluster_map_shared(p, rank));
}
inline void cluster_arrive() { ::simt::cluster_arrive(); }
inline void cluster_wait() { ::simt::cluster_wait(); }
inline void mbar_init(uint64_t* bar, unsigned count) { ::simt::mbar_init(bar, count); }
inline void mbar_arrive_expect_tx(uint64_t* bar, unsigned bytes) {
  ::simt::mbar_arrive_expect_tx(bar, bytes);
}
inline void mbar_wait(uint64_t* bar, unsigned parity) { ::simt::mbar_wait(bar, parity); }
template <class T>
inline void st_async(T* dst, const T& v, uint64_t* bar, unsigned rank) {
  ::simt::st_async(dst, v, bar, rank);
}

}  // namespace portable
}  // namespace fusedrnn

#endif

namespace fusedrnn {
namespace portable {
__device__ __forceinline__ void cluster_sync() {
  cluster_arrive();
  cluster_wait();
}
}  // namespace portable
}  // namespace fusedrnn
