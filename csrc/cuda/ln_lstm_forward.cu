// fusedrnn::cuda::ln_lstm_forward (csrc/layer_norm_ops.h): the launcher of
// csrc/cuda/stepwise_ln_lstm.h compiled by nvcc for the four dtypes.
#include "cuda/stepwise_ln_lstm.h"

FRNN_DEFINE_LN_LSTM_FORWARD
