// Python entry points (_simt_test_mma, _ldmatrix, _ldmatrix_mma, _tf32, _cp_async) that launch
// the kernels of selftest_matrix.h. For tests/test_simt_matrix.py only. Inputs are CPU tensors.
#include <torch/extension.h>

#include "simt/selftest_matrix.h"

namespace fusedrnn {
namespace simt_test {
namespace {

using at::Tensor;

// a [cases,32,4] b [cases,32,2] int32 (register bits), c [cases,32,4] float -> d like c.
Tensor mma(const std::string& kind, const Tensor& a, const Tensor& b, const Tensor& c,
           bool in_place, int64_t exit_lane) {
  const int k = kind == "bf16" ? 0 : kind == "f16" ? 1 : kind == "tf32" ? 2 : -1;
  TORCH_CHECK(k >= 0, "unknown mma kind ", kind);
  Tensor ra = a.to(at::kInt).contiguous(), rb = b.to(at::kInt).contiguous(),
         rc = c.to(at::kFloat).contiguous();
  const int64_t cases = ra.size(0);
  TORCH_CHECK(ra.numel() == cases * 128 && rb.numel() == cases * 64 && rc.numel() == cases * 128,
              "a [cases,32,4], b [cases,32,2], c [cases,32,4]");
  Tensor d = at::empty_like(rc);
  FRNN_POISON(d);
  FRNN_LAUNCH(k_mma, cases, 32, 0, FRNN_CURRENT_STREAM, k,
              reinterpret_cast<const uint32_t*>(ra.data_ptr<int>()),
              reinterpret_cast<const uint32_t*>(rb.data_ptr<int>()), rc.data_ptr<float>(),
              d.data_ptr<float>(), in_place, int(exit_lane));
  return d;
}

// tile: int16 words; row_off [32] element offsets; returns [32,4] int32 registers (-1 where not
// written). smem_words: the shared memory size in 16-bit words (default: the tile's).
Tensor ldmatrix(const Tensor& tile, const Tensor& row_off, int64_t num, bool trans,
                int64_t smem_words) {
  Tensor t = tile.to(at::kShort).contiguous(), off = row_off.to(at::kInt).contiguous();
  TORCH_CHECK(off.numel() == 32, "row_off: one offset per lane");
  Tensor out = at::full({32, 4}, -1, at::TensorOptions().dtype(at::kInt));
  const int64_t words = smem_words > 0 ? smem_words : t.numel();
  FRNN_LAUNCH(k_ldmatrix, 1, 32, words * 2, FRNN_CURRENT_STREAM,
              reinterpret_cast<const uint16_t*>(t.data_ptr<int16_t>()), int(t.numel()),
              off.data_ptr<int>(), int(num), trans, reinterpret_cast<uint32_t*>(out.data_ptr<int>()));
  return out;
}

// a [16,16], w [8,16] bf16 or fp16 -> a @ w^T [16,8] float through ldmatrix + mma.
Tensor ldmatrix_mma(const Tensor& a, const Tensor& w, int64_t ld) {
  TORCH_CHECK(a.sizes() == at::IntArrayRef({16, 16}) && w.sizes() == at::IntArrayRef({8, 16}) &&
              a.scalar_type() == w.scalar_type(), "a [16,16], w [8,16], one dtype");
  Tensor ac = a.contiguous(), wc = w.contiguous();
  Tensor d = at::empty({16, 8}, at::TensorOptions().dtype(at::kFloat));
  FRNN_POISON(d);
  const size_t smem = size_t(24 * ld) * 2;
  if (a.scalar_type() == at::kBFloat16)
    FRNN_LAUNCH(k_ldmatrix_mma<c10::BFloat16>, 1, 32, smem, FRNN_CURRENT_STREAM,
                ac.data_ptr<c10::BFloat16>(), wc.data_ptr<c10::BFloat16>(), int(ld),
                d.data_ptr<float>());
  else if (a.scalar_type() == at::kHalf)
    FRNN_LAUNCH(k_ldmatrix_mma<c10::Half>, 1, 32, smem, FRNN_CURRENT_STREAM,
                ac.data_ptr<c10::Half>(), wc.data_ptr<c10::Half>(), int(ld), d.data_ptr<float>());
  else
    TORCH_CHECK(false, "bf16 or fp16");
  return d;
}

Tensor tf32(const Tensor& x) {
  Tensor in = x.to(at::kFloat).contiguous();
  Tensor out = at::empty({in.numel()}, at::TensorOptions().dtype(at::kInt));
  const int n = int(in.numel());
  FRNN_LAUNCH(k_tf32, (n + 63) / 64, 64, 0, FRNN_CURRENT_STREAM, in.data_ptr<float>(),
              reinterpret_cast<uint32_t*>(out.data_ptr<int>()), n);
  return out;
}

// Returns (before [groups*32], mid [groups*32], after [groups*32*bytes/4]) int32.
std::tuple<Tensor, Tensor, Tensor> cp_async(const Tensor& src, int64_t bytes, int64_t groups,
                                            int64_t wait_n, int64_t zero_every, bool misalign) {
  Tensor s = src.to(at::kInt).contiguous();
  const int64_t words = bytes / 4;
  TORCH_CHECK(s.numel() >= groups * 32 * words + 1, "src too small");
  auto opt = at::TensorOptions().dtype(at::kInt);
  Tensor before = at::zeros({groups * 32}, opt), mid = at::zeros({groups * 32}, opt),
         after = at::zeros({groups * 32 * words}, opt);
  FRNN_LAUNCH(k_cp_async, 1, 32, groups * 32 * bytes, FRNN_CURRENT_STREAM, s.data_ptr<int>(),
              int(bytes), int(groups), int(wait_n), int(zero_every), misalign,
              before.data_ptr<int>(), mid.data_ptr<int>(), after.data_ptr<int>());
  return {before, mid, after};
}

}  // namespace
}  // namespace simt_test

namespace simt {
void bind_matrix_selftests(pybind11::module& m) {
  namespace t = fusedrnn::simt_test;
  using pybind11::arg;
  m.def("_simt_test_mma", &t::mma, arg("kind"), arg("a"), arg("b"), arg("c"),
        arg("in_place") = false, arg("exit_lane") = -1);
  m.def("_simt_test_ldmatrix", &t::ldmatrix, arg("tile"), arg("row_off"), arg("num"),
        arg("trans") = false, arg("smem_words") = 0);
  m.def("_simt_test_ldmatrix_mma", &t::ldmatrix_mma, arg("a"), arg("w"), arg("ld") = 24);
  m.def("_simt_test_tf32", &t::tf32, arg("x"));
  m.def("_simt_test_cp_async", &t::cp_async, arg("src"), arg("bytes"), arg("groups"),
        arg("wait_n") = 0, arg("zero_every") = 0, arg("misalign") = false);
}
}  // namespace simt
}  // namespace fusedrnn
