// fusedrnn::cuda::ln_gru_backward (csrc/layer_norm_ops.h): the launcher of
// csrc/cuda/stepwise_ln_gru.h compiled by nvcc for the four dtypes.
#include "cuda/stepwise_ln_gru.h"

FRNN_DEFINE_LN_GRU_BACKWARD
