// Large CPU buffers (contract: big_buffer.h).
#include "cpu/big_buffer.h"

#include <sys/mman.h>

#include <cstdlib>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace fusedrnn {
namespace cpu {

namespace {

constexpr size_t kHuge = size_t(2) << 20;
constexpr size_t kMinPooled = size_t(1) << 20;  // alloc_big's threshold
constexpr size_t kMinTensor = size_t(1) << 20;  // empty_big's

size_t cache_limit() {
  static const size_t limit = [] {
    const char* env = std::getenv("FUSEDRNN_CPU_CACHE_MB");
    const long mb = env ? std::strtol(env, nullptr, 10) : 1024;
    return mb > 0 ? size_t(mb) << 20 : size_t(0);
  }();
  return limit;
}

// Freed buffers (oldest first) and the allocated size of every buffer handed out.
struct Pool {
  std::mutex mu;
  std::deque<std::pair<void*, size_t>> free_list;
  size_t cached = 0;
  std::unordered_map<void*, size_t> live;
};

Pool& pool() {
  // Never destroyed: tensors may be freed during static destruction, after a pool with static
  // storage would be gone.
  static Pool* p = new Pool;
  return *p;
}

// A cached buffer of alloc_bytes in [want, 2 * want], or null.
void* take(size_t want) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  auto best = p.free_list.end();
  for (auto it = p.free_list.begin(); it != p.free_list.end(); ++it)
    if (it->second >= want && it->second <= 2 * want &&
        (best == p.free_list.end() || it->second < best->second))
      best = it;
  if (best == p.free_list.end()) return nullptr;
  void* q = best->first;
  p.cached -= best->second;
  p.live.emplace(q, best->second);
  p.free_list.erase(best);
  return q;
}

// false when q is not a pooled buffer
bool give_back(void* q) {
  Pool& p = pool();
  std::vector<void*> drop;
  {
    std::lock_guard<std::mutex> lock(p.mu);
    auto it = p.live.find(q);
    if (it == p.live.end()) return false;
    const size_t bytes = it->second;
    p.live.erase(it);
    const size_t limit = cache_limit();
    if (bytes > limit) {
      drop.push_back(q);
    } else {
      while (p.cached + bytes > limit) {
        drop.push_back(p.free_list.front().first);
        p.cached -= p.free_list.front().second;
        p.free_list.pop_front();
      }
      p.free_list.emplace_back(q, bytes);
      p.cached += bytes;
    }
  }
  for (void* d : drop) std::free(d);
  return true;
}

}  // namespace

void* alloc_big(size_t bytes) {
  if (bytes < kMinPooled) return std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  const size_t alloc = (bytes + kHuge - 1) / kHuge * kHuge;
  if (void* p = take(alloc)) return p;
  void* p = std::aligned_alloc(kHuge, alloc);
  if (!p) return nullptr;
#ifdef MADV_HUGEPAGE
  madvise(p, alloc, MADV_HUGEPAGE);
#endif
  std::lock_guard<std::mutex> lock(pool().mu);
  pool().live.emplace(p, alloc);
  return p;
}

void free_big(void* p) {
  if (p && !give_back(p)) std::free(p);
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
