// Layer normalisation's per-element pieces, shared by the layer-normalised cells
// (cells/layer_norm_lstm.h, cells/layer_norm_gru.h): LN(v) = (v - mean(v)) * rstd over a row,
// rstd = 1/sqrt(var(v) + eps) with the biased variance, as torch.nn.LayerNorm. The row
// statistics are the callers' (a reduction over the row); these are one element in the
// accumulation type T, as csrc/cells/cells.h.
#pragma once

#include "cells/cells.h"

namespace fusedrnn {
namespace cells {

constexpr double kLayerNormEps = 1e-5;  // torch.nn.LayerNorm's default

// bias + gain * LN(v) for one element of a row with statistics mean, rstd.
template <class T> FRNN_HD T layer_norm_affine(T bias, T gain, T v, T mean, T rstd) {
  return bias + gain * ((v - mean) * rstd);
}

// Layer norm's backward for one element: dv from dvhat (the gradient of LN(v)) and its row's
// means m1 = mean(dvhat), m2 = mean(dvhat * vhat), vhat = LN(v).
template <class T> FRNN_HD T layer_norm_backward(T dvhat, T vhat, T m1, T m2, T rstd) {
  return rstd * (dvhat - m1 - vhat * m2);
}

}  // namespace cells
}  // namespace fusedrnn
