// Persistent kernels through the SIMT layer (host C++, fusedrnn::simt): part lstm of
// csrc/cuda/persistent_impl.cuh, the same source nvcc compiles in csrc/cuda/persistent_lstm.cu.
#define FRNN_PERSISTENT_PART_LSTM
#include "cuda/persistent_impl.cuh"
