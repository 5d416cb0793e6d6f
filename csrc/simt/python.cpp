// Python bindings of the SIMT layer, added to fusedrnn._C (declared in simt/python.h):
// configuration (seed, architecture, workers), counters, and the self-test entry points.
#include "simt/python.h"

#include <pybind11/stl.h>

#include "simt/simt.h"

namespace fusedrnn {

bool simt_built() { return true; }

namespace simt {

void bind_selftests(pybind11::module& m);         // selftest.cpp
void bind_matrix_selftests(pybind11::module& m);  // selftest_matrix.cpp
void bind_cluster_selftests(pybind11::module& m); // selftest_cluster.cpp

void bind_python(pybind11::module& m) {
  using pybind11::arg;
  m.def(
      "simt_set_seed",
      [](std::optional<int64_t> seed) {
        ::simt::set_seed(seed ? std::optional<uint64_t>(uint64_t(*seed)) : std::nullopt);
      },
      arg("seed"),
      "Seeded schedule: threads resume after each barrier in a random order drawn from the seed "
      "(None: in thread order).");
  m.def("simt_get_seed", []() -> std::optional<int64_t> {
    auto s = ::simt::get_seed();
    return s ? std::optional<int64_t>(int64_t(*s)) : std::nullopt;
  });
  m.def("simt_set_arch", &::simt::set_arch, arg("name"),
        "Architecture whose launch limits the SIMT layer enforces: 'sm_80' or 'sm_90'.");
  m.def("simt_get_arch", &::simt::get_arch);
  m.def("simt_set_workers", &::simt::set_workers, arg("n"),
        "OS threads that run blocks in parallel (0: one per core, at least 2).");
  m.def("simt_get_workers", &::simt::get_workers);
  m.def("simt_stats", []() {
    const ::simt::Stats s = ::simt::stats();
    pybind11::dict d;
    d["launches"] = s.launches;
    d["blocks"] = s.blocks;
    d["threads"] = s.threads;
    d["switches"] = s.switches;
    d["block_barriers"] = s.block_barriers;
    d["warp_ops"] = s.warp_ops;
    d["grid_barriers"] = s.grid_barriers;
    d["async_copies"] = s.async_copies;
    d["cluster_barriers"] = s.cluster_barriers;
    d["seconds"] = double(s.nanoseconds) * 1e-9;
    return d;
  }, "Counters of the SIMT layer since the last simt_reset_stats().");
  m.def("simt_reset_stats", &::simt::reset_stats);
  bind_selftests(m);
  bind_matrix_selftests(m);
  bind_cluster_selftests(m);
}

}  // namespace simt
}  // namespace fusedrnn
