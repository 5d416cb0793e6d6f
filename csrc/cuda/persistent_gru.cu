// Persistent kernels, CUDA build: GRU forward and backward (persistent.h).
#define FRNN_PERSISTENT_PART_GRU
#include "cuda/persistent_impl.cuh"
