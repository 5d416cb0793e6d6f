// Warp-level primitives of the SIMT layer (part of simt/simt.h): __syncwarp, shuffles, votes.
//
// Contract (CUDA programming guide / PTX shfl.sync, vote.sync, bar.warp.sync): a warp is 32
// consecutive threads in linear thread order; lane = linear index % 32. Every operation is a
// rendezvous of the non-exited lanes named in `mask`: each lane waits until all of them reached a
// warp operation, then all get their results. The calling lane must be in its mask, the lanes that
// meet must agree on the operation and the mask, and width must be a power of two in [1, 32];
// otherwise simt::Error. Shuffle source lanes follow PTX exactly (idx wraps within the width
// segment, up/down/xor outside the segment return the caller's own value). Reading from a lane
// that is not taking part (outside the mask, exited, or beyond a partial warp) is undefined in
// CUDA; here it returns all bits set (NaN for floats, -1 for ints) so such a bug is visible.
// Values of any trivially copyable type up to 8 bytes (int, unsigned, float, double, long long,
// c10::Half, ...) are exchanged bitwise. __activemask() returns every lane of the warp (fewer in
// a partial last warp): the layer does not track divergence, so a warp counts as converged; lanes
// that have exited are left out of rendezvous anyway, as CUDA leaves out exited threads.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "simt/types.h"

namespace simt {
namespace detail {

enum class WarpOp : uint8_t { Sync, ShflIdx, ShflUp, ShflDown, ShflXor, Ballot, Any, All, Collective };

uint64_t warp_op(WarpOp op, unsigned mask, uint64_t value, int arg, int width);
unsigned active_mask();

// One lane's part in a warp-collective instruction (mma.sync, ldmatrix: simt/matrix.h). When the
// last lane of `mask` arrives, `run` is called once, on that lane's stack, with every lane's part
// (lanes[l] null where lane l does not take part) while the other lanes are suspended, so `in`
// and `out` may point at their locals. run reads every input before it writes any output (an
// output may alias an input), and may throw simt::Error, which fails the launch. The lanes must
// agree on `run` (the instruction) and the mask.
struct Collective {
  void (*run)(Collective* const* lanes);
  const char* name;  // the instruction, for error messages
  const void* in;
  void* out;
};
void warp_collective(unsigned mask, Collective* mine);

template <class T>
inline uint64_t to_bits(const T& v) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                "warp shuffles exchange trivially copyable values of at most 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}

template <class T>
inline T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

}  // namespace detail
}  // namespace simt

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  simt::detail::warp_op(simt::detail::WarpOp::Sync, mask, 0, 0, warpSize);
}

template <class T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize) {
  using namespace simt::detail;
  return from_bits<T>(warp_op(WarpOp::ShflIdx, mask, to_bits(var), srcLane, width));
}

template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned int delta, int width = warpSize) {
  using namespace simt::detail;
  return from_bits<T>(warp_op(WarpOp::ShflUp, mask, to_bits(var), (int)delta, width));
}

template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned int delta, int width = warpSize) {
  using namespace simt::detail;
  return from_bits<T>(warp_op(WarpOp::ShflDown, mask, to_bits(var), (int)delta, width));
}

template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize) {
  using namespace simt::detail;
  return from_bits<T>(warp_op(WarpOp::ShflXor, mask, to_bits(var), laneMask, width));
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
  using namespace simt::detail;
  return (unsigned)warp_op(WarpOp::Ballot, mask, predicate != 0, 0, warpSize);
}

inline int __any_sync(unsigned mask, int predicate) {
  using namespace simt::detail;
  return (int)warp_op(WarpOp::Any, mask, predicate != 0, 0, warpSize);
}

inline int __all_sync(unsigned mask, int predicate) {
  using namespace simt::detail;
  return (int)warp_op(WarpOp::All, mask, predicate != 0, 0, warpSize);
}

inline unsigned __activemask() { return simt::detail::active_mask(); }
