// Launch execution: workers (OS threads from pool.cpp), the per-worker fiber scheduler loop, the
// grid barrier between workers, and deadlock diagnosis. See scheduler.h for the model.
#include <chrono>
#include <cstring>
#include <sstream>

#include "simt/fiber.h"
#include "simt/pool.h"
#include "simt/scheduler.h"

namespace simt {
namespace detail {

thread_local Builtins tls_builtins{};

void add_stats(const Stats& s);  // config.cpp

void Launch::record(std::exception_ptr e) {
  std::lock_guard<std::mutex> lock(err_mu);
  if (!error) error = e;
  aborted.store(true);
}

void Launch::fail(std::exception_ptr e) {
  record(e);
  { std::lock_guard<std::mutex> lock(bar_mu); }
  bar_cv.notify_all();
}

namespace {

Error grid_disagreement() {
  return Error("simt: threads of the grid disagree about grid_sync: some threads exited while "
               "others wait at grid_sync (every thread of a cooperative launch must reach it)");
}

void fiber_entry(void* p) {
  Fiber* f = static_cast<Fiber*>(p);
  Launch* L = f->worker->launch;
  if (!f->abort) {
    try {
      L->body.call(L->body.obj);
    } catch (const AbortFiber&) {
    } catch (...) {
      L->fail(std::current_exception());
    }
  }
  on_exit(f);
  switch_context(&f->sp, f->worker->sched_sp);
  __builtin_trap();  // a finished fiber is never resumed
}

}  // namespace

Fiber* Worker::pop() {
  if (head == runq.size()) return nullptr;
  if (seeded) {  // a uniformly random runnable fiber: a seeded permutation of each ready set
    size_t j = head + splitmix64(rng) % (runq.size() - head);
    std::swap(runq[head], runq[j]);
  }
  Fiber* f = runq[head++];
  if (head == runq.size()) {  // drained: reuse the storage (a barrier refills it)
    runq.clear();
    head = 0;
  }
  return f;
}

void Worker::resume(Fiber* f) {
  tls_fiber = f;
  tls_builtins.thread_idx = f->tid;
  tls_builtins.block_idx = f->block->idx;
  f->state = State::Running;
  stats.switches++;
  switch_context(&sched_sp, f->sp);
  tls_fiber = nullptr;
}

std::string describe_deadlock(Worker& w) {
  for (Block& b : w.blocks) {
    int sync = 0, grid = 0, warp = 0, cluster = 0, mbar = 0;
    for (int t = 0; t < b.nthreads; ++t) {
      State s = b.fibers[t].state;
      sync += s == State::SyncThreads;
      grid += s == State::GridSync;
      warp += s == State::Warp;
      cluster += s == State::ClusterWait;
      mbar += s == State::MbarWait;
    }
    if (sync + grid + warp + cluster + mbar == 0) continue;
    std::ostringstream m;
    m << "simt: barrier disagreement in block (" << b.idx.x << "," << b.idx.y << "," << b.idx.z
      << "): ";
    if (sync && b.done)
      m << b.done << " threads exited while " << sync
        << " wait at __syncthreads (every thread of the block must reach it)";
    else if (warp) {
      for (int wi = 0; wi * 32 < b.nthreads; ++wi) {
        Warp& wp = b.warps[wi];
        if (!wp.waiting) continue;
        const Fiber& f = b.fibers[wi * 32 + __builtin_ctz(wp.waiting)];
        unsigned missing = f.mask & wp.live & ~wp.waiting;
        m << "lane " << f.lane << " of warp " << wi << " waits at " << op_name(f.op) << " (mask 0x"
          << std::hex << f.mask << std::dec << ") for lanes that never arrive:";
        int shown = 0;
        for (unsigned g = missing; g && shown < 4; g &= g - 1, ++shown) {
          State s = b.fibers[wi * 32 + __builtin_ctz(g)].state;
          m << " lane " << __builtin_ctz(g) << " is at "
            << (s == State::SyncThreads   ? "__syncthreads"
                : s == State::GridSync    ? "grid_sync"
                : s == State::ClusterWait ? "the cluster barrier"
                : s == State::MbarWait    ? "an mbarrier wait"
                                          : "?")
            << ";";
        }
        if (__builtin_popcount(missing) > 4) m << " ...";
        break;
      }
    } else if (mbar && !sync && !grid && !cluster)
      m << mbar << " threads wait on an mbarrier phase that can never complete (arrivals or "
        << "transaction bytes it expects never come)";
    else if (cluster && !sync && !grid)
      m << cluster << " threads wait at the cluster barrier for threads of the cluster that "
        << "never arrive (every thread of every block of the cluster must arrive)";
    else
      m << sync << " threads wait at __syncthreads, " << grid << " at grid_sync, " << cluster
        << " at the cluster barrier, " << mbar << " on an mbarrier, " << b.done
        << " exited; no barrier can complete";
    return m.str();
  }
  return "simt: no thread can proceed (internal scheduler error)";
}

namespace {

// Every fiber of this worker waits at grid_sync: meet the other workers. False on abort/error.
bool grid_arrive(Launch& L) {
  std::unique_lock<std::mutex> lock(L.bar_mu);
  auto disagree = [&] {
    L.record(std::make_exception_ptr(grid_disagreement()));
    L.bar_cv.notify_all();
    return false;
  };
  if (L.bar_finished > 0) return disagree();
  if (++L.bar_arrived == L.bar_workers) {
    L.bar_arrived = 0;
    L.bar_gen++;
    L.bar_cv.notify_all();
    return true;
  }
  const uint64_t gen = L.bar_gen;
  L.bar_cv.wait(lock, [&] { return L.bar_gen != gen || L.bar_finished > 0 || L.aborted.load(); });
  if (L.bar_gen != gen) return true;
  if (!L.aborted.load()) return disagree();
  return false;
}

void grid_finish(Launch& L) {
  std::lock_guard<std::mutex> lock(L.bar_mu);
  L.bar_finished++;
  if (L.bar_arrived > 0) L.record(std::make_exception_ptr(grid_disagreement()));
  L.bar_cv.notify_all();
}

// Unwind every unfinished fiber: each throws AbortFiber at its wait point.
void abort_all(Worker& w) {
  for (Fiber& f : w.fibers) {
    f.abort = true;
    while (f.state != State::Done) w.resume(&f);
  }
  w.runq.clear();
  w.head = 0;
}

// Run this worker's fibers until all exited or the launch aborted.
void run_fibers(Worker& w) {
  Launch& L = *w.launch;
  while (w.live > 0) {
    if (L.aborted.load(std::memory_order_relaxed)) return abort_all(w);
    if (Fiber* f = w.pop()) {
      w.resume(f);
      continue;
    }
    if (w.at_grid > 0 && w.at_grid == w.live && w.exited == 0) {
      if (!grid_arrive(L)) continue;  // aborted: unwound at the top of the loop
      for (Fiber& f : w.fibers)
        if (f.state == State::GridSync) {
          f.state = State::Ready;
          w.push(&f);
        }
      w.at_grid = 0;
      if (w.index == 0) w.stats.grid_barriers++;
      continue;
    }
    if (w.at_grid > 0 && w.at_grid == w.live)
      L.fail(std::make_exception_ptr(grid_disagreement()));
    else
      L.fail(std::make_exception_ptr(Error(describe_deadlock(w))));
  }
}

void start_block(Worker& w, size_t slot, uint64_t linear) {
  Launch& L = *w.launch;
  const dim3 g = L.spec.grid, bd = L.spec.block;
  Block& b = w.blocks[slot];
  b.linear = linear;
  b.idx = uint3{unsigned(linear % g.x), unsigned(linear / g.x % g.y), unsigned(linear / g.x / g.y)};
  b.nthreads = L.nthreads;
  b.at_sync = b.sync_count = b.done = 0;
  b.fibers = &w.fibers[slot * L.nthreads];
  b.smem = w.smem_storage.data() + slot * w.smem_stride;
  b.smem += (16 - reinterpret_cast<uintptr_t>(b.smem) % 16) % 16;
  std::memset(b.smem, 0xff, L.spec.smem);  // uninitialised shared memory reads as NaN / -1
  for (int i = 0; i * 32 < L.nthreads; ++i) {
    int n = std::min(32, L.nthreads - i * 32);
    b.warps[i].exists = b.warps[i].live = n == 32 ? ~0u : (1u << n) - 1;
    b.warps[i].waiting = 0;
  }
  if (w.seeded && !L.spec.cooperative) w.rng = *L.seed ^ (linear * 0xd1b54a32d192ed03ull);
  for (int t = 0; t < L.nthreads; ++t) {
    Fiber& f = b.fibers[t];
    f.worker = &w;
    f.block = &b;
    f.tid = uint3{unsigned(t % bd.x), unsigned(t / bd.x % bd.y), unsigned(t / bd.x / bd.y)};
    f.warp = t / 32;
    f.lane = t % 32;
    f.abort = false;
    f.copies.clear();
    f.groups_committed = 0;
    f.cluster_arrived = Fiber::kNotArrived;
    f.state = State::Ready;
    f.stack_top = w.stacks[slot * L.nthreads + t];
    f.sp = init_context(f.stack_top, &fiber_entry, &f);
    w.push(&f);
  }
  w.live += L.nthreads;
  w.stats.blocks++;
  w.stats.threads += L.nthreads;
}

// One OS thread of the launch: worker t (of n for a cooperative launch; n unused otherwise).
void run_worker(Launch& L, int t, int n) {
  Worker w;
  w.launch = &L;
  w.index = t;
  w.seeded = L.seed.has_value();
  try {
    const bool coop = L.spec.cooperative;
    uint64_t lo = 0, hi = 0;
    if (coop) {
      lo = L.nblocks * t / n;
      hi = L.nblocks * (t + 1) / n;
      std::lock_guard<std::mutex> lock(L.bar_mu);
      L.bar_workers = n;
    }
    const size_t slots = coop ? size_t(hi - lo) : L.cluster_size;
    tls_builtins.block_dim = L.spec.block;
    tls_builtins.grid_dim = L.spec.grid;
    w.fibers.resize(slots * L.nthreads);
    w.blocks.resize(slots);
    w.smem_stride = (L.spec.smem + 16 + 63) / 64 * 64;
    w.smem_storage.resize(slots * w.smem_stride);
    acquire_stacks(slots * L.nthreads, w.stacks);
    if (coop) {
      if (w.seeded) w.rng = *L.seed ^ (uint64_t(t + 1) * 0x9e3779b97f4a7c15ull);
      for (size_t s = 0; s < slots; ++s) start_block(w, s, lo + s);
      run_fibers(w);
      grid_finish(L);
    } else if (L.cluster_size > 1) {
      // A cluster at a time, all its blocks alive at once: block (rank r) of cluster c has
      // index c * cluster + r (dims x fastest, per dimension).
      const dim3 g = L.spec.grid, cl = L.spec.cluster;
      const dim3 gc(g.x / cl.x, g.y / cl.y, g.z / cl.z);
      const uint64_t nclusters = L.nblocks / L.cluster_size;
      for (;;) {
        if (L.aborted.load(std::memory_order_relaxed)) break;
        const uint64_t c = L.next_block.fetch_add(1);
        if (c >= nclusters) break;
        const uint64_t cx = c % gc.x, cy = c / gc.x % gc.y, cz = c / gc.x / gc.y;
        w.cluster = Cluster{L.cluster_size, 0, int(L.cluster_size) * L.nthreads,
                            int(L.cluster_size) * L.nthreads, 0};
        for (unsigned r = 0; r < L.cluster_size; ++r) {
          const uint64_t x = cx * cl.x + r % cl.x, y = cy * cl.y + r / cl.x % cl.y,
                         z = cz * cl.z + r / cl.x / cl.y;
          start_block(w, r, x + g.x * (y + uint64_t(g.y) * z));
          w.blocks[r].cluster_rank = r;
        }
        run_fibers(w);
      }
    } else {
      for (;;) {
        if (L.aborted.load(std::memory_order_relaxed)) break;
        uint64_t linear = L.next_block.fetch_add(1);
        if (linear >= L.nblocks) break;
        w.cluster = Cluster{1, 0, L.nthreads, L.nthreads, 0};  // the implicit cluster of one
        start_block(w, 0, linear);
        run_fibers(w);
      }
    }
  } catch (...) {
    L.fail(std::current_exception());
  }
  if (!w.stacks.empty()) release_stacks(w.stacks);
  add_stats(w.stats);
}

}  // namespace

void run(const LaunchSpec& spec, Body body) {
  if (tls_fiber)
    throw Error("simt: launching a kernel from inside a kernel (dynamic parallelism) is not supported");
  check_launch(spec);
  const auto t0 = std::chrono::steady_clock::now();
  Launch L;
  L.spec = spec;
  L.body = body;
  L.nthreads = int(spec.block.x * spec.block.y * spec.block.z);
  L.nblocks = uint64_t(spec.grid.x) * spec.grid.y * spec.grid.z;
  L.cluster_size = spec.cluster.x * spec.cluster.y * spec.cluster.z;
  L.seed = get_seed();
  const int team =
      int(std::min<uint64_t>(uint64_t(get_workers()), L.nblocks / L.cluster_size));
  run_parallel([&L](int index, int count) { run_worker(L, index, count); }, team,
               spec.cooperative);
  Stats s;
  s.launches = 1;
  s.nanoseconds = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now() - t0).count());
  add_stats(s);
  if (L.error) std::rethrow_exception(L.error);
}

}  // namespace detail
}  // namespace simt
