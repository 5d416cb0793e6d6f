// Block barriers, warp rendezvous, the grid barrier's fiber side, and dynamic shared memory.
// Runs on the calling fiber's stack; see scheduler.h for the model.
#include <chrono>
#include <sstream>

#include "simt/fiber.h"
#include "simt/scheduler.h"

namespace simt {
namespace detail {

thread_local Fiber* tls_fiber = nullptr;

Fiber* current_fiber(const char* what) {
  Fiber* f = tls_fiber;
  if (!f) throw Error(std::string("simt: ") + what + " called outside a kernel launched by simt::launch");
  return f;
}

void yield(Fiber* f) {
  switch_context(&f->sp, f->worker->sched_sp);
  if (f->abort) throw AbortFiber{};
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::Sync: return "__syncwarp";
    case WarpOp::ShflIdx: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::Ballot: return "__ballot_sync";
    case WarpOp::Any: return "__any_sync";
    case WarpOp::All: return "__all_sync";
    case WarpOp::Collective: return "a warp-collective instruction (mma.sync/ldmatrix)";
  }
  return "?";
}

namespace {

std::string where(const Fiber& f) {
  std::ostringstream s;
  s << "thread (" << f.tid.x << "," << f.tid.y << "," << f.tid.z << ") of block (" << f.block->idx.x
    << "," << f.block->idx.y << "," << f.block->idx.z << ")";
  return s.str();
}

std::string hex(unsigned m) {
  char buf[16];
  snprintf(buf, sizeof buf, "0x%08x", m);
  return buf;
}

// Source lane of a shuffle per PTX shfl.sync; returns -1 when the caller keeps its own value.
int shfl_source(WarpOp op, int lane, int arg, int width) {
  const int b = arg & 31;
  const int lo = lane & ~(width - 1), hi = lo + width - 1;  // the lane's width segment
  switch (op) {
    case WarpOp::ShflIdx: return lo | (b & (width - 1));
    case WarpOp::ShflUp: return lane - b >= lo ? lane - b : -1;
    case WarpOp::ShflDown: return lane + b <= hi ? lane + b : -1;
    case WarpOp::ShflXor: return (lane ^ b) <= hi ? (lane ^ b) : -1;
    default: return -1;
  }
}

// All non-exited lanes of `group` wait at a warp operation: check they agree, compute every
// lane's result from the posted values, release them. Returns an error message or "".
std::string complete_group(Block& b, int warp, unsigned group) {
  Warp& wp = b.warps[warp];
  Fiber* lanes = b.fibers + warp * 32;
  const Fiber& first = lanes[__builtin_ctz(group)];
  unsigned ballot = 0;
  auto name = [](const Fiber& f) -> std::string {
    return f.op == WarpOp::Collective ? reinterpret_cast<const Collective*>(f.value)->name
                                      : op_name(f.op);
  };
  for (unsigned g = group; g; g &= g - 1) {
    const Fiber& f = lanes[__builtin_ctz(g)];
    if (f.op != first.op || f.mask != first.mask || f.width != first.width ||
        (f.op == WarpOp::Collective &&
         reinterpret_cast<const Collective*>(f.value)->run !=
             reinterpret_cast<const Collective*>(first.value)->run)) {
      std::ostringstream s;
      s << "simt: lanes of warp " << warp << " in block (" << b.idx.x << "," << b.idx.y << ","
        << b.idx.z << ") disagree about a warp operation: lane " << first.lane << " is at "
        << name(first) << "(mask " << hex(first.mask) << ", width " << first.width
        << "), lane " << f.lane << " at " << name(f) << "(mask " << hex(f.mask)
        << ", width " << f.width << ")";
      return s.str();
    }
    if (f.value) ballot |= 1u << f.lane;
  }
  if (first.op == WarpOp::Collective) {
    Collective* parts[32] = {};
    for (unsigned g = group; g; g &= g - 1) {
      const Fiber& f = lanes[__builtin_ctz(g)];
      parts[f.lane] = reinterpret_cast<Collective*>(f.value);
    }
    try {
      parts[first.lane]->run(parts);
    } catch (const Error& e) {
      return std::string(e.what()) + " (warp " + std::to_string(warp) + " of block (" +
             std::to_string(b.idx.x) + "," + std::to_string(b.idx.y) + "," +
             std::to_string(b.idx.z) + "))";
    }
  }
  for (unsigned g = group; g; g &= g - 1) {
    Fiber& f = lanes[__builtin_ctz(g)];
    switch (f.op) {
      case WarpOp::Sync: f.result = 0; break;
      case WarpOp::Ballot: f.result = ballot; break;
      case WarpOp::Any: f.result = ballot != 0; break;
      case WarpOp::All: f.result = ballot == group; break;
      case WarpOp::Collective: f.result = 0; break;
      default: {
        int src = shfl_source(f.op, f.lane, f.arg, f.width);
        if (src < 0) f.result = f.value;
        else if (group >> src & 1) f.result = lanes[src].value;
        else f.result = ~uint64_t(0);  // source lane not taking part: undefined in CUDA
      }
    }
  }
  wp.waiting &= ~group;
  for (unsigned g = group; g; g &= g - 1) {
    Fiber& f = lanes[__builtin_ctz(g)];
    f.state = State::Ready;
    f.worker->push(&f);
  }
  lanes[0].worker->stats.warp_ops++;
  return {};
}

uint64_t block_barrier(int predicate, const char* what) {
  Fiber* f = current_fiber(what);
  Block& b = *f->block;
  f->state = State::SyncThreads;
  b.sync_count += predicate != 0;
  if (++b.at_sync == b.nthreads) {
    const int count = b.sync_count;
    b.at_sync = b.sync_count = 0;
    for (int t = 0; t < b.nthreads; ++t) {
      Fiber& g = b.fibers[t];
      g.result = count;
      g.state = State::Ready;
      f->worker->push(&g);
    }
    f->worker->stats.block_barriers++;
  }
  yield(f);
  return f->result;
}

}  // namespace

uint64_t warp_op(WarpOp op, unsigned mask, uint64_t value, int arg, int width) {
  Fiber* f = current_fiber(op_name(op));
  if (!(mask >> f->lane & 1))
    throw Error("simt: " + std::string(op_name(op)) + " called by " + where(*f) + " (lane " +
                std::to_string(f->lane) + ") with mask " + hex(mask) + " that does not include it");
  if (width < 1 || width > 32 || (width & (width - 1)))
    throw Error("simt: " + std::string(op_name(op)) + " width " + std::to_string(width) +
                " is not a power of two in [1, 32]");
  Block& b = *f->block;
  Warp& wp = b.warps[f->warp];
  f->op = op;
  f->mask = mask;
  f->value = value;
  f->arg = arg;
  f->width = width;
  f->state = State::Warp;
  wp.waiting |= 1u << f->lane;
  const unsigned group = mask & wp.live;
  if ((group & ~wp.waiting) == 0) {
    std::string err = complete_group(b, f->warp, group);
    if (!err.empty()) {
      wp.waiting &= ~(1u << f->lane);
      f->state = State::Running;
      throw Error(err);
    }
  }
  yield(f);
  return f->result;
}

void warp_collective(unsigned mask, Collective* mine) {
  warp_op(WarpOp::Collective, mask, reinterpret_cast<uint64_t>(mine), 0, warpSize);
}

unsigned active_mask() {
  Fiber* f = current_fiber("__activemask");
  return f->block->warps[f->warp].exists;
}

void on_exit(Fiber* f) {
  if (!f->copies.empty() && !f->abort) perform_copies(f, UINT32_MAX);  // the hardware completes them
  Worker& w = *f->worker;
  Block& b = *f->block;
  Warp& wp = b.warps[f->warp];
  f->state = State::Done;
  w.live--;
  w.exited++;
  b.done++;
  wp.live &= ~(1u << f->lane);
  wp.waiting &= ~(1u << f->lane);
  if (!w.launch->spec.cooperative) cluster_on_exit(f);
  // Lanes waiting for this one at a warp operation now meet without it (it has exited).
  for (unsigned pending = wp.waiting; pending;) {
    const Fiber& g = b.fibers[f->warp * 32 + __builtin_ctz(pending)];
    const unsigned group = g.mask & wp.live;
    pending &= ~(group | (1u << g.lane));
    if ((group & ~wp.waiting) == 0) {
      std::string err = complete_group(b, f->warp, group);
      if (!err.empty()) {
        w.launch->fail(std::make_exception_ptr(Error(err)));
        return;
      }
    }
  }
}

}  // namespace detail

void* dynamic_smem() { return detail::current_fiber("dynamic_smem")->block->smem; }

void poll_pause(long long& polls, const char* what) {
  detail::Fiber* f = detail::current_fiber(what);
  // polls: the wait's start (steady-clock ns). 30 s is far beyond any legitimate wait (the
  // storing threads run on the other workers or get this worker's turns), also on a loaded
  // 2-core machine.
  const long long now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
  if (polls == 0)
    polls = now;
  else if (now - polls > 30000000000LL)
    throw Error(std::string("simt: ") + what + " polled for 30 s without its word arriving "
                "(a deadlock: no thread will store it)");
  f->state = detail::State::Ready;
  f->worker->push(f);
  detail::yield(f);
}

void grid_sync() {
  detail::Fiber* f = detail::current_fiber("grid_sync");
  if (!f->worker->launch->spec.cooperative)
    throw Error("simt: grid_sync (FRNN_GRID_SYNC) called in a launch that is not cooperative; "
                "launch with FRNN_LAUNCH_COOPERATIVE");
  f->state = detail::State::GridSync;
  f->worker->at_grid++;
  detail::yield(f);
}

}  // namespace simt

void __syncthreads() { simt::detail::block_barrier(1, "__syncthreads"); }
int __syncthreads_count(int p) { return (int)simt::detail::block_barrier(p, "__syncthreads_count"); }
int __syncthreads_and(int p) {
  simt::detail::Fiber* f = simt::detail::current_fiber("__syncthreads_and");
  int n = f->block->nthreads;
  return (int)simt::detail::block_barrier(p, "__syncthreads_and") == n;
}
int __syncthreads_or(int p) { return simt::detail::block_barrier(p, "__syncthreads_or") != 0; }

void __trap() {
  simt::detail::Fiber* f = simt::detail::current_fiber("__trap");
  throw simt::Error("simt: __trap() called by " + simt::detail::where(*f));
}
