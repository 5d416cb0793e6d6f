// The pointwise passes compiled for AVX-512 (ATen's AVX512 vector type, SLEEF's vectorised
// exp/tanh exported by libtorch_cpu), chosen at run time only on CPUs with AVX-512 F/BW/DQ/VL,
// the subset ATen's AVX512 build assumes. As in pointwise_avx2.cpp, the target is set by pragma
// and the feature macros that the SLEEF and ATen headers test are defined by hand.
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx,avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")
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
#ifndef __AVX512F__
#define __AVX512F__ 1
#endif
#ifndef __AVX512BW__
#define __AVX512BW__ 1
#endif
#ifndef __AVX512DQ__
#define __AVX512DQ__ 1
#endif
#ifndef __AVX512VL__
#define __AVX512VL__ 1
#endif
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#define FRNN_PW_NS pw_avx512
#define FRNN_PW_TABLE pointwise_avx512
#include "cpu/pointwise_impl.h"
#include "cpu/lstm_step_impl.h"
#include "cpu/lstm_sweep_impl.h"
#endif
