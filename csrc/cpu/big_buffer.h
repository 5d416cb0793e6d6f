// Large CPU buffers of the CPU backend: huge pages and a small cache of freed buffers.
//
// alloc_big(bytes): 64-byte aligned memory, released with free_big (null when out of memory).
//   From 1 MB up it is a huge-page buffer (2 MB-aligned, MADV_HUGEPAGE: transparent huge pages
//   in "madvise" mode), taken from the cache of buffers freed by earlier calls when one of a
//   buffer of the same (2 MB-rounded) size is there, and free_big returns it to the cache if
//   its size recurs: requested by the same op in two calls at most 8 op calls apart (a loop
//   over the same shapes); other buffers are unmapped at once, and cached ones not taken
//   within 4 op calls too. At most FUSEDRNN_CPU_CACHE_MB megabytes are cached (default an
//   eighth of the physical memory, at least 512; 0 disables the cache), buffers of any size.
//   Thread-safe.
//   "The same op" means the same op kind and, for buffers sized by the activations, the same
//   call shape (BufferScope's shape): sizes that only coincide between different shapes (the
//   gates of T=20 and the output of T=80 at equal B) do not make a buffer recur, so a loop whose
//   shapes vary keeps only the buffers sized by the weights (WeightBuffers).
// BufferScope(op, shape): RAII, one op call (op: a small id per op kind; shape: a key of the
//   call's activation shapes, shape_key), around each CPU op; big allocations outside any scope
//   are never cached. Scopes nest (the inner one counts).
// WeightBuffers: RAII on the calling thread; big buffers allocated on this thread while one
//   lives are sized by the weights alone (packed weights, weight gradients), so they recur
//   across calls of any shape.
// shape_key(tensors): a key of the sizes of the given tensors (undefined ones count too).
// cache_stats(): {cached bytes, sizes now recurring, bytes handed out and not freed, the size of
//   every cached buffer, the most bytes handed out and not freed at once since reset_peak(),
//   the limit}
//   (tests, benchmarks; sizes as mapped, from 1 MB up, rounded to 2 MB).
// BigBuffer: a unique_ptr that releases with free_big.
// empty_big(sizes, options): an uninitialised tensor like at::empty; from 1 MB up on the CPU its
//   memory comes from alloc_big (smaller ones from at::empty).
//
// Why: glibc serves big sizes with a fresh mmap every call, and the kernel clears each new page
// on first touch, on the calling thread: at T=100 B=64 H=512 an LSTM forward allocates ~80 MB
// (y, gates, cells) and spent 2% of its time in page clearing on one thread, 6% on two (where
// the rest runs in parallel). Huge pages fault once per 2 MB instead of once per 4 KB, and the
// hardware prefetchers stop at page boundaries, so streams over packed weights run faster too.
// Tensors of 1-4 MB (the weight gradients at H = 512) went to glibc until this threshold came
// down from 4 MB: in a training loop of single steps (GRU T=1 B=1 H=512) glibc handed their
// pages back and faulted them in again every call, 1350 -> 530 us per step with the cache.
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

namespace fusedrnn {
namespace cpu {

void* alloc_big(size_t bytes);
void free_big(void* p);
class BufferScope {
 public:
  BufferScope(int op, uint64_t shape);
  ~BufferScope();
  BufferScope(const BufferScope&) = delete;
  BufferScope& operator=(const BufferScope&) = delete;

 private:
  int prev_op_;
  uint64_t prev_call_, prev_shape_;
};
class WeightBuffers {
 public:
  WeightBuffers();
  ~WeightBuffers();
  WeightBuffers(const WeightBuffers&) = delete;
  WeightBuffers& operator=(const WeightBuffers&) = delete;

 private:
  bool prev_;
};
uint64_t shape_key(std::initializer_list<const at::Tensor*> tensors);
struct CacheStats {
  size_t cached, recurring, live;
  std::vector<size_t> sizes;
  size_t peak;
  size_t limit;  // the most bytes the cache may hold
};
CacheStats cache_stats();
void reset_peak();
struct FreeBig {
  void operator()(void* p) const { free_big(p); }
};
template <class T>
using BigBuffer = std::unique_ptr<T, FreeBig>;
at::Tensor empty_big(at::IntArrayRef sizes, const at::TensorOptions& opt);

}  // namespace cpu
}  // namespace fusedrnn
