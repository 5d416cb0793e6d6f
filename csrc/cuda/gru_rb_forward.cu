// fusedrnn::cuda::gru_rb_forward (csrc/gru_rb_ops.h): the launcher of csrc/cuda/stepwise_grurb.h
// compiled by nvcc for the four dtypes.
#include "cuda/stepwise_grurb.h"

FRNN_DEFINE_GRU_RB_FORWARD
