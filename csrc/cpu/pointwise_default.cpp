// The pointwise passes for any x86-64/ARM CPU: ATen's portable vector type.
#define CPU_CAPABILITY DEFAULT
#define FRNN_PW_NS pw_default
#define FRNN_PW_TABLE pointwise_default
#include "cpu/pointwise_impl.h"
