// fusedrnn::cuda::gru_rb_forward and mut_forward (csrc/reset_before_ops.h): the launchers of
// csrc/cuda/stepwise_reset_before.h compiled by nvcc for the four dtypes; both cells run the
// same kernel instantiations.
#include "cuda/stepwise_reset_before.h"

FRNN_DEFINE_GRU_RB_FORWARD
FRNN_DEFINE_MUT_FORWARD
