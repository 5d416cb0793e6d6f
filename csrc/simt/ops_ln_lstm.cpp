// fusedrnn::simt::ln_lstm_forward / ln_lstm_backward (csrc/layer_norm_ops.h): the launchers of
// csrc/cuda/stepwise_ln_lstm.h and the kernels of csrc/cuda/ln_lstm_kernels.cuh compiled as host
// C++; the kernels run on CPU threads through the SIMT layer (csrc/simt/simt.h).
#include "cuda/stepwise_ln_lstm.h"

FRNN_DEFINE_LN_LSTM_FORWARD
FRNN_DEFINE_LN_LSTM_BACKWARD
