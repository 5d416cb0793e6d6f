// mbarrier objects and st.async of the SIMT layer (see simt/mbarrier.h). A worker runs a whole
// cluster on one OS thread, so a barrier's state needs no atomics: the fibers of every block of
// the cluster reach it from that thread.
#include <string>

#include "simt/scheduler.h"  // first: the standard headers before simt/types.h
#include "simt/mbarrier.h"

namespace simt {
namespace detail {
namespace {

constexpr int64_t kMaxCount = (1 << 20) - 1;  // PTX: arrival and tx counts in 20 bits

// A barrier's 8 bytes: a tag (an initialised barrier, never the 0xFF fill of fresh shared
// memory), the phase parity, pending and expected arrivals (20 bits each) and the tx-count
// (21 bits, two's complement).
struct State64 {
  unsigned phase = 0;
  int64_t pending = 0, expected = 0, tx = 0;
};
constexpr uint64_t kTag = 0x2ull;  // bits 62-63

uint64_t encode(const State64& s) {
  return (kTag << 62) | (uint64_t(s.phase & 1) << 61) | (uint64_t(s.pending) << 41) |
         (uint64_t(s.expected) << 21) | (uint64_t(s.tx) & ((1ull << 21) - 1));
}

State64 decode(uint64_t v, const char* what) {
  if ((v >> 62) != kTag)
    throw Error(std::string("simt: ") + what + " on an mbarrier that was never initialised "
                "(mbarrier.init)");
  State64 s;
  s.phase = unsigned(v >> 61) & 1;
  s.pending = int64_t((v >> 41) & 0xFFFFF);
  s.expected = int64_t((v >> 21) & 0xFFFFF);
  s.tx = int64_t(v & ((1ull << 21) - 1));
  if (s.tx >= (1 << 20)) s.tx -= (1 << 21);
  return s;
}

// The block whose shared memory holds p (the caller's, or a peer's through cluster_map_shared).
Block& owner(Fiber* f, const void* p, const char* what) {
  Worker& w = *f->worker;
  const size_t size = w.launch->spec.smem;
  const auto* q = static_cast<const unsigned char*>(p);
  for (Block& b : w.blocks)
    if (b.smem && q >= b.smem && q + 8 <= b.smem + size) return b;
  throw Error(std::string("simt: ") + what + " of an mbarrier outside shared memory");
}

// The .shared::cta operations (init, arrive, wait) take the caller's own barrier.
void check_own(Fiber* f, const void* p, const char* what) {
  if (&owner(f, p, what) != f->block)
    throw Error(std::string("simt: ") + what + " of a peer block's mbarrier (.shared::cta: the "
                "calling block's own)");
}

void check_aligned(const void* p, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 8)
    throw Error(std::string("simt: ") + what + " of an mbarrier not 8-byte aligned");
}

// Store s; when its phase is complete (no pending arrival, no pending byte) move to the next
// phase and wake the threads sleeping on this one.
void update(Fiber* f, uint64_t* bar, State64 s) {
  if (s.tx < -kMaxCount || s.tx > kMaxCount)
    throw Error("simt: an mbarrier's tx-count left -(2^20-1) .. 2^20-1 (" +
                std::to_string(s.tx) + ")");
  if (s.pending == 0 && s.tx == 0) {
    s.phase ^= 1;
    s.pending = s.expected;
    Worker& w = *f->worker;
    for (Fiber& g : w.fibers)
      if (g.state == State::MbarWait && g.mbar == bar) {
        g.state = State::Ready;
        g.mbar = nullptr;
        w.push(&g);
      }
  }
  *bar = encode(s);
}

}  // namespace
}  // namespace detail

void mbar_init(uint64_t* bar, unsigned count) {
  detail::Fiber* f = detail::current_fiber("mbar_init");
  detail::check_aligned(bar, "mbarrier.init");
  detail::check_own(f, bar, "mbarrier.init");
  if (count < 1 || count > detail::kMaxCount)
    throw Error("simt: mbarrier.init with count " + std::to_string(count) +
                " (expected 1 .. 2^20-1)");
  detail::State64 s;
  s.pending = s.expected = count;
  *bar = detail::encode(s);
}

void mbar_arrive_expect_tx(uint64_t* bar, unsigned bytes) {
  detail::Fiber* f = detail::current_fiber("mbar_arrive_expect_tx");
  detail::check_aligned(bar, "mbarrier.arrive");
  detail::check_own(f, bar, "mbarrier.arrive");
  detail::State64 s = detail::decode(*bar, "mbarrier.arrive");
  if (s.pending == 0)
    throw Error("simt: mbarrier.arrive in a phase with no pending arrival (undefined in PTX)");
  s.tx += int64_t(bytes);
  s.pending--;
  detail::update(f, bar, s);
}

void mbar_complete_tx(uint64_t* bar, unsigned bytes) {
  detail::Fiber* f = detail::current_fiber("st_async");
  detail::check_aligned(bar, "st.async's complete-tx");
  detail::owner(f, bar, "st.async's complete-tx");
  detail::State64 s = detail::decode(*bar, "st.async's complete-tx");
  s.tx -= int64_t(bytes);
  detail::update(f, bar, s);
}

void mbar_wait(uint64_t* bar, unsigned parity) {
  detail::Fiber* f = detail::current_fiber("mbar_wait");
  detail::check_aligned(bar, "mbarrier.try_wait");
  detail::check_own(f, bar, "mbarrier.try_wait");
  // The phase of this parity completed once the current phase's parity differs.
  if (detail::decode(*bar, "mbarrier.try_wait").phase != (parity & 1)) return;
  f->state = detail::State::MbarWait;
  f->mbar = bar;  // woken by the completion of this phase (update)
  detail::yield(f);
}

}  // namespace simt
