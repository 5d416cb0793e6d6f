// Scheduler state of one launch (internal to the SIMT layer; not included by kernels).
//
// Contract: a Launch is shared by its workers (OS threads); a Worker owns the fibers of the blocks
// it runs and is touched only by its own OS thread, except through Launch's atomics and the grid
// barrier's mutex. A fiber only ever runs on the worker that created it. Fibers always switch
// back to their worker's scheduler loop (never fiber to fiber), which picks the next runnable one.
// Barrier bookkeeping (barriers.cpp) runs on the arriving fiber's stack; a barrier that can
// never complete is found by the scheduler loop when nothing is runnable (scheduler.cpp).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "simt/config.h"
#include "simt/launch.h"
#include "simt/warp.h"

namespace simt {
namespace detail {

// Thrown at a fiber's wait point to unwind it when its launch aborts; caught at the fiber's base.
// Not a std::exception, so a kernel's catch (const std::exception&) cannot swallow it.
struct AbortFiber {};

enum class State : uint8_t { Ready, Running, SyncThreads, GridSync, ClusterWait, MbarWait, Warp, Done };

struct Worker;
struct Block;

// A cp.async issued and not yet performed (simt/async_copy.h); group = the thread's commit count
// when it was issued (the next commit closes that group).
struct AsyncCopy {
  void* dst;
  const void* src;
  int bytes, src_bytes;
  uint32_t group;
};

struct Fiber {
  void* sp = nullptr;  // saved context while not running
  char* stack_top = nullptr;
  Worker* worker = nullptr;
  Block* block = nullptr;
  uint3 tid{};
  int warp = 0, lane = 0;
  State state = State::Done;
  bool abort = false;
  // The warp operation or block barrier this fiber waits at, and its result once released.
  WarpOp op = WarpOp::Sync;
  unsigned mask = 0;
  int arg = 0, width = 32;
  uint64_t value = 0;
  uint64_t result = 0;
  // cp.async copies queued by this thread, in issue order, and its commit count.
  std::vector<AsyncCopy> copies;
  uint32_t groups_committed = 0;
  // The cluster barrier phase this thread arrived in and has not waited for, or kNotArrived.
  static constexpr uint64_t kNotArrived = ~uint64_t(0);
  uint64_t cluster_arrived = kNotArrived;
  // The mbarrier (simt/mbarrier.h) this thread sleeps on until its current phase completes.
  const void* mbar = nullptr;
};

struct Warp {
  unsigned exists = 0;   // lanes of a (possibly partial) warp
  unsigned live = 0;     // lanes that exist and have not exited
  unsigned waiting = 0;  // lanes waiting at a warp operation
};

struct Block {
  uint3 idx{};
  uint64_t linear = 0;
  unsigned char* smem = nullptr;
  Fiber* fibers = nullptr;
  int nthreads = 0;
  int at_sync = 0, sync_count = 0, done = 0;
  unsigned cluster_rank = 0;  // rank in its cluster (0 without clusters)
  Warp warps[32];
};

// The cluster a worker runs (all its blocks are the worker's slots): the barrier's phase and
// how many non-exited threads have not arrived in it yet.
struct Cluster {
  unsigned size = 1;
  uint64_t phase = 0;
  int pending = 0, live = 0, waiting = 0;
};

struct Launch {
  LaunchSpec spec;
  Body body;
  int nthreads = 0;  // per block
  uint64_t nblocks = 0;
  unsigned cluster_size = 1;  // blocks per cluster (1: no clusters)
  std::optional<uint64_t> seed;
  std::atomic<uint64_t> next_block{0};
  std::atomic<bool> aborted{false};
  std::mutex err_mu;
  std::exception_ptr error;
  // Cooperative launches: the barrier between workers (each arrives once all its fibers wait).
  std::mutex bar_mu;
  std::condition_variable bar_cv;
  int bar_workers = 0, bar_arrived = 0, bar_finished = 0;
  uint64_t bar_gen = 0;

  void record(std::exception_ptr e);  // first error wins; sets aborted
  void fail(std::exception_ptr e);    // record + wake workers waiting at the grid barrier
};

struct Worker {
  Launch* launch = nullptr;
  int index = 0;
  void* sched_sp = nullptr;
  std::vector<Fiber> fibers;
  std::vector<Block> blocks;
  std::vector<char*> stacks;
  std::vector<unsigned char> smem_storage;
  size_t smem_stride = 0;
  std::vector<Fiber*> runq;
  size_t head = 0;
  bool seeded = false;
  uint64_t rng = 0;
  int live = 0, at_grid = 0, exited = 0;
  Cluster cluster;
  Stats stats;

  void push(Fiber* f) { runq.push_back(f); }
  Fiber* pop();
  void resume(Fiber* f);
};

extern thread_local Fiber* tls_fiber __attribute__((visibility("hidden")));

Fiber* current_fiber(const char* what);      // throws when called outside a kernel
void yield(Fiber* f);                        // back to the scheduler; throws AbortFiber on abort
void on_exit(Fiber* f);                      // bookkeeping when a kernel thread returns
void cluster_on_exit(Fiber* f);              // its part in the cluster barrier (cluster.cpp)
std::string describe_deadlock(Worker& w);    // why nothing is runnable (barrier disagreement)
const char* op_name(WarpOp op);
void perform_copies(Fiber* f, uint32_t below_group);  // cp.async groups < below_group (async_copy.cpp)

inline uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace detail
}  // namespace simt
