// fusedrnn::simt::gru_rb_forward / gru_rb_backward / mut_forward / mut_backward
// (csrc/reset_before_ops.h): the launchers of csrc/cuda/stepwise_reset_before.h and the kernels
// of csrc/cuda/grurb_kernels.cuh compiled as host C++; the kernels run on CPU threads through
// the SIMT layer (csrc/simt/simt.h).
#include "cuda/stepwise_reset_before.h"

FRNN_DEFINE_GRU_RB_FORWARD
FRNN_DEFINE_GRU_RB_BACKWARD
FRNN_DEFINE_MUT_FORWARD
FRNN_DEFINE_MUT_BACKWARD
