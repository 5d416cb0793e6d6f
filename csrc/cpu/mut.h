// The MUT1-3 cells of Jozefowicz et al. (2015) (fusedrnn.MUT1/2/3), recurrent part:
//
// mut_forward(xp, h0, w_hh, variant, reverse, batch_sizes, save) -> (y, h_n, gates, rh)
// mut_backward(dy, dh_n, h0, w_hh, y, gates, rh, variant, reverse, batch_sizes)
//   -> (dxp, dh0, dw_hh)
// Per step, gate order r, z, n (cell math: csrc/cells/gru_reset_before.h with mut = true):
//   r  = sigmoid(xp_r + h W_hr^T)
//   z  = sigmoid(xp_z)                       variant 1
//        sigmoid(xp_z + h W_hz^T)            variant 2
//        sigmoid(xp_z + tanh(h) W_hz^T)      variant 3
//   n  = tanh(xp_n + (r * h) W_hn^T)         h' = z * n + (1 - z) * h
// xp [T,B,3H] (packed: [N,3H]) is everything the input contributes, biases included (the
// callers form tanh(x), x or x W^T + b: fusedrnn/functional.py). w_hh [2H,H] rows (W_hr, W_hn)
// for variant 1, [3H,H] rows (W_hr, W_hz, W_hn) for 2 and 3. h0 [B,H]. Outputs: y [T,B,H] (or
// [N,H]), h_n [B,H]; saved for backward (empty [0] when save is false): gates [T,B,3H] the
// activations r, z, n and rh [T,B,H] = r * h_{t-1}. dxp has xp's shape (the pre-activation
// gradients), dw_hh w_hh's. Packed input as the other ops (csrc/ops.h). Inputs may be
// non-contiguous; outputs are contiguous and never alias the inputs. fp16/bf16 are computed in
// fp32. Declarations: csrc/reset_before_ops.h.
#pragma once

#include "reset_before_ops.h"

namespace fusedrnn {
// Rows of w_hh before W_hn (the products over h): r, and z unless z has none (MUT1).
inline int64_t mut_h_rows(int64_t variant, int64_t H) { return variant == 1 ? H : 2 * H; }
}  // namespace fusedrnn
