// Process-wide settings (seed, architecture, workers) and counters. See config.h.
#include "simt/config.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

namespace simt {

namespace {

// The seed is a pair (has, value) so readers see a consistent value without a lock.
std::atomic<bool> g_has_seed{false};
std::atomic<uint64_t> g_seed{0};
std::mutex g_seed_mu;

const Arch kArchs[] = {
    // name     SMs  smem/block opt-in  smem/SM     threads/SM blocks/SM reserved/block
    {"sm_80", 108, 166912, 167936, 2048, 32, 1024},  // A100: 163 KB / 164 KB
    {"sm_90", 132, 232448, 233472, 2048, 32, 1024},  // H100 SXM: 227 KB / 228 KB
};
std::atomic<int> g_arch{1};
std::atomic<int> g_workers{0};

struct AtomicStats {
  std::atomic<uint64_t> launches{0}, blocks{0}, threads{0}, switches{0}, block_barriers{0},
      warp_ops{0}, grid_barriers{0}, async_copies{0}, cluster_barriers{0}, nanoseconds{0};
} g_stats;

}  // namespace

void set_seed(std::optional<uint64_t> seed) {
  std::lock_guard<std::mutex> lock(g_seed_mu);
  g_seed.store(seed.value_or(0));
  g_has_seed.store(seed.has_value());
}

std::optional<uint64_t> get_seed() {
  std::lock_guard<std::mutex> lock(g_seed_mu);
  if (!g_has_seed.load()) return std::nullopt;
  return g_seed.load();
}

void set_arch(const std::string& name) {
  for (size_t i = 0; i < sizeof(kArchs) / sizeof(kArchs[0]); ++i)
    if (name == kArchs[i].name) return g_arch.store(int(i));
  std::string known;
  for (const std::string& n : arch_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("simt: unknown architecture '" + name + "' (known: " + known + ")");
}

std::string get_arch() { return arch().name; }
const Arch& arch() { return kArchs[g_arch.load()]; }

std::vector<std::string> arch_names() {
  std::vector<std::string> v;
  for (const Arch& a : kArchs) v.push_back(a.name);
  return v;
}

void set_workers(int n) {
  if (n < 0) throw Error("simt: the number of workers must be >= 0 (0 = one per core)");
  g_workers.store(n);
}

int get_workers() {
  int n = g_workers.load();
  if (n > 0) return n;
  // At least two OS threads even on one core, so atomics always see a concurrent writer.
  return std::max(2, int(std::thread::hardware_concurrency()));
}

Stats stats() {
  Stats s;
  s.launches = g_stats.launches.load();
  s.blocks = g_stats.blocks.load();
  s.threads = g_stats.threads.load();
  s.switches = g_stats.switches.load();
  s.block_barriers = g_stats.block_barriers.load();
  s.warp_ops = g_stats.warp_ops.load();
  s.grid_barriers = g_stats.grid_barriers.load();
  s.async_copies = g_stats.async_copies.load();
  s.cluster_barriers = g_stats.cluster_barriers.load();
  s.nanoseconds = g_stats.nanoseconds.load();
  return s;
}

void reset_stats() {
  for (std::atomic<uint64_t>* c :
       {&g_stats.launches, &g_stats.blocks, &g_stats.threads, &g_stats.switches,
        &g_stats.block_barriers, &g_stats.warp_ops, &g_stats.grid_barriers,
        &g_stats.async_copies, &g_stats.cluster_barriers, &g_stats.nanoseconds})
    c->store(0);
}

namespace detail {
void add_stats(const Stats& s) {
  g_stats.launches += s.launches;
  g_stats.blocks += s.blocks;
  g_stats.threads += s.threads;
  g_stats.switches += s.switches;
  g_stats.block_barriers += s.block_barriers;
  g_stats.warp_ops += s.warp_ops;
  g_stats.grid_barriers += s.grid_barriers;
  g_stats.async_copies += s.async_copies;
  g_stats.cluster_barriers += s.cluster_barriers;
  g_stats.nanoseconds += s.nanoseconds;
}
}  // namespace detail

}  // namespace simt
