// Persistent LSTM/GRU kernels: one cooperative launch per layer and direction runs all T steps,
// each block keeping its slice of W_hh resident in shared memory for the whole sequence.
// Compiled twice: under nvcc into fusedrnn::cuda (csrc/cuda/persistent_*.cu) and as host C++
// into fusedrnn::simt (csrc/simt/persistent_*.cpp), where the SIMT layer runs them on CPU threads.
//
// Contract of the ops: the same arguments, shapes, saved tensors and results as the matching
// functions of csrc/ops.h (lstm_forward, lstm_backward, gru_forward, gru_backward; dense or
// packed input, no projection). The tensors must live on the backend's device (CUDA for fusedrnn::cuda, CPU for
// fusedrnn::simt). When W_hh does not fit on chip, the op raises
//   "persistent: W_hh of H=... does not fit ..."
// so callers ask persistent_supported() first (algorithm "auto") or surface the error
// (algorithm "persistent").
// save=false (forward): as csrc/ops.h, empty gates / cells / ghn, the kernels store none (c_n
// comes from the kernel's final cell state instead of the saved cells); the input projection
// of all steps is still one [N, G*H] buffer (the single launch reads every step's).
//
// Design (see csrc/cuda/persistent_kernels.cuh for the details):
//   forward   block k owns hidden units [k*U, k*U+U) (all G gates of them) and keeps the G*U rows
//             of W_hh [G*U, H] in shared memory; per step it reads h_{t-1} [B,H] (storage dtype,
//             double-buffered in global memory; its own units' share stays on chip), computes
//             its G*U recurrent dot products for all B rows, applies the cell (c stays in shared
//             memory) and writes h_t; one grid barrier per step. On sm_90, when the plan prefers
//             it, the launch is one thread-block cluster instead: h_{t-1} stays in shared memory,
//             each block pushes its h_t slice into its peers' through distributed shared memory,
//             one cluster barrier per step.
//   backward  block k keeps the COLUMNS W_hh[:, k-slice] ([G*H, U]) resident; per step (time
//             reversed) it computes dh_t[:, slice] = da_{t+1} W_hh[:, slice] from every block's
//             da_{t+1} (global, acc dtype), applies the cell backward and writes da_t[:, its
//             gates]; one grid barrier per step. The weight gradients, dx and the biases are
//             ATen GEMMs over all T*B rows afterwards; the input projection is one ATen GEMM
//             before the forward launch.
//   bidir     (*_persistent_bidir) both directions of a layer in one launch, forward or
//             backward: blocks [0, n) run the forward direction, [n, 2n) the reverse one (the
//             plan sized for half the SMs each), one grid barrier common to both (the forward:
//             or one thread-block cluster each).
//   stack     (lstm/gru_forward_persistent_stack) the layers of a unidirectional stack as a
//             wavefront: a group of blocks a layer, layer l one launch step behind layer l-1;
//             layers above the first also hold W_ih's slice and compute their input projection
//             from the h_t the layer below wrote in the previous launch step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "bidir_ops.h"
#include "ops.h"

namespace fusedrnn {

enum class RnnKind { Lstm = 0, Gru = 1 };

// What the sizing rule needs to know about the device.
struct PersistentArch {
  int sms;             // streaming multiprocessors (one block per SM)
  size_t smem_optin;   // max dynamic shared memory per block after the opt-in
  int max_threads;     // threads per block
  int max_cluster = 0; // blocks in a thread-block cluster (sm_90: 16), 0: no clusters
};

// The forward on one thread-block cluster (sm_90), when W_hh fits in it: the blocks exchange h
// through distributed shared memory and a cluster barrier instead of global memory and a grid
// barrier. Its own slicing (fewer, larger slices than the grid's: at most max_cluster blocks);
// the whole h_{t-1} stays in shared memory (one chunk, kc = H, two tiles: step parity).
// Thicker slices cost shared-memory bandwidth: the model (benchmarks/perf_model.py) predicts
// the cluster faster than the grid while the block's W_hh bytes read a step (its tensor-core
// slice once per 8 batch rows) stay within kClusterWBytes, and slower on FFMA, so `preferred`
// is that rule and the launcher takes the cluster when preferred and the product runs on
// tensor cores (the half types; fp32 when TF32 is allowed).
constexpr size_t kClusterWBytes = 112 * 1024;
struct PersistentCluster {
  int blocks = 0;      // the cluster's size and the grid's; 0: the forward does not fit one
  int units = 0;       // hidden units per block
  int threads = 0;
  size_t smem = 0;
  bool mma = false;    // tensor-core layout (as PersistentPlan::mma_fwd)
  bool preferred = false;  // the rule above (or the tuning's force: then on FFMA too)
  bool forced = false;     // test tuning: the cluster whenever it fits, whatever the product
};

// The sizing decision for one (kind, B, H, dtype) on one device. Both the forward and the
// backward kernel use the same slicing (units, blocks, threads); they differ in the chunk of the
// exchanged vector staged in shared memory per pass (kc_*) and hence in shared memory.
struct PersistentPlan {
  bool fits = false;
  int blocks = 0;        // grid size, <= sms (co-resident: one block per SM)
  int units = 0;         // hidden units per block (U); the last block may own fewer
  int threads = 0;       // threads per block
  int kc_fwd = 0;        // columns of h_{t-1} staged per pass (forward), <= H
  int kc_bwd = 0;        // columns of da_{t+1} staged per pass (backward), <= G*H
  size_t smem_fwd = 0;   // dynamic shared memory bytes per block
  size_t smem_bwd = 0;
  bool mma_fwd = false;  // the forward's product can run on tensor cores (the half types;
                         // fp32 when TF32 is allowed): H and kc_fwd whole 16-byte rows and the
                         // layout fits; else FFMA
  bool mma_bwd = false;  // the same for the backward's product (kc_bwd whole 16-byte rows)
  PersistentCluster cluster;  // the forward on one cluster, preferred when it fits
  std::string why;       // when !fits: which limit failed
};

// The fewest layers worth a wavefront launch (persistent_kernels.cuh, FwdLaunch), given the
// plan of one layer alone: where that layer runs on a cluster (preferred, and its product on
// tensor cores: the half types, fp32 when TF32 is allowed), the model
// (benchmarks/perf_model.py --wavefront) predicts two layers as a wavefront on the grid at
// 0.78-1.17x two cluster launches (bf16 slower, at H = 256, B <= 8) and three or more faster
// (1.16-1.7x at three, 1.7-2.3x at four): 3 there, else 2.
inline int wave_min_layers(const PersistentPlan& one, at::ScalarType dtype) {
  const bool tf32 = at::globalContext().allowTF32CuDNN(at::Float32Op::RNN);
  const bool mma_ok = dtype == at::kHalf || dtype == at::kBFloat16 || (dtype == at::kFloat && tf32);
  const PersistentCluster& c = one.cluster;
  return c.blocks > 0 && c.preferred && (c.forced || (c.mma && mma_ok)) ? 3 : 2;
}

// The sizing rule: a function of its arguments and the test-only tuning below (no device query).
// wave: for a layer of a wavefront (persistent_kernels.cuh, FwdLaunch): the forward only, with
// W_ih beside W_hh, never on a cluster (arch.sms: the group's share).
PersistentPlan persistent_plan(RnnKind kind, int64_t B, int64_t H, at::ScalarType dtype,
                               const PersistentArch& arch, bool wave = false);

// Test-only tuning knobs (0 = the rule's choice): cap on blocks (the cluster's too), cap on
// staged columns (below H: no cluster), a fixed thread count, the cluster forward (-1 off,
// 1 whenever it fits, FFMA too), and the grid forward's flag-word exchange (-1 off: the grid
// barrier a step even where flag words fit). Process-wide; used by tests to exercise
// multi-unit slices, partial last blocks, chunked staging at small H, and either forward
// where both fit.
struct PersistentTuning {
  int max_blocks = 0, max_kc = 0, threads = 0, cluster = 0, flags = 0;
};
void persistent_set_tuning(const PersistentTuning& t);
PersistentTuning persistent_get_tuning();

// Fallbacks while these paths are new on GPUs (gpu_check.sh sets them when its smoke check of
// the path fails). Each read once a process; any other value raises, at every persistent
// forward launch.
//   FUSEDRNN_PERSISTENT_EXCHANGE=barrier: the grid forward meets at a grid barrier a step
//       instead of exchanging flag words (unset or "flags": the exchange).
//   FUSEDRNN_PERSISTENT_CLUSTER=off: the forward never runs on a thread-block cluster, the grid
//       instead (unset or "auto": where the plan prefers it).
bool persistent_exchange_barrier();
bool persistent_cluster_off();

// Phase marks of the forward kernels (benchmarks and tests; persistent_kernels.cuh FwdMark):
// while on, every forward launch of either backend records int64 clock ticks [blocks, steps, 6]
// (CUDA: SM cycles; SIMT: nanoseconds; zeros where a block ran no step of its layer) and keeps
// the last launch's, which persistent_last_trace returns (undefined before the first).
// Process-wide, off by default.
void persistent_set_trace(bool on);
bool persistent_trace_on();
void persistent_keep_trace(const at::Tensor& t);
at::Tensor persistent_last_trace();

#define FUSEDRNN_DECLARE_PERSISTENT(ns)                                                       \
  namespace ns {                                                                              \
  PersistentArch persistent_arch();  /* the device the ops would run on */                    \
  /* groups = 2: both directions of a layer in one launch (half the SMs each); wave: a */    \
  /* wavefront of `groups` layers (a share of the SMs each, W_ih beside W_hh) */             \
  PersistentPlan persistent_plan(RnnKind kind, int64_t B, int64_t H, at::ScalarType dtype,    \
                                 int groups = 1, bool wave = false);                          \
  bool persistent_supported(RnnKind kind, int64_t B, int64_t H, at::ScalarType dtype);        \
  T5 lstm_forward_persistent(const Tensor& x, const Tensor& h0, const Tensor& c0,             \
                             const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,   \
                             const OptTensor& b_hh, bool reverse,                             \
                             const OptTensor& batch_sizes, bool save = true);                 \
  T6 lstm_backward_persistent(const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n,       \
                              const Tensor& x, const Tensor& h0, const Tensor& c0,            \
                              const Tensor& w_ih, const Tensor& w_hh, const Tensor& y,        \
                              const Tensor& gates, const Tensor& cells, bool reverse,         \
                              const OptTensor& batch_sizes);                                  \
  /* Both directions of a bidirectional layer in one launch (csrc/bidir_ops.h's contract): */ \
  /* h0, c0 [2,B,H]; returns y [T,B,2H] (or packed [N,2H]: forward | reverse), h_n, c_n */      \
  /* [2,B,H], with save gates, cells [2,T,B,..] (packed [2,N,..]; else empty). The backward */ \
  /* of both directions in one launch: dy [..,2H], dh_n, dc_n [2,B,H]; returns dx (summed), */ \
  /* dh0, dc0 [2,B,H], each direction's weight and bias gradients. Raise as the ops above */   \
  /* when W_hh does not fit for two directions at once. */                                    \
  T5 lstm_forward_persistent_bidir(                                                           \
      const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,                \
      const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, const Tensor& w_ih_r, \
      const Tensor& w_hh_r, const OptTensor& b_ih_r, const OptTensor& b_hh_r,                 \
      const OptTensor& batch_sizes, bool save = false);                                       \
  T4 gru_forward_persistent_bidir(                                                            \
      const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,              \
      const OptTensor& b_ih, const OptTensor& b_hh, const Tensor& w_ih_r,                     \
      const Tensor& w_hh_r, const OptTensor& b_ih_r, const OptTensor& b_hh_r,                 \
      const OptTensor& batch_sizes, bool save = false);                                       \
  T9 lstm_backward_persistent_bidir(                                                          \
      const Tensor& dy, const Tensor& dh_n, const Tensor& dc_n, const Tensor& x,              \
      const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,             \
      const Tensor& w_ih_r, const Tensor& w_hh_r, const Tensor& y, const Tensor& gates,       \
      const Tensor& cells, const OptTensor& batch_sizes);                                     \
  T10 gru_backward_persistent_bidir(                                                          \
      const Tensor& dy, const Tensor& dh_n, const Tensor& x, const Tensor& h0,                \
      const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_ih_r, const Tensor& w_hh_r,     \
      const Tensor& y, const Tensor& gates, const Tensor& ghn, const OptTensor& batch_sizes); \
  /* The layers of a unidirectional stack (1..4, no projection; those above the first */    \
  /* have I = H) as a wavefront in one launch, inference: weights as torch.nn's flat list */ \
  /* (w_ih, w_hh[, b_ih, b_hh]) a layer; h0, c0 [L,B,H]; returns the last layer's y, h_n */  \
  /* and c_n [L,B,H]. Raises as the ops above when the wavefront does not fit. */            \
  std::tuple<Tensor, Tensor, Tensor> lstm_forward_persistent_stack(                           \
      const Tensor& x, const Tensor& h0, const Tensor& c0, at::TensorList weights,            \
      bool has_biases, const OptTensor& batch_sizes);                                         \
  std::tuple<Tensor, Tensor> gru_forward_persistent_stack(                                    \
      const Tensor& x, const Tensor& h0, at::TensorList weights, bool has_biases,             \
      const OptTensor& batch_sizes);                                                          \
  T4 gru_forward_persistent(const Tensor& x, const Tensor& h0, const Tensor& w_ih,            \
                            const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, \
                            bool reverse, const OptTensor& batch_sizes, bool save = true);    \
  T6 gru_backward_persistent(const Tensor& dy, const Tensor& dh_n, const Tensor& x,           \
                             const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,        \
                             const Tensor& y, const Tensor& gates, const Tensor& ghn,         \
                             bool reverse, const OptTensor& batch_sizes);                     \
  }

FUSEDRNN_DECLARE_PERSISTENT(simt)
#ifdef FUSEDRNN_WITH_CUDA
FUSEDRNN_DECLARE_PERSISTENT(cuda)
#endif

}  // namespace fusedrnn
