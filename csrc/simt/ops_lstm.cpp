// fusedrnn::simt::lstm_forward / lstm_backward (csrc/ops.h): the stepwise launcher of
// csrc/cuda/stepwise.h and the kernels of csrc/cuda/lstm_kernels.cuh compiled as host C++; the
// kernels run on CPU threads through the SIMT layer (csrc/simt/simt.h).
#include "cuda/stepwise.h"

FRNN_DEFINE_LSTM_FORWARD
FRNN_DEFINE_LSTM_BACKWARD
