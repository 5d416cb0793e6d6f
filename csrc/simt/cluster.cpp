// Thread-block clusters of the SIMT layer: rank, distributed shared memory and the cluster
// barrier (see simt/cluster.h). The launch and its checks are in scheduler.cpp and limits.cpp.
// A worker runs one cluster at a time with every block in a slot, so the barrier's state is the
// worker's (Worker::cluster) and a peer's shared memory is a slot's.
#include <cstring>
#include <string>

#include "simt/scheduler.h"  // first: the standard headers before simt/types.h
#include "simt/cluster.h"

namespace simt {
namespace detail {

namespace {

// A launch without cluster dims is a cluster of one block (as on the device): the worker's
// state then describes the block it runs.
Cluster& cluster_of(Fiber* f) { return f->worker->cluster; }

// Every non-exited thread arrived: the next phase; release the waiters of this one.
void complete_phase(Worker& w) {
  Cluster& c = w.cluster;
  c.phase++;
  c.pending = c.live;
  w.stats.cluster_barriers++;
  c.waiting = 0;
  for (Fiber& g : w.fibers)
    if (g.state == State::ClusterWait) {
      g.state = State::Ready;
      w.push(&g);
    }
}

}  // namespace

void cluster_on_exit(Fiber* f) {
  Worker& w = *f->worker;
  Cluster& c = w.cluster;
  c.live--;
  // An exited thread no longer counts; its arrival in the current phase (if any) stays counted.
  if (f->cluster_arrived != c.phase) c.pending--;
  if (c.pending == 0 && c.live > 0) complete_phase(w);
  Block& b = *f->block;
  if (b.done == b.nthreads && w.launch->cluster_size > 1)  // gone, and so is its shared memory
    std::memset(b.smem, 0xff, w.launch->spec.smem);
}

}  // namespace detail

unsigned cluster_block_rank() {
  return detail::current_fiber("cluster_block_rank")->block->cluster_rank;
}

unsigned cluster_num_blocks() {
  return detail::current_fiber("cluster_num_blocks")->worker->launch->cluster_size;
}

void* cluster_map_shared(const void* p, unsigned rank) {
  detail::Fiber* f = detail::current_fiber("cluster_map_shared");
  detail::Worker& w = *f->worker;
  const size_t size = w.launch->spec.smem;
  const auto* q = static_cast<const unsigned char*>(p);
  const unsigned char* lo = f->block->smem;
  if (q < lo || q >= lo + size)
    throw Error("simt: cluster_map_shared of an address outside the calling block's dynamic "
                "shared memory");
  if (rank >= w.launch->cluster_size)
    throw Error("simt: cluster_map_shared to rank " + std::to_string(rank) + " of a cluster of " +
                std::to_string(w.launch->cluster_size) + " blocks");
  detail::Block& peer = w.blocks[rank];
  if (peer.done == peer.nthreads)
    throw Error("simt: cluster_map_shared to block rank " + std::to_string(rank) +
                ", which has exited (a block must not exit while its cluster still uses its "
                "shared memory: end with a cluster barrier)");
  return peer.smem + (q - lo);
}

void cluster_arrive() {
  detail::Fiber* f = detail::current_fiber("cluster_arrive");
  if (f->worker->launch->spec.cooperative)
    throw Error("simt: the cluster barrier in a cooperative launch is not supported here");
  detail::Cluster& c = detail::cluster_of(f);
  if (f->cluster_arrived != detail::Fiber::kNotArrived)
    throw Error("simt: barrier.cluster.arrive twice without barrier.cluster.wait in between "
                "(undefined in PTX)");
  f->cluster_arrived = c.phase;
  if (--c.pending == 0) detail::complete_phase(*f->worker);
}

void cluster_wait() {
  detail::Fiber* f = detail::current_fiber("cluster_wait");
  detail::Cluster& c = detail::cluster_of(f);
  if (f->cluster_arrived == detail::Fiber::kNotArrived)
    throw Error("simt: barrier.cluster.wait without a barrier.cluster.arrive before it "
                "(undefined in PTX)");
  if (c.phase == f->cluster_arrived) {  // not all arrived yet
    f->state = detail::State::ClusterWait;
    c.waiting++;
    detail::yield(f);
  }
  f->cluster_arrived = detail::Fiber::kNotArrived;
}

}  // namespace simt
