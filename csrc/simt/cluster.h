// Thread-block clusters of sm_90 in the SIMT layer: the launch, the block's rank, distributed
// shared memory (a peer block's shared memory mapped into this block's address space) and the
// cluster barrier, with the semantics of the CUDA programming guide and the PTX ISA
// (%cluster_ctarank, mapa, barrier.cluster.arrive / wait). Not part of simt/simt.h: kernels reach
// it through csrc/cuda/cluster.h, which maps the same calls to CUDA under nvcc.
//
// Contract:
//   launch_cluster(kernel, grid, block, smem, cluster, args...)   like simt::launch, with every
//       `cluster` dims of blocks one cluster (grid a multiple of it per dimension). Refused when
//       the architecture has no clusters (sm_80), above 8 blocks unless allow_non_portable_cluster
//       was called for the kernel (16 at most), or when a cluster's blocks cannot be resident at
//       once on the SMs of one GPC (shared memory, threads). All blocks of a cluster run at the
//       same time (on one OS thread, interleaved at barriers as the threads of a block are), so
//       the cluster barrier and peer shared memory work; clusters run one after another.
//   max_cluster_size()   the largest cluster the configured architecture launches: 16 on sm_90
//       (8 portable), 0 on sm_80.
//   cluster_block_rank(), cluster_num_blocks()   the calling block's rank in its cluster (x
//       fastest) and the cluster's block count (1 in a launch without clusters).
//   cluster_map_shared(p, rank)   p (inside the caller's dynamic shared memory) mapped to the same
//       offset in block `rank` of the cluster. simt::Error when p is outside the caller's shared
//       memory, rank is out of range, or block `rank` has exited (its shared memory is gone: a
//       block must not exit while peers still access it; an exited block's shared memory is also
//       refilled with 0xFF bytes, so a pointer mapped before the exit reads NaN).
//   cluster_arrive()   barrier.cluster.arrive (release): marks this thread's arrival and returns.
//   cluster_wait()     barrier.cluster.wait (acquire): returns once every non-exited thread of
//       the cluster has arrived in the phase this thread arrived in. Arriving twice without a
//       wait, or waiting without an arrival, is a simt::Error (undefined in PTX). A cluster whose
//       threads can never all arrive is reported as a barrier disagreement, as for __syncthreads.
//   cluster_sync()     arrive + wait.
// Memory ordering needs nothing more here (the blocks of a cluster share one OS thread); what
// the emulation catches is ordering: a read of a peer's writes without a barrier in between
// sees stale data under a seeded schedule (simt::set_seed interleaves the blocks of a cluster).
#pragma once

#include "simt/launch.h"

namespace simt {

template <class... P, class... A>
void launch_cluster(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, dim3 cluster,
                    A&&... args) {
  detail::launch_impl(false, cluster, kernel, grid, block, smem, std::forward<A>(args)...);
}

void allow_non_portable_cluster(const void* kernel);  // cudaFuncAttributeNonPortableClusterSizeAllowed
int max_cluster_size();
unsigned cluster_block_rank();
unsigned cluster_num_blocks();
void* cluster_map_shared(const void* p, unsigned rank);
void cluster_arrive();
void cluster_wait();
inline void cluster_sync() {
  cluster_arrive();
  cluster_wait();
}

}  // namespace simt
