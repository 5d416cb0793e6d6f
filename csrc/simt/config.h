// Process-wide configuration and counters of the SIMT layer (part of simt/simt.h).
//
// Contract: settings apply to launches that start after the call; they are safe to change from any
// host thread but not meaningful to change while a launch runs. The counters are cheap (each worker
// adds its tallies once per launch) and meant for tests and micro-benchmarks, not profiling.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace simt {

// Every error of the layer (launch checks, barrier disagreement, misuse). Surfaces in Python as
// RuntimeError (pybind11 and the torch dispatcher both map std::runtime_error to it).
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Schedule mode. nullopt: threads resume in thread order (deterministic). A seed: after each
// barrier (and at the start) runnable threads resume in a random order drawn from the seed and
// the block index, so a missing barrier shows up as a wrong result, reproducibly for that seed.
void set_seed(std::optional<uint64_t> seed);
std::optional<uint64_t> get_seed();

// The architecture whose limits launches are checked against: "sm_80" or "sm_90" (default).
struct Arch {
  const char* name;
  int sms;                        // streaming multiprocessors
  size_t smem_per_block_optin;    // max dynamic shared memory per block after the opt-in
  size_t smem_per_sm;             // shared memory per SM (bounds co-residency)
  int threads_per_sm;             // 2048
  int blocks_per_sm;              // 32
  size_t smem_reserved_per_block; // 1 KB the runtime reserves per block (sm_80+)
};
void set_arch(const std::string& name);
std::string get_arch();
const Arch& arch();
std::vector<std::string> arch_names();
constexpr size_t kDefaultMaxDynamicSmem = 48 * 1024;  // without the opt-in

// OS threads that run blocks (0 = std::thread::hardware_concurrency()).
void set_workers(int n);
int get_workers();

struct Stats {
  uint64_t launches = 0;       // kernel launches completed or failed
  uint64_t blocks = 0;         // blocks started
  uint64_t threads = 0;        // fibers started (CUDA threads)
  uint64_t switches = 0;       // fiber resumes (each is two context switches)
  uint64_t block_barriers = 0; // __syncthreads releases (per block)
  uint64_t warp_ops = 0;       // warp-level rendezvous released (shuffles, votes, __syncwarp)
  uint64_t grid_barriers = 0;  // grid_sync releases (per launch)
  uint64_t async_copies = 0;   // cp.async copies issued (a kernel's shared-memory staging path)
  uint64_t cluster_barriers = 0;  // cluster barrier phases completed (per cluster)
  uint64_t nanoseconds = 0;    // wall time inside launch()
};
Stats stats();
void reset_stats();

}  // namespace simt
