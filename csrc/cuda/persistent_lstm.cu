// Persistent kernels, CUDA build: LSTM forward and backward (persistent.h).
#define FRNN_PERSISTENT_PART_LSTM
#include "cuda/persistent_impl.cuh"
