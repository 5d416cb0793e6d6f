// Kernels that exercise the SIMT layer, for tests/test_simt*.py only (bound as _simt_test_* by
// selftest.cpp). Written exactly like csrc/cuda kernels: against csrc/cuda/portable.h.
// Not part of the public API.
#pragma once

#include "cuda/portable.h"

namespace fusedrnn {
namespace simt_test {

// Tree sum of each block's slice (blockDim.x a power of two): one barrier per phase.
__global__ void k_reduce(const float* in, float* out) {
  FRNN_DYNAMIC_SMEM(float, s);
  const unsigned t = threadIdx.x;
  s[t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (unsigned k = blockDim.x / 2; k > 0; k /= 2) {
    if (t < k) s[t] += s[t + k];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

// Each round every thread takes its right neighbour's value: read, barrier, write, barrier.
__global__ void k_rotate(const int* in, int* out, int rounds, bool skip_second_sync) {
  FRNN_DYNAMIC_SMEM(int, s);
  const unsigned t = threadIdx.x, n = blockDim.x, base = blockIdx.x * n;
  s[t] = in[base + t];
  __syncthreads();
  for (int r = 0; r < rounds; ++r) {
    int v = s[(t + 1) % n];
    __syncthreads();
    s[t] = v;
    if (!skip_second_sync) __syncthreads();
  }
  out[base + t] = s[t];
}

// out[t] = in[t] + in[t-1] through shared memory. Without the barrier it still works when threads
// run in order (t-1 wrote before t reads), so only a shuffled schedule exposes the bug.
__global__ void k_neighbor(const float* in, float* out, bool skip_sync) {
  FRNN_DYNAMIC_SMEM(float, s);
  const unsigned t = threadIdx.x, g = blockIdx.x * blockDim.x + t;
  s[t] = in[g];
  if (!skip_sync) __syncthreads();
  out[g] = s[t] + (t > 0 ? s[t - 1] : 0.f);
}

// Every block fills all of its shared memory with its own id, then reads back its neighbour's words.
__global__ void k_smem_isolation(int64_t* vals, int64_t* bad, int64_t* align, int words) {
  FRNN_DYNAMIC_SMEM(int64_t, s);
  const unsigned t = threadIdx.x, n = blockDim.x;
  const long long b = blockIdx.x + (long long)blockIdx.y * gridDim.x;
  for (int i = t; i < words; i += n) s[i] = b * 1000000 + i;
  __syncthreads();
  long long wrong = 0;
  for (int i = (t + 1) % n; i < words; i += n) wrong += s[i] != b * 1000000 + i;
  vals[b * n + t] = s[(t + 1) % n];
  bad[b * n + t] = wrong;
  if (t == 0) align[b] = (long long)(reinterpret_cast<uintptr_t>(s) % 16);
}

__global__ void k_builtins(int64_t* out) {
  const long long nthreads = blockDim.x * blockDim.y * blockDim.z;
  const long long b = blockIdx.x + gridDim.x * (blockIdx.y + (long long)gridDim.y * blockIdx.z);
  const long long t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  int64_t* o = out + (b * nthreads + t) * 12;
  const uint3 v[4] = {threadIdx, blockIdx, blockDim, gridDim};
  for (int i = 0; i < 4; ++i) {
    o[3 * i] = v[i].x;
    o[3 * i + 1] = v[i].y;
    o[3 * i + 2] = v[i].z;
  }
}

// op: 0 idx, 1 up, 2 down, 3 xor. Lanes outside `mask` do not shuffle and keep their value.
// For idx, lane l asks for srcLane = arg + per_lane * l (exercises wrapping past the width).
template <class T>
__global__ void k_shfl(const T* in, T* out, int op, int arg, int per_lane, int width, unsigned mask) {
  const unsigned g = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32;
  T v = in[g];
  if (mask >> lane & 1) {
    switch (op) {
      case 0: v = __shfl_sync(mask, v, arg + per_lane * (int)lane, width); break;
      case 1: v = __shfl_up_sync(mask, v, (unsigned)arg, width); break;
      case 2: v = __shfl_down_sync(mask, v, (unsigned)arg, width); break;
      default: v = __shfl_xor_sync(mask, v, arg, width); break;
    }
  }
  out[g] = v;
}

// op: 0 ballot, 1 any, 2 all, 3 activemask. Lanes outside `mask` write -1.
__global__ void k_vote(const int* pred, int64_t* out, int op, unsigned mask) {
  const unsigned g = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32;
  long long r = -1;
  if (op == 3) r = __activemask();
  else if (mask >> lane & 1) {
    if (op == 0) r = __ballot_sync(mask, pred[g]);
    else if (op == 1) r = __any_sync(mask, pred[g]);
    else r = __all_sync(mask, pred[g]);
  }
  out[g] = r;
}

// Lanes in `mask` exchange through shared memory, two rounds: each reads the slot of the next
// lane of the mask (cyclically). Lanes outside the mask copy their input.
__global__ void k_syncwarp(const int* in, int* out, unsigned mask, bool skip_sync) {
  FRNN_DYNAMIC_SMEM(int, s);
  const unsigned t = threadIdx.x, g = blockIdx.x * blockDim.x + t, lane = t % 32, wbase = t - lane;
  if (!(mask >> lane & 1)) {
    out[g] = in[g];
    return;
  }
  unsigned next = lane;
  do next = (next + 1) % 32; while (!(mask >> next & 1));
  int v = in[g];
  for (int round = 0; round < 2; ++round) {
    s[t] = v;
    if (!skip_sync) __syncwarp(mask);
    v = s[wbase + next] * 2;
    if (!skip_sync) __syncwarp(mask);
  }
  out[g] = v;
}

struct Counters {
  int i_add;
  unsigned u_add;
  unsigned long long ull_add;
  float f_add;
  double d_add;
  int i_sub;
  unsigned u_sub;
  int i_max, i_min;
  unsigned cas_add;
  int lock;
  long long locked_plain;  // incremented non-atomically inside an atomicCAS spin lock
  unsigned long long exch_sum;
  unsigned exch;
  c10::Half h_add;
  unsigned inc;
};

__global__ void k_atomics(Counters* c, int iters) {
  const unsigned g = blockIdx.x * blockDim.x + threadIdx.x;
  for (int it = 0; it < iters; ++it) {
    atomicAdd(&c->i_add, 1);
    atomicAdd(&c->u_add, 2u);
    atomicAdd(&c->ull_add, 1ull << 33);
    atomicAdd(&c->f_add, 1.0f);
    atomicAdd(&c->d_add, 0.25);
    atomicSub(&c->i_sub, 3);
    atomicSub(&c->u_sub, 1u);
    atomicMax(&c->i_max, (int)(g * iters + it));
    atomicMin(&c->i_min, -(int)(g * iters + it));
    unsigned old = c->cas_add, assumed;
    do {
      assumed = old;
      old = atomicCAS(&c->cas_add, assumed, assumed + 1);
    } while (old != assumed);
    while (atomicCAS(&c->lock, 0, 1) != 0) {
    }
    c->locked_plain += 1;
    __threadfence();
    atomicExch(&c->lock, 0);
    atomicAdd(&c->exch_sum, (unsigned long long)atomicExch(&c->exch, g + 1));
    atomicInc(&c->inc, 999u);
    if (threadIdx.x % 32 == 0 && it < 2) atomicAdd(&c->h_add, c10::Half(1.0f));  // stays < 2048: exact
  }
}

// Phase p: every block sums all blocks' phase p-1 values (block reduction), adds its index.
__global__ void k_grid(int64_t* buf, int phases) {
  FRNN_DYNAMIC_SMEM(int64_t, s);
  const unsigned t = threadIdx.x, n = blockDim.x, nb = gridDim.x;
  for (int p = 1; p <= phases; ++p) {
    FRNN_GRID_SYNC();
    long long acc = 0;
    for (unsigned b = t; b < nb; b += n) acc += buf[(p - 1) * nb + b];
    s[t] = acc;
    __syncthreads();
    if (t == 0) {
      long long sum = 0;
      for (unsigned i = 0; i < n; ++i) sum += s[i];
      buf[p * nb + blockIdx.x] = sum + blockIdx.x;
    }
    __syncthreads();
  }
}

// Barrier misuse, one kind per value of `kind` (see selftest.cpp).
__global__ void k_disagree(int kind) {
  const unsigned t = threadIdx.x, lane = t % 32;
  int v = (int)t;
  switch (kind) {
    case 0:  // half the block exits, the rest waits at __syncthreads
      if (t >= blockDim.x / 2) return;
      __syncthreads();
      break;
    case 1:  // block 0 exits, the other blocks wait at the grid barrier
      if (blockIdx.x == 0) return;
      FRNN_GRID_SYNC();
      break;
    case 2:  // lane 0 at __syncthreads, the rest of its warp at __syncwarp
      if (lane == 0) __syncthreads();
      else __syncwarp();
      break;
    case 3:  // the mask does not include the calling lane
      v = __shfl_sync(0x2u, v, 1);
      break;
    case 4:  // lanes of a warp meet at different operations
      if (lane % 2) v = __shfl_sync(0xffffffffu, v, 0);
      else v = (int)__ballot_sync(0xffffffffu, 1);
      break;
    case 5:  // width not a power of two
      v = __shfl_down_sync(0xffffffffu, v, 1, 3);
      break;
    case 6:  // grid barrier in a normal launch
      FRNN_GRID_SYNC();
      break;
  }
  (void)v;
}

__global__ void k_empty(int) {}  // one argument: FRNN_LAUNCH needs at least one

__global__ void k_throw(int kind) {
  __syncthreads();
  if (blockIdx.x == 1 && threadIdx.x == 37) {
    if (kind == 0) throw std::runtime_error("boom from thread 37 of block 1");
    if (kind == 1) TORCH_CHECK(false, "c10 error from a kernel thread");
    if (kind == 2) __trap();
    if (kind == 3) FRNN_LAUNCH(k_empty, 1, 1, 0, FRNN_CURRENT_STREAM, 0);
  }
  __syncthreads();
}

// The order in which the threads of one block run: at the start and after a barrier.
__global__ void k_order(int* ticket, int* out) {
  out[atomicAdd(&ticket[0], 1)] = threadIdx.x;
  __syncthreads();
  out[blockDim.x + atomicAdd(&ticket[1], 1)] = threadIdx.x;
}

__global__ void k_bench(int* out, int barriers) {
  for (int i = 0; i < barriers; ++i) __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = 1;
}

__global__ void k_intrinsics(const int* in, int64_t* out) {
  const unsigned g = blockIdx.x * blockDim.x + threadIdx.x;
  const int x = __ldg(in + g);
  int64_t* o = out + 6 * g;
  o[0] = __popc((unsigned)x);
  o[1] = __ffs(x);
  o[2] = __clz(x);
  o[3] = __brev((unsigned)x);
  o[4] = min(x, 7u);  // CUDA: the unsigned overload
  o[5] = max(x, -3);
}

}  // namespace simt_test
}  // namespace fusedrnn
