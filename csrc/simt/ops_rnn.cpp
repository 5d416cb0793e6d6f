// fusedrnn::simt::rnn_forward / rnn_backward (csrc/ops.h): the stepwise launcher of
// csrc/cuda/stepwise.h and the kernels of csrc/cuda/rnn_kernels.cuh compiled as host C++; the
// kernels run on CPU threads through the SIMT layer (csrc/simt/simt.h).
#include "cuda/stepwise.h"

FRNN_DEFINE_RNN_FORWARD
FRNN_DEFINE_RNN_BACKWARD
