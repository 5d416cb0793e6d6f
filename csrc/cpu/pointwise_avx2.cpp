// The pointwise passes compiled for AVX2 + FMA (ATen's AVX2 vector type, SLEEF's vectorised
// exp/tanh exported by libtorch_cpu), chosen at run time only on CPUs that have both.
// setuptools cannot give one file its own -mavx2, so the target is set by pragma and the
// feature macros that the SLEEF and ATen headers test are defined by hand.
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx,avx2,fma,f16c")
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#ifndef __F16C__
#define __F16C__ 1
#endif
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#define FRNN_PW_NS pw_avx2
#define FRNN_PW_TABLE pointwise_avx2
#include "cpu/pointwise_impl.h"
#endif
