// fusedrnn::simt::gru_rb_forward / gru_rb_backward (csrc/gru_rb_ops.h): the launchers of
// csrc/cuda/stepwise_grurb.h and the kernels of csrc/cuda/grurb_kernels.cuh compiled as host C++;
// the kernels run on CPU threads through the SIMT layer (csrc/simt/simt.h).
#include "cuda/stepwise_grurb.h"

FRNN_DEFINE_GRU_RB_FORWARD
FRNN_DEFINE_GRU_RB_BACKWARD
