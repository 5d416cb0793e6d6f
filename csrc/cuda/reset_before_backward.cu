// fusedrnn::cuda::gru_rb_backward and mut_backward (csrc/reset_before_ops.h): the launchers of
// csrc/cuda/stepwise_reset_before.h compiled by nvcc for the four dtypes; both cells run the
// same kernel instantiations.
#include "cuda/stepwise_reset_before.h"

FRNN_DEFINE_GRU_RB_BACKWARD
FRNN_DEFINE_MUT_BACKWARD
