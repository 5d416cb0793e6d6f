// The SIMT layer: the host half of csrc/cuda/portable.h. It lets the exact CUDA kernel source in
// csrc/cuda compile as host C++ (gcc 12, x86-64 Linux) and run on CPU threads, so every kernel is
// executed and tested on machines without a GPU.
//
// Implements, with the semantics of the CUDA programming guide:
//   keywords      __global__ __device__ __host__ __forceinline__ __launch_bounds__ (defined away;
//                 __restrict__ is native to gcc); static __shared__ is a compile error on purpose
//   built-ins     dim3 uint3 threadIdx blockIdx blockDim gridDim warpSize, small vector types
//   launches      simt::launch, simt::launch_cooperative, simt::dynamic_smem,
//                 simt::set_max_dynamic_smem, with the device's launch checks (simt/launch.h)
//   clusters      simt::launch_cluster, block rank, distributed shared memory, the cluster
//                 barrier (simt/cluster.h: included by the kernels that use clusters, through
//                 cuda/cluster.h)
//   barriers      __syncthreads (+ _count/_and/_or), simt::grid_sync, __syncwarp
//   warps         __shfl_sync/_up/_down/_xor (with width), __ballot_sync __any_sync __all_sync
//                 __activemask (simt/warp.h)
//   atomics       atomicAdd/Sub/Exch/Min/Max/CAS/And/Or/Xor/Inc/Dec, __threadfence (simt/atomics.h)
//   tensor cores  mma.sync (m16n8k16 bf16/f16, m16n8k8 tf32), ldmatrix, cvt.rna.tf32 (simt/matrix.h)
//   async copies  cp.async, commit_group, wait_group, deferred to the wait (simt/async_copy.h)
//   intrinsics    __expf __logf __fdividef __frcp_rn rsqrtf __popc __ffs __clz __ldg min max ...
//   config        simt::set_seed / set_arch / set_workers, simt::stats (simt/config.h)
//
// Not implemented (a kernel needing them stays out of the portable subset): other inline PTX, static
// __shared__, cooperative_groups (use FRNN_GRID_SYNC and cuda/cluster.h), dynamic parallelism,
// textures, warp match/reduce intrinsics, clock(), and any preemption between barriers: a thread
// spin-waiting on another thread of its own block never returns (threads of a block only switch
// at barriers).
// Device assert() is the host assert (aborts the process); use __trap() to fail a launch.
//
// Execution model and why fibers, not OS threads: every CUDA thread is a fiber (a user-level
// context on its own 64 KB stack, switched by a few instructions of assembly in fiber.cpp). All
// fibers of a block run on one OS thread and switch only at barriers and warp operations, so
//   - a barrier costs ~two context switches instead of an OS futex round trip per thread, which
//     keeps a 1024-thread block with hundreds of barriers fast;
//   - the order in which threads resume after a barrier is under our control: in order by default,
//     a seeded random permutation with simt::set_seed, so a missing __syncthreads produces a wrong
//     result for some seed, reproducibly;
//   - "threads of a block disagree about a barrier" is detected exactly (nothing runnable, some
//     threads waiting) and reported as an exception instead of hanging.
// Blocks of a normal launch run in parallel on a few OS threads (one block at a time each), so
// atomics on global memory see real contention. A cooperative launch keeps every fiber of every
// block alive at once (blocks partitioned over the OS threads) so the grid barrier can complete;
// a cluster launch keeps the blocks of one cluster alive at once on one OS thread.
// An exception thrown by a kernel thread is caught inside its fiber, aborts the launch (the other
// fibers are unwound at their barrier) and is rethrown by launch() on the calling thread.
#pragma once

#include "simt/types.h"
#include "simt/config.h"
#include "simt/launch.h"
#include "simt/warp.h"
#include "simt/atomics.h"
#include "simt/intrinsics.h"
#include "simt/matrix.h"
#include "simt/async_copy.h"
