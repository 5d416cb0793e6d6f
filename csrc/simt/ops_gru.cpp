// fusedrnn::simt::gru_forward / gru_backward (csrc/ops.h): the stepwise launcher of
// csrc/cuda/stepwise.h and the kernels of csrc/cuda/gru_kernels.cuh compiled as host C++; the
// kernels run on CPU threads through the SIMT layer (csrc/simt/simt.h).
#include "cuda/stepwise.h"

FRNN_DEFINE_GRU_FORWARD
FRNN_DEFINE_GRU_BACKWARD
