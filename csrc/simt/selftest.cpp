// Python entry points (_simt_test_*) that launch the self-test kernels of selftest_kernels.h.
// For tests/test_simt*.py only; not part of the public API. Inputs are CPU tensors.
#include <chrono>

#include <pybind11/stl.h>
#include <torch/extension.h>

#include "simt/selftest_kernels.h"

namespace fusedrnn {
namespace simt_test {
namespace {

namespace py = pybind11;
using at::Tensor;

dim3 to_dim3(const std::vector<int64_t>& v) {
  TORCH_CHECK(v.size() >= 1 && v.size() <= 3, "a launch dimension has 1 to 3 components");
  return dim3(unsigned(v[0]), v.size() > 1 ? unsigned(v[1]) : 1u, v.size() > 2 ? unsigned(v[2]) : 1u);
}

Tensor reduce(const Tensor& x, int64_t threads) {
  Tensor in = x.contiguous();
  const int64_t blocks = in.numel() / threads;
  Tensor out = at::empty({blocks}, in.options());
  FRNN_POISON(out);
  FRNN_LAUNCH(k_reduce, blocks, threads, threads * sizeof(float), FRNN_CURRENT_STREAM,
              in.data_ptr<float>(), out.data_ptr<float>());
  return out;
}

Tensor rotate(const Tensor& x, int64_t threads, int64_t rounds, bool skip_second_sync) {
  Tensor in = x.contiguous(), out = at::full_like(in, -1);
  FRNN_LAUNCH(k_rotate, in.numel() / threads, threads, threads * sizeof(int), FRNN_CURRENT_STREAM,
              in.data_ptr<int>(), out.data_ptr<int>(), int(rounds), skip_second_sync);
  return out;
}

Tensor neighbor(const Tensor& x, int64_t threads, bool skip_sync) {
  Tensor in = x.contiguous(), out = at::empty_like(in);
  FRNN_POISON(out);
  FRNN_LAUNCH(k_neighbor, in.numel() / threads, threads, threads * sizeof(float),
              FRNN_CURRENT_STREAM, in.data_ptr<float>(), out.data_ptr<float>(), skip_sync);
  return out;
}

py::tuple smem_isolation(std::vector<int64_t> grid, int64_t threads, int64_t smem, bool coop) {
  const dim3 g = to_dim3(grid);
  const int64_t blocks = int64_t(g.x) * g.y * g.z;
  auto opt = at::TensorOptions().dtype(at::kLong);
  Tensor vals = at::full({blocks * threads}, -1, opt), bad = at::full({blocks * threads}, -1, opt),
         align = at::full({blocks}, -1, opt);
  const int words = int(smem / 8);
  if (coop)
    FRNN_LAUNCH_COOPERATIVE(k_smem_isolation, g, threads, smem, FRNN_CURRENT_STREAM,
                            vals.data_ptr<int64_t>(), bad.data_ptr<int64_t>(),
                            align.data_ptr<int64_t>(), words);
  else
    FRNN_LAUNCH(k_smem_isolation, g, threads, smem, FRNN_CURRENT_STREAM, vals.data_ptr<int64_t>(),
                bad.data_ptr<int64_t>(), align.data_ptr<int64_t>(), words);
  return py::make_tuple(vals, bad, align);
}

Tensor builtins(std::vector<int64_t> grid, std::vector<int64_t> block) {
  const dim3 g = to_dim3(grid), b = to_dim3(block);
  const int64_t n = int64_t(g.x) * g.y * g.z * b.x * b.y * b.z;
  Tensor out = at::full({n, 12}, -1, at::TensorOptions().dtype(at::kLong));
  FRNN_LAUNCH(k_builtins, g, b, 0, FRNN_CURRENT_STREAM, out.data_ptr<int64_t>());
  return out;
}

int shfl_op(const std::string& op) {
  if (op == "idx") return 0;
  if (op == "up") return 1;
  if (op == "down") return 2;
  if (op == "xor") return 3;
  TORCH_CHECK(false, "unknown shuffle ", op);
}

template <class T>
void launch_shfl(const Tensor& in, Tensor& out, int64_t threads, int op, int64_t arg,
                 int64_t per_lane, int64_t width, int64_t mask) {
  FRNN_LAUNCH(k_shfl<T>, in.numel() / threads, threads, 0, FRNN_CURRENT_STREAM,
              reinterpret_cast<const T*>(in.data_ptr()), reinterpret_cast<T*>(out.data_ptr()), op,
              int(arg), int(per_lane), int(width), unsigned(mask));
}

// as_unsigned: run the `unsigned` instantiation on an int32 tensor's bits.
Tensor shfl(const std::string& opname, const Tensor& x, int64_t arg, int64_t width, int64_t mask,
            int64_t threads, int64_t per_lane, bool as_unsigned) {
  Tensor in = x.contiguous(), out = at::empty_like(in);
  const int op = shfl_op(opname);
  switch (in.scalar_type()) {
    case at::kInt:
      if (as_unsigned) launch_shfl<unsigned>(in, out, threads, op, arg, per_lane, width, mask);
      else launch_shfl<int>(in, out, threads, op, arg, per_lane, width, mask);
      break;
    case at::kLong: launch_shfl<long long>(in, out, threads, op, arg, per_lane, width, mask); break;
    case at::kFloat: launch_shfl<float>(in, out, threads, op, arg, per_lane, width, mask); break;
    case at::kDouble: launch_shfl<double>(in, out, threads, op, arg, per_lane, width, mask); break;
    case at::kHalf: launch_shfl<c10::Half>(in, out, threads, op, arg, per_lane, width, mask); break;
    default: TORCH_CHECK(false, "unsupported dtype for the shuffle test");
  }
  return out;
}

Tensor vote(const std::string& opname, const Tensor& pred, int64_t mask, int64_t threads) {
  const int op = opname == "ballot" ? 0 : opname == "any" ? 1 : opname == "all" ? 2
               : opname == "activemask" ? 3 : -1;
  TORCH_CHECK(op >= 0, "unknown vote ", opname);
  Tensor in = pred.to(at::kInt).contiguous();
  Tensor out = at::empty({in.numel()}, at::TensorOptions().dtype(at::kLong));
  FRNN_LAUNCH(k_vote, in.numel() / threads, threads, 0, FRNN_CURRENT_STREAM, in.data_ptr<int>(),
              out.data_ptr<int64_t>(), op, unsigned(mask));
  return out;
}

Tensor syncwarp(const Tensor& x, int64_t threads, int64_t mask, bool skip_sync) {
  Tensor in = x.contiguous(), out = at::full_like(in, -1);
  FRNN_LAUNCH(k_syncwarp, in.numel() / threads, threads, threads * sizeof(int),
              FRNN_CURRENT_STREAM, in.data_ptr<int>(), out.data_ptr<int>(), unsigned(mask), skip_sync);
  return out;
}

py::dict atomics(int64_t blocks, int64_t threads, int64_t iters, bool cooperative) {
  Counters c{};
  c.i_max = INT32_MIN;
  c.i_min = INT32_MAX;
  c.u_sub = 1u << 30;
  c.h_add = c10::Half(0.0f);
  // Cooperative: every worker thread takes part, so the atomics always race across OS threads.
  if (cooperative)
    FRNN_LAUNCH_COOPERATIVE(k_atomics, blocks, threads, 0, FRNN_CURRENT_STREAM, &c, int(iters));
  else
    FRNN_LAUNCH(k_atomics, blocks, threads, 0, FRNN_CURRENT_STREAM, &c, int(iters));
  py::dict d;
  d["i_add"] = c.i_add;
  d["u_add"] = c.u_add;
  d["ull_add"] = c.ull_add;
  d["f_add"] = c.f_add;
  d["d_add"] = c.d_add;
  d["i_sub"] = c.i_sub;
  d["u_sub"] = c.u_sub;
  d["i_max"] = c.i_max;
  d["i_min"] = c.i_min;
  d["cas_add"] = c.cas_add;
  d["locked_plain"] = c.locked_plain;
  d["exch_sum"] = c.exch_sum + c.exch;  // every written value is returned once or is the last one
  d["inc"] = c.inc;
  d["h_add"] = float(c.h_add);
  return d;
}

Tensor grid(int64_t blocks, int64_t threads, int64_t phases, bool cooperative) {
  Tensor buf = at::zeros({phases + 1, blocks}, at::TensorOptions().dtype(at::kLong));
  buf[0].copy_(at::arange(1, blocks + 1));
  if (cooperative)
    FRNN_LAUNCH_COOPERATIVE(k_grid, blocks, threads, threads * sizeof(long long),
                            FRNN_CURRENT_STREAM, buf.data_ptr<int64_t>(), int(phases));
  else
    FRNN_LAUNCH(k_grid, blocks, threads, threads * sizeof(long long), FRNN_CURRENT_STREAM,
                buf.data_ptr<int64_t>(), int(phases));
  return buf;
}

void disagree(const std::string& kind) {
  static const char* kinds[] = {"syncthreads_exit", "grid_exit",  "syncwarp_vs_syncthreads",
                                "mask_excludes_self", "op_mismatch", "bad_width", "grid_not_coop"};
  int k = -1;
  for (int i = 0; i < 7; ++i)
    if (kind == kinds[i]) k = i;
  if (kind == "syncthreads_outside_kernel") return __syncthreads();
  TORCH_CHECK(k >= 0, "unknown disagreement kind ", kind);
  if (k == 1) FRNN_LAUNCH_COOPERATIVE(k_disagree, 4, 64, 0, FRNN_CURRENT_STREAM, k);
  else FRNN_LAUNCH(k_disagree, 2, 64, 0, FRNN_CURRENT_STREAM, k);
}

void launch(std::vector<int64_t> grid, std::vector<int64_t> block, int64_t smem, bool cooperative,
            std::optional<int64_t> optin, bool check_only) {
  // optin: None resets the kernel's opt-in to the default, -1 leaves it as it is.
  if (!optin || *optin >= 0)
    FRNN_SET_MAX_DYNAMIC_SMEM(k_empty, optin.value_or(int64_t(::simt::kDefaultMaxDynamicSmem)));
  const dim3 g = to_dim3(grid), b = to_dim3(block);
  if (check_only)
    ::simt::detail::check_launch({g, b, size_t(smem), (const void*)k_empty, cooperative});
  else if (cooperative)
    FRNN_LAUNCH_COOPERATIVE(k_empty, g, b, smem, FRNN_CURRENT_STREAM, 0);
  else
    FRNN_LAUNCH(k_empty, g, b, smem, FRNN_CURRENT_STREAM, 0);
}

void throw_in_kernel(const std::string& kind) {
  const int k = kind == "std" ? 0 : kind == "c10" ? 1 : kind == "trap" ? 2 : kind == "nested" ? 3 : -1;
  TORCH_CHECK(k >= 0, "unknown kind ", kind);
  FRNN_LAUNCH(k_throw, 3, 64, 0, FRNN_CURRENT_STREAM, k);
}

Tensor order(int64_t threads) {
  Tensor ticket = at::zeros({2}, at::TensorOptions().dtype(at::kInt));
  Tensor out = at::full({2, threads}, -1, at::TensorOptions().dtype(at::kInt));
  FRNN_LAUNCH(k_order, 1, threads, 0, FRNN_CURRENT_STREAM, ticket.data_ptr<int>(), out.data_ptr<int>());
  return out;
}

std::vector<double> bench(int64_t blocks, int64_t threads, int64_t barriers, int64_t reps) {
  std::vector<int> out(blocks);
  std::vector<double> secs;
  for (int64_t r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    FRNN_LAUNCH(k_bench, blocks, threads, 0, FRNN_CURRENT_STREAM, out.data(), int(barriers));
    secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return secs;
}

Tensor intrinsics(const Tensor& x) {
  Tensor in = x.to(at::kInt).contiguous();
  TORCH_CHECK(in.numel() % 32 == 0, "numel must be a multiple of 32");
  Tensor out = at::empty({in.numel(), 6}, at::TensorOptions().dtype(at::kLong));
  FRNN_LAUNCH(k_intrinsics, in.numel() / 32, 32, 0, FRNN_CURRENT_STREAM, in.data_ptr<int>(),
              out.data_ptr<int64_t>());
  return out;
}

}  // namespace
}  // namespace simt_test

namespace simt {
void bind_selftests(pybind11::module& m) {
  namespace t = fusedrnn::simt_test;
  using pybind11::arg;
  m.def("_simt_test_reduce", &t::reduce, arg("x"), arg("threads"));
  m.def("_simt_test_rotate", &t::rotate, arg("x"), arg("threads"), arg("rounds"),
        arg("skip_second_sync") = false);
  m.def("_simt_test_neighbor", &t::neighbor, arg("x"), arg("threads"), arg("skip_sync") = false);
  m.def("_simt_test_smem_isolation", &t::smem_isolation, arg("grid"), arg("threads"), arg("smem"),
        arg("cooperative") = false);
  m.def("_simt_test_builtins", &t::builtins, arg("grid"), arg("block"));
  m.def("_simt_test_shfl", &t::shfl, arg("op"), arg("x"), arg("arg"), arg("width"), arg("mask"),
        arg("threads"), arg("per_lane") = 0, arg("as_unsigned") = false);
  m.def("_simt_test_vote", &t::vote, arg("op"), arg("pred"), arg("mask"), arg("threads"));
  m.def("_simt_test_syncwarp", &t::syncwarp, arg("x"), arg("threads"), arg("mask"),
        arg("skip_sync") = false);
  m.def("_simt_test_atomics", &t::atomics, arg("blocks"), arg("threads"), arg("iters"),
        arg("cooperative") = false);
  m.def("_simt_test_grid", &t::grid, arg("blocks"), arg("threads"), arg("phases"),
        arg("cooperative") = true);
  m.def("_simt_test_disagree", &t::disagree, arg("kind"));
  m.def("_simt_test_launch", &t::launch, arg("grid"), arg("block"), arg("smem") = 0,
        arg("cooperative") = false, arg("optin") = pybind11::none(), arg("check_only") = false);
  m.def("_simt_test_throw", &t::throw_in_kernel, arg("kind"));
  m.def("_simt_test_order", &t::order, arg("threads"));
  m.def("_simt_test_bench", &t::bench, arg("blocks") = 16, arg("threads") = 128,
        arg("barriers") = 10, arg("reps") = 20, pybind11::call_guard<pybind11::gil_scoped_release>());
  m.def("_simt_test_intrinsics", &t::intrinsics, arg("x"));
}
}  // namespace simt
}  // namespace fusedrnn
