// CPU backend of the GRU with the reset gate before the recurrent product (Cho et al. 2014;
// fusedrnn.GRU(reset_after=False); cell math: csrc/cells/gru_reset_before.h).
//
// gru_rb_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, save)
//   -> (y, h_n, gates, rh)
// gru_rb_backward(dy, dh_n, x, h0, w_ih, w_hh, y, gates, rh, reverse, batch_sizes)
//   -> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)
// Shapes, dtypes, packed input and save as the GRU ops of csrc/ops.h (w_ih [3H,I], w_hh [3H,H],
// gate order r, z, n), except the fourth forward output: rh [T,B,H] = r * h_{t-1} (the input of
// the W_hn product, which dW_hn needs) instead of ghn. db_ih and db_hh are equal here (every
// bias adds to a pre-activation before its nonlinearity). Inputs may be non-contiguous;
// outputs are contiguous and never alias the inputs. fp16/bf16 are computed in fp32.
#pragma once

// The declarations (cpu::gru_rb_forward / gru_rb_backward) are with the other backends'.
#include "reset_before_ops.h"
