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
// A block must not exit while a peer may still read or write its shared memory.
#pragma once

#include "cuda/portable.h"

#if defined(__CUDACC__)

#include <cooperative_groups.h>

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
#endif

}  // namespace portable
}  // namespace fusedrnn

#else  // host compile: the SIMT layer

#include "simt/cluster.h"

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
