// Host side of the persistent kernels (csrc/cuda/persistent.h): input checks, the hoisted input
// GEMM and the weight-gradient GEMMs (ATen), buffers, the sizing decision and the cooperative
// launch. Included by exactly one translation unit per part and backend:
//   FRNN_PERSISTENT_PART_COMMON  persistent_arch / persistent_plan / persistent_supported
//   FRNN_PERSISTENT_PART_LSTM    lstm_forward_persistent(_bidir, _stack) / lstm_backward_persistent
//   FRNN_PERSISTENT_PART_GRU     gru_forward_persistent(_bidir, _stack) / gru_backward_persistent
// under nvcc (csrc/cuda/persistent_*.cu -> fusedrnn::cuda) and g++ (csrc/simt/persistent_*.cpp
// -> fusedrnn::simt).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cuda/persistent.h"
#include "cuda/persistent_kernels.cuh"
#include "cuda/stepwise.h"  // stepwise::Steps and its row gathers, shared with the stepwise launcher

#if defined(__CUDACC__)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace fusedrnn {
namespace FRNN_BACKEND_NS {

namespace persistent_detail {

#if defined(__CUDACC__)
#define FRNN_PERSISTENT_DEVICE_GUARD(t) const c10::cuda::CUDAGuard frnn_guard_((t).device())
inline void check_device(const char* op, const Tensor& x) {
  TORCH_CHECK(x.is_cuda(), op, ": the cuda backend needs CUDA tensors, got ", x.device());
}
#else
#define FRNN_PERSISTENT_DEVICE_GUARD(t) ((void)0)
inline void check_device(const char* op, const Tensor& x) {
  TORCH_CHECK(x.device().is_cpu(), op, ": the simt backend runs on CPU tensors, got ",
              x.device());
}
#endif

inline at::ScalarType acc_type(at::ScalarType s) {
  return s == at::kDouble ? at::kDouble : at::kFloat;
}

using stepwise::Steps;

// The kernels' step table of packed input (persistent_kernels.cuh, "Packed input"): int32
// [count[0..T-1], offset[0..T-1]] on x's device (through pinned memory: no host sync), or an
// undefined tensor for dense input.
inline Tensor step_table(const Steps& st, const Tensor& x) {
  if (!st.packed) return Tensor();
  TORCH_CHECK(st.N < INT_MAX, "persistent: packed input of ", st.N, " rows is too large");
  auto opts = at::TensorOptions().dtype(at::kInt);
#if defined(__CUDACC__)
  opts = opts.pinned_memory(true);
#endif
  auto tab = at::empty({2 * st.T}, opts);
  int* p = tab.data_ptr<int>();
  for (int64_t t = 0; t < st.T; ++t) p[t] = int(st.count[t]), p[st.T + t] = int(st.offset[t]);
  return portable::host_to_device(tab, x);
}

inline const int* table_ptr(const Tensor& tab) {
  return tab.defined() ? tab.data_ptr<int>() : nullptr;
}

template <class Kernel, class Params>
void launch(Kernel kernel, int blocks, int threads, size_t smem, const Params& params) {
  FRNN_SET_MAX_DYNAMIC_SMEM(kernel, smem);
#if defined(__CUDACC__)
  // Co-residency, as cudaLaunchCooperativeKernel will require it: registers too.
  int per_sm = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  TORCH_CHECK(per_sm >= 1 && int64_t(per_sm) * sms >= blocks,
              "persistent: ", blocks, " blocks of ", threads, " threads with ", smem,
              " bytes of shared memory are not co-resident (", per_sm, " per SM x ", sms,
              " SMs)");
#endif
  FRNN_LAUNCH_COOPERATIVE(kernel, blocks, threads, smem, FRNN_CURRENT_STREAM, params);
}

// Whether the device runs the plan's cluster at once (the occupancy calculator, registers
// included), asked once per kernel, shape and device.
template <class Kernel>
bool cluster_runs(Kernel kernel, const PersistentCluster& c) {
#if defined(__CUDACC__)
  int dev = 0;
  C10_CUDA_CHECK(cudaGetDevice(&dev));
#else
  const int dev = 0;
#endif
  using Key = std::tuple<const void*, int, int, size_t, int>;
  static std::mutex mu;
  static std::map<Key, bool> known;
  const Key key{(const void*)kernel, c.blocks, c.threads, c.smem, dev};
  std::lock_guard<std::mutex> lock(mu);
  auto it = known.find(key);
  if (it != known.end()) return it->second;
  if (c.blocks > 8) FRNN_ALLOW_NON_PORTABLE_CLUSTER(kernel);
  const bool ok = portable::max_active_clusters(kernel, c.blocks, c.threads, c.blocks, c.smem) > 0;
  known[key] = ok;
  return ok;
}

// The forward's launch of `groups` param sets (FwdLaunch: one direction; both side by side, the
// plan then sized for half the SMs each; or a wavefront's layers, the plan sized with `wave`):
// on one cluster per group (its slicing, KC = H) when the plan prefers it, the product runs on
// tensor cores (mma_ok: the half types; fp32 when TF32 is allowed; or the tuning forces it) and
// the device runs it, unless FUSEDRNN_PERSISTENT_CLUSTER=off; else cooperative on the grid
// slicing.
template <class Kernel, class Params>
void launch_fwd(Kernel kernel, const PersistentPlan& plan, const Params* d, int groups,
                bool mma_ok, bool wave = false) {
  TORCH_CHECK(groups >= 1 && groups <= kMaxGroups, "persistent: ", groups, " groups in a launch");
  FwdLaunch<Params> L{};
  L.steps = 0;
  for (int g = 0; g < kMaxGroups; ++g) {
    L.d[g] = d[std::min(g, groups - 1)];
    if (g < groups) L.steps = std::max(L.steps, d[g].T + d[g].lag);
  }
  L.wave = wave;
  // the fallback switches (persistent.h): read before either path, so a bad value raises
  const bool env_barrier = persistent_exchange_barrier(), env_no_cluster = persistent_cluster_off();
#if defined(__CUDACC__)
  const at::Device dev(at::kCUDA, c10::cuda::current_device());  // the launch's buffers
#else
  const at::Device dev(at::kCPU);
#endif
  // the phase marks (persistent_set_trace): a fresh [blocks, steps, kMarks] buffer a launch
  auto trace = [&](int blocks) {
    if (!persistent_trace_on()) return;
    at::Tensor t = at::zeros({blocks, L.steps, kMarks}, at::TensorOptions(at::kLong).device(dev));
    L.trace = reinterpret_cast<long long*>(t.data_ptr<int64_t>());
    persistent_keep_trace(t);
  };
  const PersistentCluster& c = plan.cluster;
  const bool want = !wave && !env_no_cluster && c.blocks > 0 && c.preferred &&
                    (c.forced || (c.mma && mma_ok));
  if (want) FRNN_SET_MAX_DYNAMIC_SMEM(kernel, c.smem);  // before the occupancy query
  if (want && cluster_runs(kernel, c)) {
    for (Params& p : L.d) {
      p.U = c.units;
      p.KC = p.H;
      p.mma = c.mma && mma_ok;
      p.cluster = true;
    }
    L.per_dir = c.blocks;
    trace(groups * c.blocks);
    FRNN_LAUNCH_CLUSTER(kernel, groups * c.blocks, c.threads, c.blocks, c.smem,
                        FRNN_CURRENT_STREAM, L);
    return;
  }
  // The flag-word exchange instead of a grid barrier a step (persistent_kernels.cuh
  // flag_stage): 2- and 4-byte types, h_{t-1} staged whole (KC >= H), not a wavefront (whose
  // layers read the layer below's h_t through hbuf); not with FUSEDRNN_PERSISTENT_EXCHANGE=
  // barrier. One zeroed [2][B][H] buffer a group, freed after the launch in stream order; every
  // group decides alike (same dtype and sizes).
  using S = std::remove_const_t<std::remove_pointer_t<decltype(L.d[0].w_hh)>>;
  const bool fl = FlagWord<S>::ok && !wave && persistent_get_tuning().flags >= 0 &&
                  !env_barrier && plan.kc_fwd >= d[0].H;
  std::vector<Tensor> flag_bufs;
  for (int g = 0; g < groups && fl; ++g) {
    const auto wt = sizeof(typename FlagWord<S>::W) == 4 ? at::kInt : at::kLong;
    flag_bufs.push_back(
        at::zeros({2, d[g].B, d[g].H}, at::TensorOptions(wt).device(dev)));
    L.d[g].flags = flag_bufs.back().data_ptr();
  }
  for (Params& p : L.d) p.mma = plan.mma_fwd && mma_ok;
  L.per_dir = plan.blocks;
  trace(groups * plan.blocks);
  launch(kernel, groups * plan.blocks, plan.threads, plan.smem_fwd, L);
}

// A stack of layers (the wavefront ops): weights as torch.nn's flat list, `per` tensors a layer.
struct StackWeights {
  at::TensorList w;
  int per, layers;
  StackWeights(const char* op, at::TensorList weights, bool has_biases, const Tensor& h0)
      : w(weights), per(has_biases ? 4 : 2), layers(int(weights.size()) / per) {
    TORCH_CHECK(weights.size() % per == 0 && layers >= 1 && layers <= kMaxGroups, op,
                ": weights must hold 1..", kMaxGroups, " layers of ", per,
                " tensors (w_ih, w_hh", per == 4 ? ", b_ih, b_hh" : "", "), got ",
                weights.size());
    TORCH_CHECK(h0.dim() == 3 && h0.size(0) == layers, op, ": h0 must be [", layers,
                ", B, H] (one row a layer), got ", h0.sizes());
  }
  const Tensor& w_ih(int l) const { return w[l * per]; }
  const Tensor& w_hh(int l) const { return w[l * per + 1]; }
  OptTensor b_ih(int l) const { return per == 4 ? OptTensor(w[l * per + 2]) : OptTensor(); }
  OptTensor b_hh(int l) const { return per == 4 ? OptTensor(w[l * per + 3]) : OptTensor(); }
};

}  // namespace persistent_detail

// ====================================================================== common
#if defined(FRNN_PERSISTENT_PART_COMMON)

PersistentArch persistent_arch() {
#if defined(__CUDACC__)
  const cudaDeviceProp* d = at::cuda::getCurrentDeviceProperties();  // cached by ATen
  // Clusters from sm_90 on, 16 blocks with the non-portable opt-in (the launcher asks the
  // occupancy calculator whether the plan's cluster runs).
  return {d->multiProcessorCount, size_t(d->sharedMemPerBlockOptin),
          std::min(d->maxThreadsPerBlock, persistent_detail::kMaxThreads), d->major >= 9 ? 16 : 0};
#else
  const ::simt::Arch& a = ::simt::arch();  // the SIMT layer's configured architecture
  return {a.sms, a.smem_per_block_optin, 1024, ::simt::max_cluster_size()};
#endif
}

PersistentPlan persistent_plan(RnnKind kind, int64_t B, int64_t H, at::ScalarType dtype,
                               int groups, bool wave) {
  PersistentArch arch = persistent_arch();
  arch.sms /= groups;  // groups side by side: a share of the SMs each (one cluster each)
  return ::fusedrnn::persistent_plan(kind, B, H, dtype, arch, wave);
}

bool persistent_supported(RnnKind kind, int64_t B, int64_t H, at::ScalarType dtype) {
  return persistent_plan(kind, B, H, dtype).fits;
}

#endif  // FRNN_PERSISTENT_PART_COMMON

namespace persistent_detail {
inline PersistentPlan plan_or_throw(RnnKind kind, const char* op, int64_t B, int64_t H,
                                    at::ScalarType dtype, int groups = 1, bool wave = false) {
  PersistentPlan plan = persistent_plan(kind, B, H, dtype, groups, wave);
  TORCH_CHECK(plan.fits, op, ": ", plan.why);
  return plan;
}
}  // namespace persistent_detail

// ====================================================================== LSTM
#if defined(FRNN_PERSISTENT_PART_LSTM)

namespace persistent_detail {
// One direction's buffers of an LSTM forward: the hoisted input projection of all steps (acc
// dtype, both biases folded in, in the GEMM policy of cuda/hoisted_gemm.h: the half types'
// operands as stored), h exchanged in the storage dtype (hbuf), the saved tensors (none without
// save: then c_n straight from the kernel's final state).
struct LstmFwdBuffers {
  Steps st;
  Tensor steps, xproj, hbuf, whh, c0, gates, cells, c_n;
  Tensor wih, bias;  // without project: W_ih and b_ih + b_hh (acc) for the kernel
};
// project = false (a wavefront's layers above the first): no xproj, the kernel computes it.
inline LstmFwdBuffers lstm_fwd_buffers(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                       const Tensor& w_ih, const Tensor& w_hh,
                                       const OptTensor& b_ih, const OptTensor& b_hh,
                                       bool reverse, const OptTensor& batch_sizes, bool save,
                                       const Sizes& sz, bool project = true) {
  const int64_t B = sz.B, H = sz.H, I = sz.I, N = sz.N;
  LstmFwdBuffers f{stepwise::make_steps(x, batch_sizes, reverse)};
  f.steps = step_table(f.st, x);
  const auto acc = acc_type(x.scalar_type());
  const OptTensor bias = b_ih ? OptTensor(b_ih->to(acc) + b_hh->to(acc)) : OptTensor();
  if (project)
    f.xproj = stepwise::policy_mm(x.reshape({N, I}), w_ih.t(), x.scalar_type(), acc, bias);
  else if (bias)
    f.bias = bias->contiguous();
  f.wih = project ? Tensor() : w_ih.contiguous();
  f.hbuf = at::empty({2, B, H}, x.options());
  FRNN_POISON(f.hbuf);
  f.hbuf[0].copy_(h0);
  if (f.st.packed) f.hbuf[1].copy_(h0);  // reverse: a row becoming live reads h0 from either slot
  f.gates = at::empty({save ? N : 0, 4 * H}, x.options());
  f.cells = at::empty({save ? N : 0, H}, x.options());
  f.c_n = save ? Tensor() : at::empty({B, H}, x.options());
  FRNN_POISON(f.gates);
  FRNN_POISON(f.cells);
  if (!save) FRNN_POISON(f.c_n);
  f.whh = w_hh.contiguous();
  f.c0 = c0.contiguous();
  return f;
}
template <class S, class A>
LstmFwdParams<S, A> lstm_fwd_params(const LstmFwdBuffers& f, S* y, int64_t ldy,
                                    const PersistentPlan& plan, const Sizes& sz, bool reverse,
                                    bool save) {
  LstmFwdParams<S, A> p{f.xproj.defined() ? f.xproj.data_ptr<A>() : nullptr,
                        f.whh.data_ptr<S>(), f.c0.data_ptr<S>(),
                        f.hbuf.data_ptr<S>(), y, save ? f.gates.data_ptr<S>() : nullptr,
                        save ? f.cells.data_ptr<S>() : nullptr, table_ptr(f.steps), int(sz.T),
                        int(sz.B), int(sz.H), plan.units, plan.kc_fwd, reverse};
  p.c_n = save ? nullptr : f.c_n.data_ptr<S>();
  p.ldy = ldy;
  if (f.wih.defined()) p.w_ih = f.wih.data_ptr<S>();
  if (f.bias.defined()) p.bias = f.bias.data_ptr<A>();
  return p;
}
}  // namespace persistent_detail

T5 lstm_forward_persistent(const Tensor& x, const Tensor& h0, const Tensor& c0,
                           const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                           const OptTensor& b_hh, bool reverse, const OptTensor& batch_sizes,
                           bool save) {
  using namespace persistent_detail;
  const char* op = "lstm_forward_persistent";
  const Sizes sz = check_layer_inputs(op, 4, x, h0, &c0, w_ih, w_hh, b_ih, b_hh, batch_sizes);
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t B = sz.B, H = sz.H, N = sz.N;
  if (N == 0 && !save)
    return {x.new_empty(sz.rows(H)), h0.contiguous().clone(), c0.contiguous().clone(),
            x.new_empty({0}), x.new_empty({0})};
  if (N == 0)
    return {x.new_empty(sz.rows(H)), h0.contiguous().clone(), c0.contiguous().clone(),
            x.new_empty(sz.rows(4 * H)), x.new_empty(sz.rows(H))};
  const PersistentPlan plan = plan_or_throw(RnnKind::Lstm, op, B, H, x.scalar_type());
  const LstmFwdBuffers f =
      lstm_fwd_buffers(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, save, sz);
  auto y = at::empty({N, H}, x.options());
  FRNN_POISON(y);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lstm_fwd_pers", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    const auto p = lstm_fwd_params<S, A>(f, y.data_ptr<S>(), H, plan, sz, reverse, save);
    launch_fwd(&lstm_fwd_kernel<S, A>, plan, &p, 1,
               sizeof(S) == 2 || stepwise::rnn_tf32_allowed());
  });
  const Steps& st = f.st;
  if (!save)
    return {st.shaped(y), stepwise::final_rows(y, st), f.c_n, x.new_empty({0}), x.new_empty({0})};
  return {st.shaped(y), stepwise::final_rows(y, st), stepwise::final_rows(f.cells, st),
          st.shaped(f.gates), st.shaped(f.cells)};
}

T5 lstm_forward_persistent_bidir(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                 const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                                 const OptTensor& b_hh, const Tensor& w_ih_r,
                                 const Tensor& w_hh_r, const OptTensor& b_ih_r,
                                 const OptTensor& b_hh_r, const OptTensor& batch_sizes,
                                 bool save) {
  using namespace persistent_detail;
  const char* op = "lstm_forward_persistent_bidir";
  TORCH_CHECK(h0.dim() == 3 && h0.size(0) == 2 && c0.dim() == 3 && c0.size(0) == 2, op,
              ": h0 and c0 must be [2, B, H] (both directions), got ", h0.sizes(), " and ",
              c0.sizes());
  const Tensor h0f = h0[0], h0r = h0[1], c0f = c0[0], c0r = c0[1];
  const Sizes sz = check_layer_inputs(op, 4, x, h0f, &c0f, w_ih, w_hh, b_ih, b_hh, batch_sizes);
  const Sizes sr =
      check_layer_inputs(op, 4, x, h0r, &c0r, w_ih_r, w_hh_r, b_ih_r, b_hh_r, batch_sizes);
  TORCH_CHECK(sr.H == sz.H, op, ": both directions need the same hidden size");
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t B = sz.B, H = sz.H, N = sz.N;
  // save: both directions' gates and cells in one tensor each, [2, N, ...] (direction-major).
  auto gates = at::empty({save ? 2 : 0, N, 4 * H}, x.options());
  auto cells = at::empty({save ? 2 : 0, N, H}, x.options());
  auto saved = [&](const Tensor& t) {  // [2, T, B, K] dense, [2, N, K] packed; none: [0]
    if (!save) return x.new_empty({0});
    return batch_sizes ? t : t.view({2, sz.T, B, t.size(-1)});
  };
  if (N == 0)
    return {x.new_empty(sz.rows(2 * H)), h0.contiguous().clone(), c0.contiguous().clone(),
            saved(gates), saved(cells)};
  FRNN_POISON(gates);
  FRNN_POISON(cells);
  const PersistentPlan plan = plan_or_throw(RnnKind::Lstm, op, B, H, x.scalar_type(), 2);
  LstmFwdBuffers d[2] = {
      lstm_fwd_buffers(x, h0f, c0f, w_ih, w_hh, b_ih, b_hh, false, batch_sizes, save, sz),
      lstm_fwd_buffers(x, h0r, c0r, w_ih_r, w_hh_r, b_ih_r, b_hh_r, true, batch_sizes, save, sr)};
  if (save)
    for (int k = 0; k < 2; ++k) d[k].gates = gates[k], d[k].cells = cells[k];
  auto y = at::empty({N, 2 * H}, x.options());  // [forward | reverse], as torch.nn's output
  FRNN_POISON(y);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lstm_fwd_pers2", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    const LstmFwdParams<S, A> both[2] = {
        lstm_fwd_params<S, A>(d[0], y.data_ptr<S>(), 2 * H, plan, sz, false, save),
        lstm_fwd_params<S, A>(d[1], y.data_ptr<S>() + H, 2 * H, plan, sr, true, save)};
    launch_fwd(&lstm_fwd_kernel<S, A>, plan, both, 2,
               sizeof(S) == 2 || stepwise::rnn_tf32_allowed());
  });
  auto h_n = at::stack({stepwise::final_rows(y.narrow(1, 0, H), d[0].st),
                        stepwise::final_rows(y.narrow(1, H, H), d[1].st)});
  auto c_n = save ? at::stack({stepwise::final_rows(cells[0], d[0].st),
                               stepwise::final_rows(cells[1], d[1].st)})
                  : at::stack({d[0].c_n, d[1].c_n});
  return {d[0].st.shaped(y), h_n, c_n, saved(gates), saved(cells)};
}

std::tuple<Tensor, Tensor, Tensor> lstm_forward_persistent_stack(
    const Tensor& x, const Tensor& h0, const Tensor& c0, at::TensorList weights, bool has_biases,
    const OptTensor& batch_sizes) {
  using namespace persistent_detail;
  const char* op = "lstm_forward_persistent_stack";
  const StackWeights w(op, weights, has_biases, h0);
  const int nl = w.layers;
  TORCH_CHECK(c0.dim() == 3 && c0.size(0) == nl, op, ": c0 must be [", nl,
              ", B, H] (one row a layer), got ", c0.sizes());
  const Tensor c00 = c0[0];
  const Sizes sz =
      check_layer_inputs(op, 4, x, h0[0], &c00, w.w_ih(0), w.w_hh(0), w.b_ih(0), w.b_hh(0),
                         batch_sizes);
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t B = sz.B, H = sz.H, N = sz.N;
  // Each layer's y [N,H]: the input of the layer above (read by the kernel), the last one the
  // output.
  std::vector<Tensor> ys;
  for (int l = 0; l < nl; ++l) ys.push_back(at::empty({N, H}, x.options()));
  std::vector<LstmFwdBuffers> f;
  std::vector<Sizes> sl;
  const Steps st = stepwise::make_steps(x, batch_sizes, false);
  for (int l = 0; l < nl; ++l) {
    const Tensor xin = l == 0 ? x : st.shaped(ys[l - 1]), cl = c0[l];
    sl.push_back(check_layer_inputs(op, 4, xin, h0[l], &cl, w.w_ih(l), w.w_hh(l), w.b_ih(l),
                                    w.b_hh(l), batch_sizes));
    TORCH_CHECK(sl.back().H == H, op, ": every layer needs the same hidden size");
  }
  if (N == 0) return {x.new_empty(sz.rows(H)), h0.contiguous().clone(), c0.contiguous().clone()};
  const PersistentPlan plan = plan_or_throw(RnnKind::Lstm, op, B, H, x.scalar_type(), nl, true);
  for (int l = 0; l < nl; ++l) {
    FRNN_POISON(ys[l]);
    const Tensor xin = l == 0 ? x : st.shaped(ys[l - 1]);
    f.push_back(lstm_fwd_buffers(xin, h0[l], c0[l], w.w_ih(l), w.w_hh(l), w.b_ih(l), w.b_hh(l),
                                 false, batch_sizes, false, sl[l], l == 0));
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lstm_fwd_wave", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    LstmFwdParams<S, A> ps[kMaxGroups];
    for (int l = 0; l < nl; ++l) {
      ps[l] = lstm_fwd_params<S, A>(f[l], ys[l].data_ptr<S>(), H, plan, sl[l], false, false);
      ps[l].lag = l;
      if (l > 0) ps[l].x_in = ys[l - 1].data_ptr<S>();
    }
    launch_fwd(&lstm_fwd_kernel<S, A>, plan, ps, nl,
               sizeof(S) == 2 || stepwise::rnn_tf32_allowed(), true);
  });
  std::vector<Tensor> h_n, c_n;
  for (int l = 0; l < nl; ++l) {
    h_n.push_back(stepwise::final_rows(ys[l], st));
    c_n.push_back(f[l].c_n);
  }
  return {st.shaped(ys[nl - 1]), at::stack(h_n), at::stack(c_n)};
}

namespace persistent_detail {
// One direction's backward: its inputs as the kernel reads them and its outputs. dy may be one
// direction's half of a bidirectional layer's [N, 2H] (dy_all, from column col: rows
// dy_all.size(-1) apart).
struct LstmBwdDir {
  Steps st;
  Tensor steps, dy_all, dhn, dcn, c0, whh, gates, cells, da, dh0, dc0;
  int64_t col;
  bool dh0_on_host;  // the rows' first steps differ (packed, reverse): dh0 by the host
};
inline LstmBwdDir lstm_bwd_dir(const Tensor& dy_all, int64_t col, const Tensor& dh_n,
                               const Tensor& dc_n, const Tensor& x, const Tensor& c0,
                               const Tensor& w_hh, const Tensor& gates, const Tensor& cells,
                               bool reverse, const OptTensor& batch_sizes, const Sizes& sz) {
  LstmBwdDir d{stepwise::make_steps(x, batch_sizes, reverse)};
  d.steps = step_table(d.st, x);
  d.dh0_on_host = d.st.packed && reverse;
  d.dy_all = dy_all.contiguous();
  d.col = col;
  d.dhn = dh_n.contiguous(), d.dcn = dc_n.contiguous(), d.c0 = c0.contiguous();
  d.whh = w_hh.contiguous(), d.gates = gates.contiguous(), d.cells = cells.contiguous();
  d.da = at::empty({sz.N, 4 * sz.H}, x.options().dtype(acc_type(x.scalar_type())));
  d.dh0 = at::empty({sz.B, sz.H}, x.options());
  d.dc0 = at::empty({sz.B, sz.H}, x.options());
  FRNN_POISON(d.da);
  FRNN_POISON(d.dh0);
  FRNN_POISON(d.dc0);
  return d;
}
template <class S, class A>
LstmBwdParams<S, A> lstm_bwd_params(const LstmBwdDir& d, const PersistentPlan& plan,
                                    const Sizes& sz, bool reverse) {
  LstmBwdParams<S, A> p{d.dy_all.data_ptr<S>() + d.col, d.dhn.data_ptr<S>(), d.dcn.data_ptr<S>(),
                        d.c0.data_ptr<S>(), d.whh.data_ptr<S>(), d.gates.data_ptr<S>(),
                        d.cells.data_ptr<S>(), d.da.data_ptr<A>(), d.dh0.data_ptr<S>(),
                        d.dc0.data_ptr<S>(), table_ptr(d.steps), int(sz.T), int(sz.B),
                        int(sz.H), plan.units, plan.kc_bwd, reverse, d.dh0_on_host};
  p.mma = plan.mma_bwd && (sizeof(S) == 2 || stepwise::rnn_tf32_allowed());
  p.ldy = d.dy_all.size(-1);
  return p;
}
// After the launch: dh0 (when not done in the kernel: the recurrence's precision), dx and the
// weight gradients (the GEMM policy), single GEMMs over all N rows (cuda/hoisted_gemm.h); db a
// sum. y: this direction's output (any strides). Returns (dx, dh0, dc0, dw_ih, dw_hh, db).
inline T6 lstm_bwd_gemms(const LstmBwdDir& d, const Tensor& x, const Tensor& h0,
                         const Tensor& w_ih, const Tensor& w_hh, const Tensor& y,
                         const Sizes& sz) {
  using stepwise::policy_mm;
  const auto dtype = x.scalar_type();
  const Steps& st = d.st;
  Tensor dh0 = d.dh0;
  if (d.dh0_on_host)
    dh0 = stepwise::recurrent_mm(stepwise::initial_rows(d.da, st), w_hh, dtype, dtype);
  auto dx = st.shaped(policy_mm(d.da, w_ih, dtype, dtype));
  auto dw_ih = policy_mm(d.da.t(), x.reshape({sz.N, sz.I}), dtype, dtype);
  auto hp = stepwise::previous_rows(stepwise::flat(y, st), h0.contiguous(), st);
  auto dw_hh = policy_mm(d.da.t(), hp, dtype, dtype);
  return {dx, dh0, d.dc0, dw_ih, dw_hh, d.da.sum(0).to(dtype)};
}
}  // namespace persistent_detail

T6 lstm_backward_persistent(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n,
                            const Tensor& x, const Tensor& h0, const Tensor& c0,
                            const Tensor& w_ih, const Tensor& w_hh, const Tensor& y,
                            const Tensor& gates, const Tensor& cells_, bool reverse,
                            const OptTensor& batch_sizes) {
  using namespace persistent_detail;
  const char* op = "lstm_backward_persistent";
  const Sizes sz = check_layer_inputs(op, 4, x, h0, &c0, w_ih, w_hh, {}, {}, batch_sizes);
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t B = sz.B, H = sz.H, N = sz.N;
  check_grad(op, dy, sz.rows(H), x, "dy");
  check_grad(op, dh_n, {B, H}, x, "dh_n");
  check_grad(op, dc_n, {B, H}, x, "dc_n");
  check_grad(op, y, sz.rows(H), x, "y");
  check_grad(op, gates, sz.rows(4 * H), x, "gates");
  check_grad(op, cells_, sz.rows(H), x, "cells");
  if (N == 0)
    return {at::zeros_like(x), dh_n.contiguous().clone(), dc_n.contiguous().clone(),
            at::zeros_like(w_ih), at::zeros_like(w_hh), x.new_zeros({4 * H})};
  const PersistentPlan plan = plan_or_throw(RnnKind::Lstm, op, B, H, x.scalar_type());
  const LstmBwdDir d =
      lstm_bwd_dir(dy, 0, dh_n, dc_n, x, c0, w_hh, gates, cells_, reverse, batch_sizes, sz);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lstm_bwd_pers", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    const auto p = lstm_bwd_params<S, A>(d, plan, sz, reverse);
    launch(&lstm_bwd_kernel<S, A>, plan.blocks, plan.threads, plan.smem_bwd,
           BwdLaunch<LstmBwdParams<S, A>>{{p, p}, plan.blocks});
  });
  return lstm_bwd_gemms(d, x, h0, w_ih, w_hh, y, sz);
}

T9 lstm_backward_persistent_bidir(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n,
                                  const Tensor& x, const Tensor& h0, const Tensor& c0,
                                  const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_ih_r,
                                  const Tensor& w_hh_r, const Tensor& y, const Tensor& gates,
                                  const Tensor& cells, const OptTensor& batch_sizes) {
  using namespace persistent_detail;
  const char* op = "lstm_backward_persistent_bidir";
  check_bidir_state(op, h0, &c0);
  check_bidir_saved(op, gates, "gates", cells, "cells");
  const Tensor h0f = h0[0], h0r = h0[1], c0f = c0[0], c0r = c0[1];
  const Sizes sz = check_layer_inputs(op, 4, x, h0f, &c0f, w_ih, w_hh, {}, {}, batch_sizes);
  const Sizes sr = check_layer_inputs(op, 4, x, h0r, &c0r, w_ih_r, w_hh_r, {}, {}, batch_sizes);
  TORCH_CHECK(sr.H == sz.H, op, ": both directions need the same hidden size");
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t B = sz.B, H = sz.H, N = sz.N;
  check_grad(op, dy, sz.rows(2 * H), x, "dy");
  check_grad(op, dh_n, {2, B, H}, x, "dh_n");
  check_grad(op, dc_n, {2, B, H}, x, "dc_n");
  check_grad(op, y, sz.rows(2 * H), x, "y");
  for (int k = 0; k < 2; ++k) {
    check_grad(op, gates[k], sz.rows(4 * H), x, "gates[k]");
    check_grad(op, cells[k], sz.rows(H), x, "cells[k]");
  }
  if (N == 0)
    return {at::zeros_like(x),     dh_n.contiguous().clone(), dc_n.contiguous().clone(),
            at::zeros_like(w_ih),  at::zeros_like(w_hh),      x.new_zeros({4 * H}),
            at::zeros_like(w_ih_r), at::zeros_like(w_hh_r),   x.new_zeros({4 * H})};
  const PersistentPlan plan = plan_or_throw(RnnKind::Lstm, op, B, H, x.scalar_type(), 2);
  const Tensor g = gates.reshape({2, N, 4 * H}), c = cells.reshape({2, N, H});
  const Tensor dyc = dy.contiguous();  // once: both directions read their half of it
  const LstmBwdDir d[2] = {
      lstm_bwd_dir(dyc, 0, dh_n[0], dc_n[0], x, c0f, w_hh, g[0], c[0], false, batch_sizes, sz),
      lstm_bwd_dir(dyc, H, dh_n[1], dc_n[1], x, c0r, w_hh_r, g[1], c[1], true, batch_sizes, sr)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lstm_bwd_pers2", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    launch(&lstm_bwd_kernel<S, A>, 2 * plan.blocks, plan.threads, plan.smem_bwd,
           BwdLaunch<LstmBwdParams<S, A>>{
               {lstm_bwd_params<S, A>(d[0], plan, sz, false),
                lstm_bwd_params<S, A>(d[1], plan, sr, true)},
               plan.blocks});
  });
  const Tensor yc = y.reshape({N, 2 * H});
  auto f = lstm_bwd_gemms(d[0], x, h0f, w_ih, w_hh, yc.narrow(1, 0, H), sz);
  auto r = lstm_bwd_gemms(d[1], x, h0r, w_ih_r, w_hh_r, yc.narrow(1, H, H), sr);
  return {std::get<0>(f).add_(std::get<0>(r)),
          at::stack({std::get<1>(f), std::get<1>(r)}),
          at::stack({std::get<2>(f), std::get<2>(r)}),
          std::get<3>(f), std::get<4>(f), std::get<5>(f),
          std::get<3>(r), std::get<4>(r), std::get<5>(r)};
}

#endif  // FRNN_PERSISTENT_PART_LSTM

// ====================================================================== GRU
#if defined(FRNN_PERSISTENT_PART_GRU)

namespace persistent_detail {
// One direction's buffers of a GRU forward (as LstmFwdBuffers; b_hh stays apart: it is inside
// the reset gate's product).
struct GruFwdBuffers {
  Steps st;
  Tensor steps, xproj, bhh, hbuf, whh, gates, ghn;
  Tensor wih, bias;  // without project (as LstmFwdBuffers): W_ih and b_ih (acc)
};
inline GruFwdBuffers gru_fwd_buffers(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                     const Tensor& w_hh, const OptTensor& b_ih,
                                     const OptTensor& b_hh, bool reverse,
                                     const OptTensor& batch_sizes, bool save, const Sizes& sz,
                                     bool project = true) {
  const int64_t B = sz.B, H = sz.H, I = sz.I, N = sz.N;
  GruFwdBuffers f{stepwise::make_steps(x, batch_sizes, reverse)};
  f.steps = step_table(f.st, x);
  const auto acc = acc_type(x.scalar_type());
  const OptTensor bias = b_ih ? OptTensor(b_ih->to(acc)) : OptTensor();
  if (project)
    f.xproj = stepwise::policy_mm(x.reshape({N, I}), w_ih.t(), x.scalar_type(), acc, bias);
  else if (bias)
    f.bias = bias->contiguous();
  f.wih = project ? Tensor() : w_ih.contiguous();
  f.bhh = b_hh ? b_hh->to(acc).contiguous() : Tensor();
  f.hbuf = at::empty({2, B, H}, x.options());
  FRNN_POISON(f.hbuf);
  f.hbuf[0].copy_(h0);
  if (f.st.packed) f.hbuf[1].copy_(h0);  // reverse: a row becoming live reads h0 from either slot
  f.gates = at::empty({save ? N : 0, 3 * H}, x.options());  // none without save
  f.ghn = at::empty({save ? N : 0, H}, x.options());
  FRNN_POISON(f.gates);
  FRNN_POISON(f.ghn);
  f.whh = w_hh.contiguous();
  return f;
}
template <class S, class A>
GruFwdParams<S, A> gru_fwd_params(const GruFwdBuffers& f, S* y, int64_t ldy,
                                  const PersistentPlan& plan, const Sizes& sz, bool reverse,
                                  bool save) {
  GruFwdParams<S, A> p{f.xproj.defined() ? f.xproj.data_ptr<A>() : nullptr,
                       f.bhh.defined() ? f.bhh.data_ptr<A>() : nullptr,
                       f.whh.data_ptr<S>(), f.hbuf.data_ptr<S>(), y,
                       save ? f.gates.data_ptr<S>() : nullptr,
                       save ? f.ghn.data_ptr<S>() : nullptr, table_ptr(f.steps), int(sz.T),
                       int(sz.B), int(sz.H), plan.units, plan.kc_fwd, reverse};
  p.ldy = ldy;
  if (f.wih.defined()) p.w_ih = f.wih.data_ptr<S>();
  if (f.bias.defined()) p.bias = f.bias.data_ptr<A>();
  return p;
}
}  // namespace persistent_detail

T4 gru_forward_persistent(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                          const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                          bool reverse, const OptTensor& batch_sizes, bool save) {
  using namespace persistent_detail;
  const char* op = "gru_forward_persistent";
  const Sizes sz = check_layer_inputs(op, 3, x, h0, nullptr, w_ih, w_hh, b_ih, b_hh, batch_sizes);
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t B = sz.B, H = sz.H, N = sz.N;
  if (N == 0 && !save)
    return {x.new_empty(sz.rows(H)), h0.contiguous().clone(), x.new_empty({0}),
            x.new_empty({0})};
  if (N == 0)
    return {x.new_empty(sz.rows(H)), h0.contiguous().clone(), x.new_empty(sz.rows(3 * H)),
            x.new_empty(sz.rows(H))};
  const PersistentPlan plan = plan_or_throw(RnnKind::Gru, op, B, H, x.scalar_type());
  const GruFwdBuffers f =
      gru_fwd_buffers(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, save, sz);
  auto y = at::empty({N, H}, x.options());
  FRNN_POISON(y);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gru_fwd_pers", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    const auto p = gru_fwd_params<S, A>(f, y.data_ptr<S>(), H, plan, sz, reverse, save);
    launch_fwd(&gru_fwd_kernel<S, A>, plan, &p, 1,
               sizeof(S) == 2 || stepwise::rnn_tf32_allowed());
  });
  const Steps& st = f.st;
  if (!save)
    return {st.shaped(y), stepwise::final_rows(y, st), x.new_empty({0}), x.new_empty({0})};
  return {st.shaped(y), stepwise::final_rows(y, st), st.shaped(f.gates), st.shaped(f.ghn)};
}

T4 gru_forward_persistent_bidir(
    const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
    const OptTensor& b_ih, const OptTensor& b_hh, const Tensor& w_ih_r, const Tensor& w_hh_r,
    const OptTensor& b_ih_r, const OptTensor& b_hh_r, const OptTensor& batch_sizes, bool save) {
  using namespace persistent_detail;
  const char* op = "gru_forward_persistent_bidir";
  TORCH_CHECK(h0.dim() == 3 && h0.size(0) == 2, op,
              ": h0 must be [2, B, H] (both directions), got ", h0.sizes());
  const Sizes sz = check_layer_inputs(op, 3, x, h0[0], nullptr, w_ih, w_hh, b_ih, b_hh,
                                      batch_sizes);
  const Sizes sr = check_layer_inputs(op, 3, x, h0[1], nullptr, w_ih_r, w_hh_r, b_ih_r, b_hh_r,
                                      batch_sizes);
  TORCH_CHECK(sr.H == sz.H, op, ": both directions need the same hidden size");
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t B = sz.B, H = sz.H, N = sz.N;
  // save: as the LSTM's, gates [2, N, 3H] and ghn [2, N, H].
  auto gates = at::empty({save ? 2 : 0, N, 3 * H}, x.options());
  auto ghn = at::empty({save ? 2 : 0, N, H}, x.options());
  auto saved = [&](const Tensor& t) {
    if (!save) return x.new_empty({0});
    return batch_sizes ? t : t.view({2, sz.T, B, t.size(-1)});
  };
  if (N == 0)
    return {x.new_empty(sz.rows(2 * H)), h0.contiguous().clone(), saved(gates), saved(ghn)};
  FRNN_POISON(gates);
  FRNN_POISON(ghn);
  const PersistentPlan plan = plan_or_throw(RnnKind::Gru, op, B, H, x.scalar_type(), 2);
  GruFwdBuffers d[2] = {
      gru_fwd_buffers(x, h0[0], w_ih, w_hh, b_ih, b_hh, false, batch_sizes, save, sz),
      gru_fwd_buffers(x, h0[1], w_ih_r, w_hh_r, b_ih_r, b_hh_r, true, batch_sizes, save, sr)};
  if (save)
    for (int k = 0; k < 2; ++k) d[k].gates = gates[k], d[k].ghn = ghn[k];
  auto y = at::empty({N, 2 * H}, x.options());  // [forward | reverse], as torch.nn's output
  FRNN_POISON(y);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gru_fwd_pers2", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    const GruFwdParams<S, A> both[2] = {
        gru_fwd_params<S, A>(d[0], y.data_ptr<S>(), 2 * H, plan, sz, false, save),
        gru_fwd_params<S, A>(d[1], y.data_ptr<S>() + H, 2 * H, plan, sr, true, save)};
    launch_fwd(&gru_fwd_kernel<S, A>, plan, both, 2,
               sizeof(S) == 2 || stepwise::rnn_tf32_allowed());
  });
  auto h_n = at::stack({stepwise::final_rows(y.narrow(1, 0, H), d[0].st),
                        stepwise::final_rows(y.narrow(1, H, H), d[1].st)});
  return {d[0].st.shaped(y), h_n, saved(gates), saved(ghn)};
}

std::tuple<Tensor, Tensor> gru_forward_persistent_stack(const Tensor& x, const Tensor& h0,
                                                        at::TensorList weights, bool has_biases,
                                                        const OptTensor& batch_sizes) {
  using namespace persistent_detail;
  const char* op = "gru_forward_persistent_stack";
  const StackWeights w(op, weights, has_biases, h0);
  const int nl = w.layers;
  const Sizes sz = check_layer_inputs(op, 3, x, h0[0], nullptr, w.w_ih(0), w.w_hh(0), w.b_ih(0),
                                      w.b_hh(0), batch_sizes);
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t B = sz.B, H = sz.H, N = sz.N;
  std::vector<Tensor> ys;  // as the LSTM's
  for (int l = 0; l < nl; ++l) ys.push_back(at::empty({N, H}, x.options()));
  std::vector<GruFwdBuffers> f;
  std::vector<Sizes> sl;
  const Steps st = stepwise::make_steps(x, batch_sizes, false);
  for (int l = 0; l < nl; ++l) {
    const Tensor xin = l == 0 ? x : st.shaped(ys[l - 1]);
    sl.push_back(check_layer_inputs(op, 3, xin, h0[l], nullptr, w.w_ih(l), w.w_hh(l), w.b_ih(l),
                                    w.b_hh(l), batch_sizes));
    TORCH_CHECK(sl.back().H == H, op, ": every layer needs the same hidden size");
  }
  if (N == 0) return {x.new_empty(sz.rows(H)), h0.contiguous().clone()};
  const PersistentPlan plan = plan_or_throw(RnnKind::Gru, op, B, H, x.scalar_type(), nl, true);
  for (int l = 0; l < nl; ++l) {
    FRNN_POISON(ys[l]);
    const Tensor xin = l == 0 ? x : st.shaped(ys[l - 1]);
    f.push_back(gru_fwd_buffers(xin, h0[l], w.w_ih(l), w.w_hh(l), w.b_ih(l), w.b_hh(l), false,
                                batch_sizes, false, sl[l], l == 0));
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gru_fwd_wave", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    GruFwdParams<S, A> ps[kMaxGroups];
    for (int l = 0; l < nl; ++l) {
      ps[l] = gru_fwd_params<S, A>(f[l], ys[l].data_ptr<S>(), H, plan, sl[l], false, false);
      ps[l].lag = l;
      if (l > 0) ps[l].x_in = ys[l - 1].data_ptr<S>();
    }
    launch_fwd(&gru_fwd_kernel<S, A>, plan, ps, nl,
               sizeof(S) == 2 || stepwise::rnn_tf32_allowed(), true);
  });
  std::vector<Tensor> h_n;
  for (int l = 0; l < nl; ++l) h_n.push_back(stepwise::final_rows(ys[l], st));
  return {st.shaped(ys[nl - 1]), at::stack(h_n)};
}

namespace persistent_detail {
// One direction's backward (as LstmBwdDir): dy and y may be one direction's half of a
// bidirectional layer's [N, 2H] (dy_all, y_all from column col, rows size(-1) apart).
struct GruBwdDir {
  Steps st;
  Tensor steps, dy_all, y_all, dhn, h0, whh, gates, ghn, dgx, dgh, dh0;
  int64_t col;
  bool dh0_on_host;
};
inline GruBwdDir gru_bwd_dir(const Tensor& dy_all, const Tensor& y_all, int64_t col,
                             const Tensor& dh_n, const Tensor& x, const Tensor& h0,
                             const Tensor& w_hh, const Tensor& gates, const Tensor& ghn,
                             bool reverse, const OptTensor& batch_sizes, const Sizes& sz) {
  GruBwdDir d{stepwise::make_steps(x, batch_sizes, reverse)};
  d.steps = step_table(d.st, x);
  d.dh0_on_host = d.st.packed && reverse;
  d.dy_all = dy_all.contiguous(), d.y_all = y_all.contiguous();
  d.col = col;
  d.dhn = dh_n.contiguous(), d.h0 = h0.contiguous(), d.whh = w_hh.contiguous();
  d.gates = gates.contiguous(), d.ghn = ghn.contiguous();
  const auto acc = x.options().dtype(acc_type(x.scalar_type()));
  d.dgx = at::empty({sz.N, 3 * sz.H}, acc);
  d.dgh = at::empty({sz.N, 3 * sz.H}, acc);
  d.dh0 = at::empty({sz.B, sz.H}, x.options());
  FRNN_POISON(d.dgx);
  FRNN_POISON(d.dgh);
  FRNN_POISON(d.dh0);
  return d;
}
template <class S, class A>
GruBwdParams<S, A> gru_bwd_params(const GruBwdDir& d, const PersistentPlan& plan,
                                  const Sizes& sz, bool reverse) {
  GruBwdParams<S, A> p{d.dy_all.data_ptr<S>() + d.col, d.dhn.data_ptr<S>(), d.h0.data_ptr<S>(),
                       d.y_all.data_ptr<S>() + d.col, d.whh.data_ptr<S>(),
                       d.gates.data_ptr<S>(), d.ghn.data_ptr<S>(), d.dgx.data_ptr<A>(),
                       d.dgh.data_ptr<A>(), d.dh0.data_ptr<S>(), table_ptr(d.steps), int(sz.T),
                       int(sz.B), int(sz.H), plan.units, plan.kc_bwd, reverse, d.dh0_on_host};
  p.mma = plan.mma_bwd && (sizeof(S) == 2 || stepwise::rnn_tf32_allowed());
  TORCH_CHECK(d.dy_all.size(-1) == d.y_all.size(-1), "persistent: dy and y of different widths");
  p.ldy = d.dy_all.size(-1);
  return p;
}
// After the launch, as lstm_bwd_gemms: (dx, dh0, dw_ih, dw_hh, db_ih, db_hh).
inline T6 gru_bwd_gemms(const GruBwdDir& d, const Tensor& x, const Tensor& w_ih,
                        const Tensor& w_hh, const Sizes& sz) {
  using stepwise::policy_mm;
  const auto dtype = x.scalar_type(), acc = acc_type(dtype);
  const Steps& st = d.st;
  Tensor dh0 = d.dh0;
  if (d.dh0_on_host)  // the kernel wrote the direct part z * dh; add dgh(first steps) W_hh
    dh0 = stepwise::recurrent_mm(stepwise::initial_rows(d.dgh, st), w_hh, dtype, acc)
              .add_(d.dh0.to(acc))
              .to(dtype);
  auto dx = st.shaped(policy_mm(d.dgx, w_ih, dtype, dtype));
  auto dw_ih = policy_mm(d.dgx.t(), x.reshape({sz.N, sz.I}), dtype, dtype);
  const Tensor y = d.y_all.view({sz.N, d.y_all.size(-1)}).narrow(1, d.col, sz.H);
  auto hp = stepwise::previous_rows(stepwise::flat(y, st), d.h0, st);
  auto dw_hh = policy_mm(d.dgh.t(), hp, dtype, dtype);
  return {dx, dh0, dw_ih, dw_hh, d.dgx.sum(0).to(dtype), d.dgh.sum(0).to(dtype)};
}
}  // namespace persistent_detail

T6 gru_backward_persistent(const Tensor& dy, const Tensor& dh_n, const Tensor& x,
                           const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                           const Tensor& y, const Tensor& gates, const Tensor& ghn,
                           bool reverse, const OptTensor& batch_sizes) {
  using namespace persistent_detail;
  const char* op = "gru_backward_persistent";
  const Sizes sz = check_layer_inputs(op, 3, x, h0, nullptr, w_ih, w_hh, {}, {}, batch_sizes);
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t B = sz.B, H = sz.H, N = sz.N;
  check_grad(op, dy, sz.rows(H), x, "dy");
  check_grad(op, dh_n, {B, H}, x, "dh_n");
  check_grad(op, y, sz.rows(H), x, "y");
  check_grad(op, gates, sz.rows(3 * H), x, "gates");
  check_grad(op, ghn, sz.rows(H), x, "ghn");
  if (N == 0)
    return {at::zeros_like(x), dh_n.contiguous().clone(), at::zeros_like(w_ih),
            at::zeros_like(w_hh), x.new_zeros({3 * H}), x.new_zeros({3 * H})};
  const PersistentPlan plan = plan_or_throw(RnnKind::Gru, op, B, H, x.scalar_type());
  const GruBwdDir d =
      gru_bwd_dir(dy, y, 0, dh_n, x, h0, w_hh, gates, ghn, reverse, batch_sizes, sz);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gru_bwd_pers", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    const auto p = gru_bwd_params<S, A>(d, plan, sz, reverse);
    launch(&gru_bwd_kernel<S, A>, plan.blocks, plan.threads, plan.smem_bwd,
           BwdLaunch<GruBwdParams<S, A>>{{p, p}, plan.blocks});
  });
  return gru_bwd_gemms(d, x, w_ih, w_hh, sz);
}

T10 gru_backward_persistent_bidir(const Tensor& dy, const Tensor& dh_n, const Tensor& x,
                                  const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                  const Tensor& w_ih_r, const Tensor& w_hh_r, const Tensor& y,
                                  const Tensor& gates, const Tensor& ghn,
                                  const OptTensor& batch_sizes) {
  using namespace persistent_detail;
  const char* op = "gru_backward_persistent_bidir";
  check_bidir_state(op, h0, nullptr);
  check_bidir_saved(op, gates, "gates", ghn, "ghn");
  const Sizes sz = check_layer_inputs(op, 3, x, h0[0], nullptr, w_ih, w_hh, {}, {}, batch_sizes);
  const Sizes sr =
      check_layer_inputs(op, 3, x, h0[1], nullptr, w_ih_r, w_hh_r, {}, {}, batch_sizes);
  TORCH_CHECK(sr.H == sz.H, op, ": both directions need the same hidden size");
  check_device(op, x);
  FRNN_PERSISTENT_DEVICE_GUARD(x);
  const int64_t B = sz.B, H = sz.H, N = sz.N;
  check_grad(op, dy, sz.rows(2 * H), x, "dy");
  check_grad(op, dh_n, {2, B, H}, x, "dh_n");
  check_grad(op, y, sz.rows(2 * H), x, "y");
  for (int k = 0; k < 2; ++k) {
    check_grad(op, gates[k], sz.rows(3 * H), x, "gates[k]");
    check_grad(op, ghn[k], sz.rows(H), x, "ghn[k]");
  }
  if (N == 0) {
    auto z = [&](const Tensor& t) { return at::zeros_like(t); };
    return {z(x), dh_n.contiguous().clone(), z(w_ih), z(w_hh), x.new_zeros({3 * H}),
            x.new_zeros({3 * H}), z(w_ih_r), z(w_hh_r), x.new_zeros({3 * H}),
            x.new_zeros({3 * H})};
  }
  const PersistentPlan plan = plan_or_throw(RnnKind::Gru, op, B, H, x.scalar_type(), 2);
  const Tensor g = gates.reshape({2, N, 3 * H}), n = ghn.reshape({2, N, H});
  const Tensor dyc = dy.contiguous(), yc = y.contiguous();  // once: each direction reads a half
  const GruBwdDir d[2] = {
      gru_bwd_dir(dyc, yc, 0, dh_n[0], x, h0[0], w_hh, g[0], n[0], false, batch_sizes, sz),
      gru_bwd_dir(dyc, yc, H, dh_n[1], x, h0[1], w_hh_r, g[1], n[1], true, batch_sizes, sr)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gru_bwd_pers2", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    launch(&gru_bwd_kernel<S, A>, 2 * plan.blocks, plan.threads, plan.smem_bwd,
           BwdLaunch<GruBwdParams<S, A>>{
               {gru_bwd_params<S, A>(d[0], plan, sz, false),
                gru_bwd_params<S, A>(d[1], plan, sr, true)},
               plan.blocks});
  });
  auto f = gru_bwd_gemms(d[0], x, w_ih, w_hh, sz);
  auto r = gru_bwd_gemms(d[1], x, w_ih_r, w_hh_r, sr);
  return {std::get<0>(f).add_(std::get<0>(r)), at::stack({std::get<1>(f), std::get<1>(r)}),
          std::get<2>(f), std::get<3>(f), std::get<4>(f), std::get<5>(f),
          std::get<2>(r), std::get<3>(r), std::get<4>(r), std::get<5>(r)};
}

#endif  // FRNN_PERSISTENT_PART_GRU

}  // namespace FRNN_BACKEND_NS
}  // namespace fusedrnn
