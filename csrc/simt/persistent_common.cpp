// Persistent kernels through the SIMT layer (host C++, fusedrnn::simt): part common of
// csrc/cuda/persistent_impl.cuh, the same source nvcc compiles in csrc/cuda/persistent_common.cu.
#define FRNN_PERSISTENT_PART_COMMON
#include "cuda/persistent_impl.cuh"
