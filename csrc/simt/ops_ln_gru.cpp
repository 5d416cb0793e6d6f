// fusedrnn::simt::ln_gru_forward / ln_gru_backward (csrc/layer_norm_ops.h): the launchers of
// csrc/cuda/stepwise_ln_gru.h and the kernels of csrc/cuda/ln_gru_kernels.cuh compiled as host
// C++; the kernels run on CPU threads through the SIMT layer (csrc/simt/simt.h).
#include "cuda/stepwise_ln_gru.h"

FRNN_DEFINE_LN_GRU_FORWARD
FRNN_DEFINE_LN_GRU_BACKWARD
