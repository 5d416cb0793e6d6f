// Large CPU buffers (contract: big_buffer.h).
#include "cpu/big_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <iterator>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace fusedrnn {
namespace cpu {

namespace {

constexpr size_t kHuge = size_t(2) << 20;
constexpr size_t kMinPooled = size_t(1) << 20;  // alloc_big's threshold
constexpr size_t kMinTensor = size_t(1) << 20;  // empty_big's

// FUSEDRNN_CPU_CACHE_MB, else an eighth of the physical memory, at least 512 MB. Only sizes
// that recur are cached, and a cached buffer is one the next call of the loop takes, so the
// limit bounds what a loop keeps mapped between its calls, not its working set. 512 MB for all
// was too little for the loops it exists for: LSTM training at T=100 B=64 H=2048 cycles ~1.5 GB
// of buffers (gates and their gradient 210 MB each, packed weights 64 MB each), and past the
// limit every call faulted the rest in afresh: on the 2-core Xeon (23 GB, two threads) a training
// call took 8.3 s against 7.1 s with 2 GB cached (AVX2), 6.1 s against 5.2 s (AVX-512).
size_t cache_limit() {
  static const size_t limit = [] {
    if (const char* env = std::getenv("FUSEDRNN_CPU_CACHE_MB")) {
      const long mb = std::strtol(env, nullptr, 10);
      return mb > 0 ? size_t(mb) << 20 : size_t(0);
    }
    size_t eighth = 0;
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) eighth = size_t(pages) / 8 * size_t(page);
#endif
    return std::max(size_t(512) << 20, eighth);
  }();
  return limit;
}

// The cache keeps only sizes that recur from call to call. Each op call (BufferScope) has an
// id; a (op kind, call shape, size) triple -- (op kind, size) for the buffers sized by the
// weights -- recurs when it is requested by two different calls at most kCalls calls apart: a loop over the same shapes shows that from its second call on, and from
// its third call on its buffers come from the cache. Freed buffers of other sizes are unmapped
// at once, and a cached buffer not taken within kKeep calls is unmapped too. Shapes that
// change every call (or cycle through many shapes) thus keep nothing: before, every freed
// buffer was kept up to FUSEDRNN_CPU_CACHE_MB and served any request up to half its size,
// which held ~1 GB in such loops.
constexpr uint64_t kCalls = 8;
constexpr uint64_t kKeep = 4;  // op calls a cached buffer waits to be taken before it is unmapped
// Any size may be cached, up to the limit. (Buffers over 64 MB used to be unmapped at once: at
// LSTM T=100 B=64 H=1024, whose gates and their gradient are 105 MB each, a training call then
// spent ~12% of its time clearing fresh huge pages, 1.22 -> 1.16-1.18 s a call with a 512 MB limit;
// the peak resident set did not change, since a cached buffer is one the next call takes.)
std::atomic<int> g_op{0};
std::atomic<uint64_t> g_call{0};  // 0: outside any op call
std::atomic<uint64_t> g_calls{0};
std::atomic<uint64_t> g_shape{0};     // the current call's shape key
thread_local bool t_weights = false;  // inside a WeightBuffers on this thread

struct Cached {
  void* p;
  size_t bytes;
  uint64_t freed_in;  // call id
};

// Buffers sized by the activations recur only within one call shape; those sized by the weights
// (t_weights) within the op kind.
inline uint64_t key(int op, size_t bytes, uint64_t shape) {
  return ((uint64_t(op) << 48) ^ uint64_t(bytes)) + shape * 0x9E3779B97F4A7C15ull;
}

// Freed buffers (oldest first), the mapped size and request key of every buffer handed out,
// and per (op, size) the last call that requested it and whether it recurs.
struct Pool {
  std::mutex mu;
  std::deque<Cached> free_list;
  size_t cached = 0;
  struct Live {
    size_t bytes;
    uint64_t key;
  };
  std::unordered_map<void*, Live> live;
  size_t live_bytes = 0, peak = 0;  // of live; peak since reset_peak (tests, benchmarks)
  void add_live(void* q, size_t bytes, uint64_t k) {
    live.emplace(q, Live{bytes, k});
    live_bytes += bytes;
    peak = std::max(peak, live_bytes);
  }
  std::unordered_map<uint64_t, uint64_t> last_call;  // key -> call id of its last request
  std::unordered_map<uint64_t, uint64_t> recurring;  // key -> call id it last recurred in

  bool recurs(uint64_t k, uint64_t now) const {
    auto it = recurring.find(k);
    return it != recurring.end() && now - it->second <= kCalls;
  }
  // Cached buffers older than kCalls calls, removed (unmapped by the caller, outside the lock);
  // stale history dropped now and then so the maps stay small.
  void evict(uint64_t now, std::vector<std::pair<void*, size_t>>& drop) {
    while (!free_list.empty() && now - free_list.front().freed_in > kKeep) {
      drop.emplace_back(free_list.front().p, free_list.front().bytes);
      cached -= free_list.front().bytes;
      free_list.pop_front();
    }
    if (last_call.size() > 4096) {
      for (auto* m : {&last_call, &recurring})
        for (auto it = m->begin(); it != m->end();)
          it = now - it->second > kCalls ? m->erase(it) : std::next(it);
    }
  }
};

Pool& pool() {
  // Never destroyed: tensors may be freed during static destruction, after a pool with static
  // storage would be gone.
  static Pool* p = new Pool;
  return *p;
}

// Buffers from 1 MB up are mapped directly, 2 MB-aligned, and unmapped when not cached: through
// glibc they came from its heap once its mmap threshold had risen (it does after each large
// free), and glibc kept their pages after free.
void* map_huge(size_t bytes) {
  const size_t span = bytes + kHuge;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t a = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t p = (a + kHuge - 1) / kHuge * kHuge;
  if (p > a) munmap(raw, p - a);
  if (a + span > p + bytes) munmap(reinterpret_cast<void*>(p + bytes), a + span - (p + bytes));
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(p), bytes, MADV_HUGEPAGE);
#endif
  return reinterpret_cast<void*>(p);
}

void unmap_all(const std::vector<std::pair<void*, size_t>>& drop) {
  for (const auto& d : drop) munmap(d.first, d.second);
}

// A cached buffer of exactly `want` mapped bytes, or null; records the request for the
// recurrence of its (op, size) and evicts aged buffers.
void* take(size_t want, uint64_t& k, std::vector<std::pair<void*, size_t>>& drop) {
  Pool& p = pool();
  const uint64_t call = g_call.load(), now = g_calls.load();
  k = key(g_op.load(), want, t_weights ? 0 : g_shape.load());
  std::lock_guard<std::mutex> lock(p.mu);
  if (call != 0) {
    auto it = p.last_call.find(k);
    if (it != p.last_call.end() && it->second != call && call - it->second <= kCalls)
      p.recurring[k] = call;
    p.last_call[k] = call;
  }
  void* q = nullptr;
  for (auto it = p.free_list.begin(); it != p.free_list.end(); ++it) {
    if (it->bytes == want) {
      q = it->p;
      p.cached -= it->bytes;
      p.add_live(q, it->bytes, k);
      p.free_list.erase(it);
      break;
    }
  }
  p.evict(now, drop);
  return q;
}

// false when q is not a pooled buffer
bool give_back(void* q) {
  Pool& p = pool();
  const uint64_t now = g_calls.load();
  std::vector<std::pair<void*, size_t>> drop;
  {
    std::lock_guard<std::mutex> lock(p.mu);
    auto it = p.live.find(q);
    if (it == p.live.end()) return false;
    const auto [bytes, k] = it->second;
    p.live.erase(it);
    p.live_bytes -= bytes;
    if (p.recurs(k, now) && p.cached + bytes <= cache_limit()) {
      p.free_list.push_back({q, bytes, now});
      p.cached += bytes;
    } else {
      drop.emplace_back(q, bytes);
    }
    p.evict(now, drop);
  }
  unmap_all(drop);
  return true;
}

}  // namespace

void* alloc_big(size_t bytes) {
  if (bytes < kMinPooled) return std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  const size_t alloc = (bytes + kHuge - 1) / kHuge * kHuge;
  std::vector<std::pair<void*, size_t>> drop;
  uint64_t k = 0;
  void* p = take(alloc, k, drop);
  unmap_all(drop);
  if (p) return p;
  p = map_huge(alloc);
  if (!p) return nullptr;
  std::lock_guard<std::mutex> lock(pool().mu);
  pool().add_live(p, alloc, k);
  return p;
}

void free_big(void* p) {
  if (p && !give_back(p)) std::free(p);
}

CacheStats cache_stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  size_t live = 0;
  for (const auto& kv : p.live) live += kv.second.bytes;
  size_t recurring = 0;
  for (const auto& kv : p.recurring)
    if (p.recurs(kv.first, g_calls.load())) ++recurring;
  std::vector<size_t> sizes;
  for (const auto& c : p.free_list) sizes.push_back(c.bytes);
  return {p.cached, recurring, live, sizes, p.peak, cache_limit()};
}

void reset_peak() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  p.peak = p.live_bytes;
}

BufferScope::BufferScope(int op, uint64_t shape)
    : prev_op_(g_op.load()), prev_call_(g_call.load()), prev_shape_(g_shape.load()) {
  g_op.store(op);
  g_shape.store(shape);
  g_call.store(++g_calls);
  // Age out what earlier calls left, also when this call allocates nothing big.
  std::vector<std::pair<void*, size_t>> drop;
  {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mu);
    p.evict(g_calls.load(), drop);
  }
  unmap_all(drop);
}

BufferScope::~BufferScope() {
  g_op.store(prev_op_);
  g_call.store(prev_call_);
  g_shape.store(prev_shape_);
}

WeightBuffers::WeightBuffers() : prev_(t_weights) { t_weights = true; }
WeightBuffers::~WeightBuffers() { t_weights = prev_; }

uint64_t shape_key(std::initializer_list<const at::Tensor*> tensors) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a over the sizes, with a separator per tensor
  auto mix = [&h](uint64_t v) { h = (h ^ v) * 0x100000001b3ull; };
  for (const at::Tensor* t : tensors) {
    mix(~uint64_t(0));
    if (t && t->defined())
      for (auto s : t->sizes()) mix(uint64_t(s));
  }
  return h;
}

at::Tensor empty_big(at::IntArrayRef sizes, const at::TensorOptions& opt) {
  int64_t n = 1;
  for (auto s : sizes) n *= s;
  const size_t bytes = size_t(n) * at::elementSize(opt.dtype().toScalarType());
  if (bytes < kMinTensor || !opt.device().is_cpu()) return at::empty(sizes, opt);
  void* p = alloc_big(bytes);
  if (!p) return at::empty(sizes, opt);
  return at::from_blob(p, sizes, [](void* q) { free_big(q); }, opt);
}

}  // namespace cpu
}  // namespace fusedrnn
