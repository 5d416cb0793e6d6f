// Persistent kernels through the SIMT layer (host C++, fusedrnn::simt): part gru of
// csrc/cuda/persistent_impl.cuh, the same source nvcc compiles in csrc/cuda/persistent_gru.cu.
#define FRNN_PERSISTENT_PART_GRU
#include "cuda/persistent_impl.cuh"
