// Persistent kernels, CUDA build: device properties, sizing, support query (persistent.h).
#define FRNN_PERSISTENT_PART_COMMON
#include "cuda/persistent_impl.cuh"
