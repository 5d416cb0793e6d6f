// mbarrier objects with transaction counts and st.async (sm_90) in the SIMT layer, with the
// semantics of the PTX ISA ("Parallel Synchronization and Communication Instructions: mbarrier",
// st.async). Not part of simt/simt.h: kernels reach it through csrc/cuda/cluster.h, which maps
// the same calls to PTX under nvcc.
//
// Contract (bar: an 8-byte aligned uint64_t in the calling block's dynamic shared memory; a
// peer's barrier, mapped, only through st_async: simt::Error otherwise):
//   mbar_init(bar, count)   mbarrier.init: phase 0, count (1 .. 2^20-1) pending arrivals,
//       tx-count 0. simt::Error for a count out of range or bar outside shared memory.
//   mbar_arrive_expect_tx(bar, bytes)   mbarrier.arrive.expect_tx: tx-count += bytes (the
//       expect-tx operation), then one arrival. The phase completes when its pending arrivals
//       are 0 and its tx-count is 0: the parity flips, pending = count, tx-count = 0.
//       simt::Error for an arrival in a phase with no pending arrival, or a tx-count out of
//       -(2^20-1) .. 2^20-1.
//   mbar_wait(bar, parity)   mbarrier.try_wait.parity in a loop: returns once the phase of
//       that parity completed (the barrier's current parity differs); the fiber sleeps until
//       then. A wait that can never complete (nothing else runnable) is reported like a
//       barrier disagreement.
//   st_async(dst, value, bar, rank)   st.async.shared::cluster.mbarrier::complete_tx::bytes:
//       stores value (4, 8 or 16 bytes) at dst and bar mapped into block `rank` of the cluster
//       (both given as the caller's addresses, as mapa takes them), then a complete-tx of
//       sizeof(value) bytes on that block's barrier (tx-count -= bytes, which may complete its
//       phase; a complete-tx before the expect-tx leaves the count negative, as in PTX).
// The state lives in the barrier's 8 bytes (phase bit, pending and expected arrivals, tx-count),
// so an uninitialised barrier (shared memory starts as 0xFF bytes) is refused as such.
#pragma once

#include <cstdint>
#include <cstring>

#include "simt/cluster.h"

namespace simt {

void mbar_init(uint64_t* bar, unsigned count);
void mbar_arrive_expect_tx(uint64_t* bar, unsigned bytes);
void mbar_wait(uint64_t* bar, unsigned parity);
// the complete-tx of `bytes` on a barrier already mapped into its block (st_async below)
void mbar_complete_tx(uint64_t* mapped_bar, unsigned bytes);

template <class T>
void st_async(T* dst, const T& value, uint64_t* bar, unsigned rank) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8 || sizeof(T) == 16,
                "st.async stores 4, 8 or 16 bytes");
  void* d = cluster_map_shared(dst, rank);
  auto* b = static_cast<uint64_t*>(cluster_map_shared(bar, rank));
  std::memcpy(d, &value, sizeof(T));
  mbar_complete_tx(b, unsigned(sizeof(T)));
}

}  // namespace simt
