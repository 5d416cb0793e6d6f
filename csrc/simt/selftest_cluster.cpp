// Self-test kernels of thread-block clusters (cuda/cluster.h on the SIMT layer) and their
// Python entry points (_simt_test_cluster_*), for tests/test_simt_cluster.py only. Written
// against the portable subset like every kernel; inputs and outputs are CPU tensors.
#include <pybind11/stl.h>
#include <torch/extension.h>

#include "cuda/cluster.h"

namespace fusedrnn {
namespace simt_test {
namespace {

namespace py = pybind11;
using at::Tensor;

// The persistent forward's exchange pattern, on scalars: every block holds a value v (initially
// its rank + 1), and in each phase pushes it into slot [rank] of buffer p%2 of every block of
// its cluster (itself included), meets the cluster barrier, and sets v = rank + sum of the
// buffer / n. out[phase][block] = v after the phase.
//   mode 0: as described; 1: no cluster barrier (reads race the peers' pushes); 2: one buffer
//   instead of two (a fast block's next push overwrites a slot a slow block has yet to read).
// Every thread of a block computes v (so the block's threads interleave with the peers'); the
// first n threads push, one peer each.
__global__ void k_exchange(float* out, int n, int phases, int mode) {
  FRNN_DYNAMIC_SMEM(float, buf);  // [2][n], n = the cluster's blocks (the grid is one cluster)
  const unsigned rank = fusedrnn::portable::cluster_rank();
  float v = float(rank + 1);
  for (int p = 0; p < phases; ++p) {
    float* b = buf + (mode == 2 ? 0 : (p % 2) * n);
    if (int(threadIdx.x) < n)
      fusedrnn::portable::cluster_map(b, unsigned(threadIdx.x))[rank] = v;
    if (mode != 1) fusedrnn::portable::cluster_sync();
    __syncthreads();
    float s = 0.f;
    for (int r = 0; r < n; ++r) s += b[r];
    v = float(rank) + s / float(n);
    if (threadIdx.x == 0) out[p * gridDim.x + blockIdx.x] = v;
    __syncthreads();
  }
  // No peer touches this block's memory after its last barrier, except in mode 2's race: end
  // with a barrier so no block exits while a peer may still push.
  if (mode != 1) fusedrnn::portable::cluster_sync();
}

Tensor exchange(int64_t blocks, int64_t threads, int64_t phases, int64_t mode) {
  Tensor out = at::full({phases, blocks}, -1.0f);
  FRNN_POISON(out);
  if (blocks > 8) FRNN_ALLOW_NON_PORTABLE_CLUSTER(k_exchange);
  FRNN_LAUNCH_CLUSTER(k_exchange, blocks, threads, blocks, 2 * blocks * sizeof(float),
                      FRNN_CURRENT_STREAM, out.data_ptr<float>(), int(blocks), int(phases),
                      int(mode));
  return out;
}

// The same exchange on mbarriers and st.async (no cluster barrier a phase): buffer and barrier
// p%2; thread 0 arms the barrier for the n words of the phase (mbar_arrive_expect_tx), the first
// n threads st.async the block's value into slot [rank] of every block, and every thread waits
// for the phase (parity p/2 of barrier p%2), then reads. A block reuses buffer k two phases
// later only after every peer's push of the phase between, which each peer issues after its own
// reads of buffer k: the data carry the ordering. out as k_exchange's.
//   mode 0: as described; 1: the wait's parity flipped (returns at once: stale reads);
//   2: the barrier armed for one word too many (a phase that never completes: a deadlock).
__global__ void k_mbar_exchange(float* out, int n, int phases, int mode) {
  FRNN_DYNAMIC_SMEM(unsigned char, smem);
  uint64_t* bar = reinterpret_cast<uint64_t*>(smem);  // [2]
  float* buf = reinterpret_cast<float*>(smem + 16);     // [2][n]
  const unsigned rank = fusedrnn::portable::cluster_rank();
  if (threadIdx.x == 0) {
    fusedrnn::portable::mbar_init(bar, 1);
    fusedrnn::portable::mbar_init(bar + 1, 1);
  }
  fusedrnn::portable::cluster_sync();  // every barrier initialised before any complete-tx
  float v = float(rank + 1);
  for (int p = 0; p < phases; ++p) {
    const int k = p % 2;
    if (threadIdx.x == 0)
      fusedrnn::portable::mbar_arrive_expect_tx(bar + k, unsigned(4 * (n + (mode == 2))));
    if (int(threadIdx.x) < n)
      fusedrnn::portable::st_async(buf + k * n + rank, v, bar + k, unsigned(threadIdx.x));
    fusedrnn::portable::mbar_wait(bar + k, unsigned((p / 2) & 1) ^ unsigned(mode == 1));
    float s = 0.f;
    for (int r = 0; r < n; ++r) s += buf[k * n + r];
    v = float(rank) + s / float(n);
    if (threadIdx.x == 0) out[p * gridDim.x + blockIdx.x] = v;
    __syncthreads();
  }
  fusedrnn::portable::cluster_sync();  // no block exits while a peer may still push to it
}

Tensor mbar_exchange(int64_t blocks, int64_t threads, int64_t phases, int64_t mode) {
  Tensor out = at::full({phases, blocks}, -1.0f);
  FRNN_POISON(out);
  if (blocks > 8) FRNN_ALLOW_NON_PORTABLE_CLUSTER(k_mbar_exchange);
  FRNN_LAUNCH_CLUSTER(k_mbar_exchange, blocks, threads, blocks, 16 + 2 * blocks * sizeof(float),
                      FRNN_CURRENT_STREAM, out.data_ptr<float>(), int(blocks), int(phases),
                      int(mode));
  return out;
}

// mbarrier misuse (simt::Error, undefined in PTX): 0 a wait on a barrier never initialised,
// 1 init with count 0, 2 an arrival in a phase with none pending (count 1, 4 bytes expected,
// two arrivals), 3 a barrier outside shared memory, 4 st.async to a peer without a barrier
// there (its barrier never initialised), 5 mbarrier.init of a peer's barrier (mapped).
__global__ void k_mbar_misuse(int kind) {
  FRNN_DYNAMIC_SMEM(unsigned char, smem);
  uint64_t* bar = reinterpret_cast<uint64_t*>(smem);
  uint64_t local = 0;
  switch (kind) {
    case 0: fusedrnn::portable::mbar_wait(bar, 0); break;
    case 1: fusedrnn::portable::mbar_init(bar, 0); break;
    case 2:
      fusedrnn::portable::mbar_init(bar, 1);
      fusedrnn::portable::mbar_arrive_expect_tx(bar, 4);
      fusedrnn::portable::mbar_arrive_expect_tx(bar, 4);
      break;
    case 3: fusedrnn::portable::mbar_init(&local, 1); break;
    case 4: {
      const unsigned rank = fusedrnn::portable::cluster_rank();
      if (rank == 0) fusedrnn::portable::mbar_init(bar, 1);
      fusedrnn::portable::cluster_sync();
      if (rank == 0) fusedrnn::portable::st_async(reinterpret_cast<float*>(smem + 16), 1.f, bar, 1u);
      fusedrnn::portable::cluster_sync();
      break;
    }
    case 5:
      if (fusedrnn::portable::cluster_rank() == 0)
        fusedrnn::portable::mbar_init(fusedrnn::portable::cluster_map(bar, 1u), 1);
      fusedrnn::portable::cluster_sync();
      break;
  }
}

void mbar_misuse(int64_t kind) {
  const int blocks = kind >= 4 ? 2 : 1;
  FRNN_LAUNCH_CLUSTER(k_mbar_misuse, blocks, 1, blocks, 64,
                      FRNN_CURRENT_STREAM, int(kind));
}

// Rank, size and block index of every block of a launch with cluster dims `cl`:
// out[block linear] = [rank, cluster blocks, blockIdx.x, blockIdx.y, blockIdx.z, the rank
// seen through a peer: the value block (rank+1)%n wrote into its own shared memory].
__global__ void k_ranks(int64_t* out, int n) {
  FRNN_DYNAMIC_SMEM(int, mine);
  const unsigned rank = fusedrnn::portable::cluster_rank();
  if (threadIdx.x == 0) mine[0] = int(rank);
  fusedrnn::portable::cluster_sync();
  const int peer = *fusedrnn::portable::cluster_map(mine, (rank + 1) % unsigned(n));
  fusedrnn::portable::cluster_sync();  // no block exits while a peer may read it
  if (threadIdx.x == 0) {
    const int64_t lin = blockIdx.x + int64_t(gridDim.x) * (blockIdx.y + int64_t(gridDim.y) * blockIdx.z);
    int64_t* o = out + lin * 6;
    o[0] = rank, o[1] = ::simt::cluster_num_blocks(), o[2] = blockIdx.x, o[3] = blockIdx.y;
    o[4] = blockIdx.z, o[5] = peer;
  }
}

dim3 to_dim3(const std::vector<int64_t>& v) {
  TORCH_CHECK(v.size() >= 1 && v.size() <= 3, "a launch dimension has 1 to 3 components");
  return dim3(unsigned(v[0]), v.size() > 1 ? unsigned(v[1]) : 1u,
              v.size() > 2 ? unsigned(v[2]) : 1u);
}

Tensor ranks(std::vector<int64_t> grid, std::vector<int64_t> cluster, int64_t threads) {
  const dim3 g = to_dim3(grid), c = to_dim3(cluster);
  Tensor out = at::full({int64_t(g.x) * g.y * g.z, 6}, -1, at::TensorOptions().dtype(at::kLong));
  ::simt::launch_cluster(k_ranks, g, dim3(unsigned(threads)), 16, c, out.data_ptr<int64_t>(),
                         int(c.x * c.y * c.z));
  return out;
}

// Misuse, each a simt::Error (RuntimeError in Python).
__global__ void k_misuse(int kind, int* sink) {
  FRNN_DYNAMIC_SMEM(int, mine);
  const unsigned rank = fusedrnn::portable::cluster_rank();
  switch (kind) {
    case 0:  // arrive twice
      fusedrnn::portable::cluster_arrive();
      fusedrnn::portable::cluster_arrive();
      break;
    case 1:  // wait without arrive
      fusedrnn::portable::cluster_wait();
      break;
    case 2:  // a rank outside the cluster
      fusedrnn::portable::cluster_map(mine, 2)[0] = 1;
      break;
    case 3:  // an address outside shared memory
      fusedrnn::portable::cluster_map(sink, 1)[0] = 1;
      break;
    case 4:  // a peer that exited: rank 1 arrives and leaves, rank 0 then maps it
      fusedrnn::portable::cluster_arrive();
      if (rank == 1) return;
      fusedrnn::portable::cluster_wait();
      fusedrnn::portable::cluster_map(mine, 1)[0] = 1;
      break;
    case 5:  // a deadlock: rank 1's thread 0 waits at __syncthreads, the rest at the cluster
      if (rank == 1 && threadIdx.x == 0) {
        __syncthreads();
      } else {
        fusedrnn::portable::cluster_sync();
        __syncthreads();
      }
      break;
    case 6:  // exiting threads do not count: rank 1 leaves at once, rank 0 still meets
      if (rank == 1) return;
      fusedrnn::portable::cluster_sync();
      if (threadIdx.x == 0) sink[0] = 7;
      break;
  }
}

int64_t misuse(int64_t kind) {
  int sink[2] = {0, 0};
  FRNN_LAUNCH_CLUSTER(k_misuse, 2, 32, 2, 64, FRNN_CURRENT_STREAM, int(kind), sink);
  return sink[0];
}

// The launch checks: grid, cluster dims, smem, threads as given; nothing runs (an empty kernel).
__global__ void k_empty() {}
__global__ void k_empty_portable() {}

void launch(std::vector<int64_t> grid, std::vector<int64_t> cluster, bool non_portable) {
  auto k = non_portable ? k_empty : k_empty_portable;
  if (non_portable) FRNN_ALLOW_NON_PORTABLE_CLUSTER(k_empty);
  ::simt::launch_cluster(k, to_dim3(grid), dim3(32), 0, to_dim3(cluster));
}

}  // namespace
}  // namespace simt_test

namespace simt {
void bind_cluster_selftests(pybind11::module& m) {
  namespace t = fusedrnn::simt_test;
  using pybind11::arg;
  m.def("_simt_test_cluster_exchange", &t::exchange, arg("blocks"), arg("threads"),
        arg("phases"), arg("mode") = 0);
  m.def("_simt_test_cluster_ranks", &t::ranks, arg("grid"), arg("cluster"), arg("threads") = 32);
  m.def("_simt_test_cluster_misuse", &t::misuse, arg("kind"));
  m.def("_simt_test_mbar_exchange", &t::mbar_exchange, arg("blocks"), arg("threads"),
        arg("phases"), arg("mode") = 0);
  m.def("_simt_test_mbar_misuse", &t::mbar_misuse, arg("kind"));
  m.def("_simt_test_cluster_launch", &t::launch, arg("grid"), arg("cluster"),
        arg("non_portable") = true);
  m.def("_simt_max_cluster_size", [] { return ::simt::max_cluster_size(); });
}
}  // namespace simt
}  // namespace fusedrnn
