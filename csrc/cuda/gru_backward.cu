// fusedrnn::cuda::gru_backward (csrc/ops.h): the stepwise launcher of csrc/cuda/stepwise.h compiled
// by nvcc for the four dtypes. One op per translation unit so ninja compiles them in parallel.
#include "cuda/stepwise.h"

FRNN_DEFINE_GRU_BACKWARD
