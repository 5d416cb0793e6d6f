// Launch checks as the device makes them, and the dynamic shared memory opt-in. See launch.h.
// Each failure is a simt::Error whose message names the violated limit and the offending value.
#include <algorithm>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "simt/cluster.h"
#include "simt/launch.h"

namespace simt {

namespace {

std::mutex g_optin_mu;
std::unordered_map<const void*, size_t> g_optin;  // kernel -> MaxDynamicSharedMemorySize
std::unordered_set<const void*> g_non_portable;   // kernels allowed clusters above 8 blocks

// Clusters (sm_90): 8 blocks portable, 16 with the non-portable opt-in. (A block fits on an SM
// whenever the checks above pass, so 16 of them fit on a GPC's SMs: no further residency check.)
constexpr unsigned kPortableCluster = 8, kMaxCluster = 16;
bool has_clusters(const Arch& a) { return std::string(a.name) == "sm_90"; }

size_t max_dynamic_smem(const void* kernel) {
  std::lock_guard<std::mutex> lock(g_optin_mu);
  auto it = g_optin.find(kernel);
  return it == g_optin.end() ? kDefaultMaxDynamicSmem : it->second;
}

[[noreturn]] void invalid(const std::string& what) { throw Error("simt: invalid launch: " + what); }

std::string str(dim3 d) {
  std::ostringstream s;
  s << "(" << d.x << "," << d.y << "," << d.z << ")";
  return s.str();
}

}  // namespace

void set_max_dynamic_smem(const void* kernel, size_t bytes) {
  const Arch& a = arch();
  if (bytes > a.smem_per_block_optin)
    throw Error("simt: FRNN_SET_MAX_DYNAMIC_SMEM(" + std::to_string(bytes) + " bytes) exceeds the " +
                a.name + " opt-in limit of " + std::to_string(a.smem_per_block_optin) +
                " bytes of shared memory per block");
  std::lock_guard<std::mutex> lock(g_optin_mu);
  g_optin[kernel] = bytes;
}

void allow_non_portable_cluster(const void* kernel) {
  std::lock_guard<std::mutex> lock(g_optin_mu);
  g_non_portable.insert(kernel);
}

int max_cluster_size() { return has_clusters(arch()) ? int(kMaxCluster) : 0; }

namespace detail {

void check_launch(const LaunchSpec& s) {
  const dim3 g = s.grid, b = s.block;
  if (!b.x || !b.y || !b.z) invalid("blockDim " + str(b) + " has a zero dimension (zero-sized block)");
  if (!g.x || !g.y || !g.z) invalid("gridDim " + str(g) + " has a zero dimension (zero-sized grid)");
  if (b.x > 1024) invalid("blockDim.x = " + std::to_string(b.x) + " exceeds the limit of 1024");
  if (b.y > 1024) invalid("blockDim.y = " + std::to_string(b.y) + " exceeds the limit of 1024");
  if (b.z > 64) invalid("blockDim.z = " + std::to_string(b.z) + " exceeds the limit of 64");
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (threads > 1024)
    invalid("blockDim " + str(b) + " has " + std::to_string(threads) +
            " threads, above the limit of 1024 threads per block");
  if (g.x > 2147483647u)
    invalid("gridDim.x = " + std::to_string(g.x) + " exceeds the limit of 2^31-1 (2147483647)");
  if (g.y > 65535) invalid("gridDim.y = " + std::to_string(g.y) + " exceeds the limit of 65535");
  if (g.z > 65535) invalid("gridDim.z = " + std::to_string(g.z) + " exceeds the limit of 65535");

  const Arch& a = arch();
  const size_t limit = max_dynamic_smem(s.kernel);
  if (s.smem > a.smem_per_block_optin)
    invalid("dynamic shared memory of " + std::to_string(s.smem) + " bytes exceeds the " + a.name +
            " limit of " + std::to_string(a.smem_per_block_optin) + " bytes per block");
  if (s.smem > limit) {
    if (limit == kDefaultMaxDynamicSmem)
      invalid("dynamic shared memory of " + std::to_string(s.smem) +
              " bytes exceeds the default limit of 49152 bytes (48 KB) per block; opt in with "
              "FRNN_SET_MAX_DYNAMIC_SMEM");
    invalid("dynamic shared memory of " + std::to_string(s.smem) +
            " bytes exceeds the kernel's opted-in maximum of " + std::to_string(limit) +
            " bytes (FRNN_SET_MAX_DYNAMIC_SMEM)");
  }

  const dim3 c = s.cluster;
  const uint64_t csize = uint64_t(c.x) * c.y * c.z;
  if (csize != 1) {
    if (!c.x || !c.y || !c.z) invalid("cluster dims " + str(c) + " have a zero dimension");
    if (!has_clusters(a))
      invalid(std::string("thread-block clusters need sm_90; the configured architecture is ") +
              a.name);
    if (s.cooperative) invalid("a cooperative launch with clusters is not supported here");
    if (g.x % c.x || g.y % c.y || g.z % c.z)
      invalid("gridDim " + str(g) + " is not a multiple of the cluster dims " + str(c));
    bool non_portable;
    {
      std::lock_guard<std::mutex> lock(g_optin_mu);
      non_portable = g_non_portable.count(s.kernel) > 0;
    }
    if (csize > kMaxCluster)
      invalid("a cluster of " + std::to_string(csize) + " blocks exceeds the " + a.name +
              " maximum of 16");
    if (csize > kPortableCluster && !non_portable)
      invalid("a cluster of " + std::to_string(csize) +
              " blocks exceeds the portable size of 8; opt in with "
              "cudaFuncAttributeNonPortableClusterSizeAllowed (FRNN_ALLOW_NON_PORTABLE_CLUSTER)");
  }

  if (s.cooperative) {
    // Co-residency as cudaOccupancyMaxActiveBlocksPerMultiprocessor computes it, without
    // registers: threads in whole warps, the per-SM block cap, shared memory incl. the 1 KB
    // the runtime reserves per block.
    const uint64_t warps = (threads + 31) / 32;
    const uint64_t by_threads = a.threads_per_sm / (warps * 32);
    const uint64_t by_smem = a.smem_per_sm / (s.smem + a.smem_reserved_per_block);
    const uint64_t per_sm = std::min<uint64_t>({by_threads, uint64_t(a.blocks_per_sm), by_smem});
    const uint64_t capacity = per_sm * a.sms;
    const uint64_t blocks = uint64_t(g.x) * g.y * g.z;
    if (blocks > capacity) {
      const char* why = per_sm == by_threads ? "threads per SM (2048)"
                        : per_sm == uint64_t(a.blocks_per_sm) ? "blocks per SM (32)"
                                                               : "shared memory per SM";
      std::ostringstream m;
      m << "cooperative launch of " << blocks << " blocks exceeds the co-resident capacity of "
        << a.name << ": " << a.sms << " SMs x " << per_sm << " blocks per SM = " << capacity
        << " (limited by " << why << "; block of " << threads << " threads, " << s.smem
        << " bytes of dynamic shared memory)";
      invalid(m.str());
    }
  }
}

}  // namespace detail
}  // namespace simt
