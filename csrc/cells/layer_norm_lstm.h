// Per-element math of the layer-normalised LSTM (Ba, Kiros and Hinton 2016;
// fusedrnn.LayerNormLSTM):
//   a  = xp + g_hh * LN(h W_hh^T)          xp = g_ih * LN(x W_ih^T) + b (the input side)
//   i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of a's gates
//   c' = f * c + i * g                     h' = o * tanh(g_c * LN(c') + b_c)
// LN (cells/layer_norm.h) over a row: the 4H recurrent pre-activations, or the H cells. These
// functions are one (row, unit) pair in the accumulation type T, as csrc/cells/cells.h. Saved
// for backward: the activations i, f, g, o, c', the raw recurrent products and the four
// statistics of each row.
#pragma once

#include "cells/layer_norm.h"

namespace fusedrnn {
namespace cells {

// A gate's pre-activation is layer_norm_affine(xp, g_hh, gh, mean, rstd) (cells/layer_norm.h).

// The gates and the new cell from the four pre-activations.
template <class T>
FRNN_HD void lnlstm_cell(T ai, T af, T ag, T ao, T c_prev, T& i, T& f, T& g, T& o, T& c) {
  i = sigmoid(ai);
  f = sigmoid(af);
  g = tanh_(ag);
  o = sigmoid(ao);
  c = f * c_prev + i * g;
}

// y_c = g_c * LN(c') + b_c, h' = o * tanh(y_c).
template <class T> FRNN_HD T lnlstm_hidden(T o, T c, T mean_c, T rstd_c, T g_c, T b_c) {
  return o * tanh_(g_c * ((c - mean_c) * rstd_c) + b_c);
}

// Backward of lnlstm_hidden for the total dh: dao (o's pre-activation), dyc (the gradient of
// y_c: dg_c += dyc * chat, db_c += dyc) and dchat = dyc * g_c, the gradient of LN(c').
template <class T>
FRNN_HD void lnlstm_backward_hidden(T o, T c, T mean_c, T rstd_c, T g_c, T b_c, T dh, T& dao,
                                    T& dyc, T& dchat) {
  const T t = tanh_(g_c * ((c - mean_c) * rstd_c) + b_c);
  dao = dh * t * o * (T(1) - o);
  dyc = dh * o * (T(1) - t * t);
  dchat = dyc * g_c;
}

// The cell's backward: dc = LN's backward of dchat + dc_next (the carry from step t+1); the
// pre-activation gradients of i, f, g and dc_prev = dc * f.
template <class T>
FRNN_HD void lnlstm_backward_cell(T i, T f, T g, T c_prev, T dc, T& dai, T& daf, T& dag,
                                  T& dc_prev) {
  dai = dc * g * i * (T(1) - i);
  daf = dc * c_prev * f * (T(1) - f);
  dag = dc * i * (T(1) - g * g);
  dc_prev = dc * f;
}

}  // namespace cells
}  // namespace fusedrnn
