// Per-element math of the GRU as Cho et al. (2014) wrote it, the reset gate applied before the
// recurrent product (fusedrnn.GRU(reset_after=False)):
//   r = sigmoid(x_r + h W_hr^T + b_hr)      z = sigmoid(x_z + h W_hz^T + b_hz)
//   n = tanh(x_n + (r * h) W_hn^T + b_hn)   h' = (1 - z) * n + z * h
// with x_* the input projections (b_ih included). The recurrent product is two dependent
// products per step (r and z first, then the one over r * h), so the math comes in the two
// halves a step computes between them.
//
// The MUT1-3 cells of Jozefowicz et al. (2015) share this shape (fusedrnn.MUT1/2/3): the same
// r and z, the same n over r * h, and h' = z * n + (1 - z) * h, the roles of z and 1 - z swapped
// (`mut` below). Their input sides (tanh(x), x, or products) are all in x_*.
//
// Contract: as csrc/cells/cells.h (one (row, unit) pair in the accumulation type T; reads and
// writes only its reference arguments). Parameters keep torch.nn.GRU's layout and gate order
// r, z, n. Saved for backward: the activations r, z, n and rh = r * h_{t-1}.
#pragma once

#include "cells/cells.h"

namespace fusedrnn {
namespace cells {

// a_r, a_z: full pre-activations (input + recurrent + both biases). h_prev: h_{t-1}. The r and
// z halves are apart for kernels whose threads own one product column (r or z of one unit).
template <class T> FRNN_HD void grurb_forward_r(T a_r, T h_prev, T& r, T& rh) {
  r = sigmoid(a_r);
  rh = r * h_prev;
}
template <class T> FRNN_HD T grurb_forward_z(T a_z) { return sigmoid(a_z); }
template <class T>
FRNN_HD void grurb_forward_rz(T a_r, T a_z, T h_prev, T& r, T& z, T& rh) {
  grurb_forward_r(a_r, h_prev, r, rh);
  z = grurb_forward_z(a_z);
}

// a_n: x_n + (r * h) W_hn^T + b_hn. mut: h' = z * n + (1 - z) * h_prev (MUT1-3).
template <class T>
FRNN_HD void grurb_forward_n(T a_n, T z, T h_prev, T& n, T& h, bool mut = false) {
  n = tanh_(a_n);
  const T keep = mut ? T(1) - z : z;  // the share of h_prev
  h = (T(1) - keep) * n + keep * h_prev;
}

// dh: total gradient reaching h_t. Outputs the pre-activation gradients of z and n (the same on
// the input and the recurrent side) and dh_{t-1}'s direct part (keep * dh; mut as in
// grurb_forward_n).
template <class T>
FRNN_HD void grurb_backward_zn(T z, T n, T h_prev, T dh, T& da_z, T& da_n, T& dh_prev,
                               bool mut = false) {
  const T keep = mut ? T(1) - z : z;
  da_n = dh * (T(1) - keep) * (T(1) - n * n);
  // d h'/d keep = h_prev - n, and d keep/d z = +1 (GRU) or -1 (MUT).
  da_z = dh * (mut ? n - h_prev : h_prev - n) * z * (T(1) - z);
  dh_prev = dh * keep;
}

// drh: the gradient of r * h_{t-1} (da_n W_hn). Outputs da_r and adds r * drh to dh_prev.
template <class T>
FRNN_HD void grurb_backward_r(T r, T h_prev, T drh, T& da_r, T& dh_prev) {
  da_r = drh * h_prev * r * (T(1) - r);
  dh_prev = dh_prev + drh * r;
}

}  // namespace cells
}  // namespace fusedrnn
