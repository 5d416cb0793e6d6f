// Whether the CPU backend runs the two directions of a bidirectional LSTM / GRU layer side by
// side, one thread each (csrc/bidir_ops.h run_directions), instead of one after the other with
// every thread on each. Inputs: gates G (4 LSTM, 3 GRU), batch B, hidden size H, the element
// size in bytes, the threads of ATen's pool. A pure function of those (and of the measurement
// switch FUSEDRNN_CPU_BIDIR=0); tests call it through fusedrnn._C._cpu_bidir_concurrent.
//
// Why: small layers scale badly over threads (a per-step product under 1 MFLOP runs on one
// thread anyway; above it two threads pay a barrier a step), so two directions on two cores at
// once beat one direction on two cores twice, as long as a direction's W_hh stays in its core's
// L2. Measured on the 2-core Xeon (2 MiB L2 a core), LSTM fp32 T=100, both directions one after
// the other on two threads / one direction on one thread (the ideal side-by-side gain),
// forward and training: H=128 B=8 (T=20) 1.45 / 1.40, B=32 1.21 / 1.23, B=64 1.12 / 1.20;
// H=256 B=1 (T=50) 1.10 / 1.23, B=8 1.35 / 1.19, B=16 1.16 / 1.10, B=64 1.08 / 1.13; and past
// L2 H=512 B=1 0.59 / 0.66 (one core streams W_hh from L3, two hold it in their L2s), B=8
// 0.96 / 0.97, B=64 1.06 / 1.05. Hence: W_hh of at most 1 MiB; on more than two threads only
// where the per-step product runs on one thread anyway (with more cores the larger products
// split further, which one thread a direction would give up; not measured).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

#include "ops.h"

namespace fusedrnn {
namespace cpu {

inline bool bidir_concurrent(int64_t G, int64_t B, int64_t H, int64_t elem_bytes,
                             int64_t threads) {
  static const bool off = [] {  // FUSEDRNN_CPU_BIDIR=0: one after the other (measurements)
    const char* e = std::getenv("FUSEDRNN_CPU_BIDIR");
    return e && std::string(e) == "0";
  }();
  if (off || threads < 2) return false;
  const double w_bytes = double(G) * double(H) * double(H) * double(elem_bytes);
  if (w_bytes > double(1 << 20)) return false;
  const double step_flops = 2.0 * double(B) * double(G) * double(H) * double(H);
  return threads == 2 || step_flops < 1e6;
}

// The single-direction forwards of the side-by-side path, with save: as cpu::lstm_forward /
// gru_forward (no projection), the saved tensors written into gates_into [N, G*H] and
// cells_into / ghn_into [N, H] (contiguous: a direction's slice of the bidirectional op's
// [2, N, ...], so that the op returns both without a copy) instead of new buffers. fp32 and
// fp64 (the half types compute through fp32 copies: a clear error here).
T5 lstm_forward_into(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                     const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                     bool reverse, const OptTensor& batch_sizes, const Tensor& gates_into,
                     const Tensor& cells_into);
T4 gru_forward_into(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                    const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                    const OptTensor& batch_sizes, const Tensor& gates_into,
                    const Tensor& ghn_into);

}  // namespace cpu
}  // namespace fusedrnn
