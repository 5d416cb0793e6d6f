// Test bindings of the persistent kernels through the SIMT layer (CPU tensors), until the lead
// folds the algorithm choice into torch.ops.fusedrnn.*: torch.ops.fusedrnn_persistent.
//   lstm_forward / lstm_backward / gru_forward / gru_backward: same arguments as the
//       torch.ops.fusedrnn ops of the same name, minus backend and algorithm (no projection)
//   plan(kind, B, H, dtype) -> [fits, blocks, units, threads, kc_fwd, kc_bwd, smem_fwd, smem_bwd,
//       mma_fwd, mma_bwd, cluster_blocks, cluster_units, cluster_threads, cluster_smem,
//       cluster_mma, cluster_preferred]
//       the sizing decision for the SIMT layer's architecture (fusedrnn._C.simt_set_arch);
//       groups (of blocks side by side: 2 for both directions) and wave (a layer wavefront of
//       `groups` layers) as persistent.h's persistent_plan
//   plan_for(kind, B, H, dtype, sms, smem_optin, max_threads, max_cluster=0, groups=1,
//       wave=False) -> same, for any device
//   set_tuning(max_blocks, max_kc, threads, cluster, flags)   test-only caps (0 = the rule's
//       choice; cluster -1: the grid-barrier forward even where a cluster fits, 1: the cluster
//       forward wherever it fits; flags -1: the grid forward's grid barrier a step even where
//       the flag-word exchange fits)
//   set_trace(on) / last_trace() -> Tensor   the forward kernels' phase marks (persistent.h
//       persistent_set_trace): [blocks, steps, 6] int64 clock ticks of the last forward launch,
//       either backend; undefined before the first traced launch
#include <torch/library.h>

#include "cuda/persistent.h"

namespace fusedrnn {
namespace {

RnnKind parse_kind(const std::string& k) {
  if (k == "lstm") return RnnKind::Lstm;
  if (k == "gru") return RnnKind::Gru;
  TORCH_CHECK(false, "persistent: unknown kind '", k, "' (expected lstm or gru)");
}

std::vector<int64_t> to_list(const PersistentPlan& p) {
  const PersistentCluster& c = p.cluster;
  return {p.fits, p.blocks, p.units, p.threads, p.kc_fwd, p.kc_bwd, int64_t(p.smem_fwd),
          int64_t(p.smem_bwd), p.mma_fwd, p.mma_bwd, c.blocks, c.units, c.threads,
          int64_t(c.smem), c.mma, c.preferred};
}

std::vector<int64_t> plan_op(std::string kind, int64_t B, int64_t H, at::ScalarType dtype,
                             int64_t groups, bool wave) {
  TORCH_CHECK(groups >= 1, "persistent plan: groups must be >= 1, got ", groups);
  return to_list(simt::persistent_plan(parse_kind(kind), B, H, dtype, int(groups), wave));
}

std::vector<int64_t> plan_for_op(std::string kind, int64_t B, int64_t H, at::ScalarType dtype,
                                 int64_t sms, int64_t smem_optin, int64_t max_threads,
                                 int64_t max_cluster, int64_t groups, bool wave) {
  TORCH_CHECK(groups >= 1, "persistent plan: groups must be >= 1, got ", groups);
  return to_list(persistent_plan(
      parse_kind(kind), B, H, dtype,
      PersistentArch{int(sms / groups), size_t(smem_optin), int(max_threads), int(max_cluster)},
      wave));
}

void set_tuning_op(int64_t max_blocks, int64_t max_kc, int64_t threads, int64_t cluster,
                   int64_t flags) {
  persistent_set_tuning({int(max_blocks), int(max_kc), int(threads), int(cluster), int(flags)});
}

std::optional<Tensor> trace_op() {
  Tensor t = persistent_last_trace();
  return t.defined() ? std::optional<Tensor>(t) : std::nullopt;
}

}  // namespace
}  // namespace fusedrnn

TORCH_LIBRARY(fusedrnn_persistent, m) {
  m.def(
      "lstm_forward(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh, bool reverse=False, Tensor? batch_sizes=None, bool save=True) "
      "-> (Tensor y, Tensor h_n, Tensor c_n, Tensor gates, Tensor cells)");
  m.def(
      "lstm_backward(Tensor dy, Tensor dh_n, Tensor dc_n, Tensor x, Tensor h0, Tensor c0, "
      "Tensor w_ih, Tensor w_hh, Tensor y, Tensor gates, Tensor cells, bool reverse=False, "
      "Tensor? batch_sizes=None) "
      "-> (Tensor dx, Tensor dh0, Tensor dc0, Tensor dw_ih, Tensor dw_hh, Tensor db)");
  m.def(
      "gru_forward(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "bool reverse=False, Tensor? batch_sizes=None, bool save=True) "
      "-> (Tensor y, Tensor h_n, Tensor gates, Tensor ghn)");
  m.def(
      "gru_backward(Tensor dy, Tensor dh_n, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor y, Tensor gates, Tensor ghn, bool reverse=False, Tensor? batch_sizes=None) "
      "-> (Tensor dx, Tensor dh0, Tensor dw_ih, Tensor dw_hh, Tensor db_ih, Tensor db_hh)");
  m.def("plan(str kind, int B, int H, ScalarType dtype, int groups=1, bool wave=False) -> int[]",
        &fusedrnn::plan_op);
  m.def(
      "plan_for(str kind, int B, int H, ScalarType dtype, int sms, int smem_optin, "
      "int max_threads, int max_cluster=0, int groups=1, bool wave=False) -> int[]",
      &fusedrnn::plan_for_op);
  m.def(
      "set_tuning(int max_blocks=0, int max_kc=0, int threads=0, int cluster=0, int flags=0) "
      "-> ()",
        &fusedrnn::set_tuning_op);
  m.def("set_trace(bool on) -> ()", &fusedrnn::persistent_set_trace);
  m.def("last_trace() -> Tensor?", &fusedrnn::trace_op);
}

TORCH_LIBRARY_IMPL(fusedrnn_persistent, CPU, m) {
  m.impl("lstm_forward", &fusedrnn::simt::lstm_forward_persistent);
  m.impl("lstm_backward", &fusedrnn::simt::lstm_backward_persistent);
  m.impl("gru_forward", &fusedrnn::simt::gru_forward_persistent);
  m.impl("gru_backward", &fusedrnn::simt::gru_backward_persistent);
}
