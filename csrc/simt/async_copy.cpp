// cp.async of the SIMT layer: see simt/async_copy.h. Copies queue on the issuing fiber and are
// performed when a wait (or the thread's exit) retires their group.
#include <cstring>
#include <string>

#include "simt/async_copy.h"
#include "simt/scheduler.h"

namespace simt {
namespace detail {

void perform_copies(Fiber* f, uint32_t below_group) {
  size_t done = 0;
  for (const AsyncCopy& c : f->copies) {
    if (c.group >= below_group) break;  // queued in issue order, so groups ascend
    std::memcpy(c.dst, c.src, c.src_bytes);
    std::memset(static_cast<unsigned char*>(c.dst) + c.src_bytes, 0, c.bytes - c.src_bytes);
    ++done;
  }
  f->copies.erase(f->copies.begin(), f->copies.begin() + done);
}

}  // namespace detail

void cp_async(void* dst, const void* src, int bytes, int src_bytes) {
  detail::Fiber* f = detail::current_fiber("cp.async");
  if (bytes != 4 && bytes != 8 && bytes != 16)
    throw Error("simt: cp.async copies 4, 8 or 16 bytes, not " + std::to_string(bytes));
  if (src_bytes < 0 || src_bytes > bytes)
    throw Error("simt: cp.async src-size " + std::to_string(src_bytes) + " outside [0, " +
                std::to_string(bytes) + "]");
  const auto* d = static_cast<unsigned char*>(dst);
  const unsigned char* lo = f->block->smem;
  const size_t size = f->worker->launch->spec.smem;
  if (d < lo || d + bytes > lo + size)
    throw Error("simt: cp.async destination outside the block's dynamic shared memory (offset " +
                std::to_string((long long)(d - lo)) + " of " + std::to_string(size) + " bytes)");
  if (reinterpret_cast<uintptr_t>(dst) % bytes || reinterpret_cast<uintptr_t>(src) % bytes)
    throw Error("simt: cp.async of " + std::to_string(bytes) +
                " bytes needs source and destination aligned to " + std::to_string(bytes));
  f->copies.push_back({dst, src, bytes, src_bytes, f->groups_committed});
  f->worker->stats.async_copies++;
}

void cp_async_commit() { detail::current_fiber("cp.async.commit_group")->groups_committed++; }

void cp_async_wait(int n) {
  detail::Fiber* f = detail::current_fiber("cp.async.wait_group");
  if (n < 0) throw Error("simt: cp.async.wait_group takes n >= 0");
  const uint32_t c = f->groups_committed;
  detail::perform_copies(f, c > uint32_t(n) ? c - uint32_t(n) : 0);
}

}  // namespace simt
