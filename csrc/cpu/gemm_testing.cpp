// Test hooks for the CPU GEMM (gemm.h) and the fused LSTM step, in their own op namespace so
// that they stay out of the product's op list (torch.ops.fusedrnn.*):
//   torch.ops.fusedrnn_testing.cpu_gemm(a, b, c, ta, tb, alpha, beta, isa, bias, stream, packed)
//   -> bool
// c = alpha * op(a) op(b) + beta * c (+ bias [N] on every row, if given) in place, with gemm.h's
// stream hint; packed = False leaves b unpacked (PackedB's packed flag: the thin kernels below 8
// rows, gemm_thin.h, or the BLAS path). a, b, c: fp32
// CPU, 2-D, unit column stride; the row stride is the leading dimension (so a narrowed view
// tests ld > width). isa: -1 automatic, 0 BLAS, 1 AVX2, 2 AVX-512; returns false without
// computing when the CPU cannot run it.
//   torch.ops.fusedrnn_testing.cpu_gemm_repeat(a [M,K], w [N,K], c [M,N], reps): c = a w^T
// reps times with w packed once (benchmarks/cpu_gemm.py measures the per-step rate with it).
//   torch.ops.fusedrnn_testing.cpu_lstm_fused() -> bool: whether an fp32 LSTM layer without
// projection runs the fused step (lstm_step.h) right now (CPU support and run-time switches);
// cpu_lstm_fused_isa() -> str: its instruction set, "avx512", "avx2" or "" (not fused).
//   torch.ops.fusedrnn_testing.cpu_force_isa(level) -> bool: pointwise.h's force_cpu_isa (act
// as a CPU whose best instruction set is 0 portable, 1 AVX2 + FMA, 2 AVX-512; -1 automatic), so
// that one process tests every instruction set this CPU has; false if the CPU cannot.
//   torch.ops.fusedrnn_testing.cpu_lstm_thin() -> bool: whether an fp32 LSTM layer without
// projection and with at most cpu_lstm_thin_rows() rows per step runs the thin sweeps
// (lstm_sweep.h: the forward with its input projection hoisted, the backward with W_hh of at
// most 2 MB) right now.
#include <torch/library.h>

#include "cpu/common.h"
#include "cpu/gemm.h"
#include "cpu/lstm_step.h"
#include "cpu/lstm_sweep.h"
#include "cpu/pointwise.h"

namespace fusedrnn {
namespace cpu {
namespace {

bool cpu_gemm(const Tensor& a, const Tensor& b, const Tensor& c, bool ta, bool tb, double alpha,
              double beta, int64_t isa, const std::optional<Tensor>& bias, bool stream,
              bool packed) {
  for (const Tensor* t : {&a, &b, &c})
    TORCH_CHECK(t->dim() == 2 && t->scalar_type() == at::kFloat && t->device().is_cpu() &&
                    (t->stride(1) == 1 || t->size(1) <= 1),
                "cpu_gemm: 2-D fp32 CPU tensors with unit column stride");
  const int64_t M = c.size(0), N = c.size(1), K = ta ? a.size(0) : a.size(1);
  TORCH_CHECK((ta ? a.size(1) : a.size(0)) == M && (tb ? b.size(1) : b.size(0)) == K &&
                  (tb ? b.size(0) : b.size(1)) == N,
              "cpu_gemm: shapes do not match");
  TORCH_CHECK(!bias || (bias->is_contiguous() && bias->numel() == N &&
                        bias->scalar_type() == at::kFloat),
              "cpu_gemm: bias must be a contiguous fp32 [N]");
  struct Restore {  // the forced choice is process-wide: undo it whatever happens
    ~Restore() { force_gemm_isa(-1); }
  } restore;
  if (!force_gemm_isa(int(isa))) return false;
  auto ld = [](const Tensor& t) {
    return std::max<int64_t>(t.stride(0), std::max<int64_t>(1, t.size(1)));
  };
  const float* bp = bias ? bias->data_ptr<float>() : nullptr;
  gemm_packed(M, float(alpha), ta, a.data_ptr<float>(), ld(a),
              PackedB(tb, K, N, b.data_ptr<float>(), ld(b), packed), float(beta),
              c.data_ptr<float>(), ld(c), bp, stream);
  return true;
}

// c = a w^T, reps times with w packed once: the rate of the per-step recurrent GEMM.
void cpu_gemm_repeat(const Tensor& a, const Tensor& w, const Tensor& c, int64_t reps) {
  TORCH_CHECK(a.is_contiguous() && w.is_contiguous() && c.is_contiguous() &&
                  a.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat &&
                  c.scalar_type() == at::kFloat,
              "cpu_gemm_repeat: contiguous fp32");
  const int64_t M = a.size(0), K = a.size(1), N = w.size(0);
  const PackedB pb(true, K, N, w.data_ptr<float>(), K);
  for (int64_t r = 0; r < reps; ++r)
    gemm_packed(M, 1.f, false, a.data_ptr<float>(), K, pb, 0.f, c.data_ptr<float>(), N);
}

bool cpu_lstm_fused() { return lstm_step_fn() != nullptr; }
std::string cpu_lstm_fused_isa() {
  const LstmStepKernel* k = lstm_step_fn();
  return k ? k->isa : "";
}
// Whether an LSTM layer of B rows a step and H units runs the fused step (lstm_step_for).
bool cpu_lstm_fused_for(int64_t B, int64_t H) { return lstm_step_for(B, H) != nullptr; }
bool cpu_force_isa(int64_t level) { return force_cpu_isa(int(level)); }
bool cpu_lstm_thin() { return lstm_forward_thin_fn() != nullptr; }
int64_t cpu_lstm_thin_rows() { return kThinRows; }

}  // namespace

TORCH_LIBRARY(fusedrnn_testing, m) {
  m.def("cpu_gemm(Tensor a, Tensor b, Tensor(a!) c, bool ta, bool tb, float alpha, float beta, "
        "int isa, Tensor? bias=None, bool stream=False, bool packed=True) -> bool");
  m.impl("cpu_gemm", c10::DispatchKey::CPU, TORCH_FN(cpu_gemm));
  m.def("cpu_gemm_repeat(Tensor a, Tensor w, Tensor(a!) c, int reps) -> ()");
  m.impl("cpu_gemm_repeat", c10::DispatchKey::CPU, TORCH_FN(cpu_gemm_repeat));
  m.def("cpu_lstm_fused() -> bool", TORCH_FN(cpu_lstm_fused));
  m.def("cpu_lstm_fused_isa() -> str", TORCH_FN(cpu_lstm_fused_isa));
  m.def("cpu_lstm_fused_for(int B, int H) -> bool", TORCH_FN(cpu_lstm_fused_for));
  m.def("cpu_force_isa(int level) -> bool", TORCH_FN(cpu_force_isa));
  m.def("cpu_lstm_thin() -> bool", TORCH_FN(cpu_lstm_thin));
  m.def("cpu_lstm_thin_rows() -> int", TORCH_FN(cpu_lstm_thin_rows));
}

}  // namespace cpu
}  // namespace fusedrnn
