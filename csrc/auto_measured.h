// algorithm("auto") for one direction's inference forward (save = false) on a GPU, from what an
// H200 measured (benchmarks/results/gpu-2026-12-04/report.json: T = 100, CUDA-graph replay, the
// stepwise and the persistent kernels side by side, B = 1, 4, 8, 16, 64 and H = 256, 512, 1024).
// There the persistent forward ran 3.5-11 µs a step, 3-6x over the model that set
// kPersistentMaxBatchForward (validate.h), so launches saved no longer pay at every size:
//   H >= 1024: persistent up to B = 16 (1.07-1.79x; B = 64: 0.61-0.85x);
//   GRU:       persistent up to B = 8 (1.05-1.33x; B = 16: 0.87-1.11x);
//   LSTM:      persistent for fp32/fp64 at H >= 512 up to B = 8 (1.04-1.11x); bf16/fp16 there and
//              H = 256 stepwise (the persistent kernel 0.76-0.98x).
// Training forwards (save = true), both directions of a layer in one launch (1.7-2.3x) and stack
// wavefronts (1.15-1.7x) keep the bounds of validate.h: there the persistent kernels won.
// Contract: B, H the layer's batch (largest step) and hidden size; half = bf16/fp16 storage.
#pragma once

#include <cstdint>

#include "cuda/persistent.h"  // RnnKind

namespace fusedrnn {

inline bool persistent_inference_measured(RnnKind kind, int64_t B, int64_t H, bool half) {
  if (H >= 1024) return B <= 16;
  if (kind == RnnKind::Gru) return B <= 8;
  return !half && H >= 512 && B <= 8;
}

}  // namespace fusedrnn
