// The LSTM forward time loop for thin steps (fp32, AVX-512, no projection, the input projection
// hoisted): the fused step (lstm_step.h) of every step in one parallel region with one barrier
// per step (slot_barrier.h), instead of waking the thread pool and copying h on the caller every
// step. Each slot (thread) owns a contiguous range of W_hh's 16-unit panels for the whole loop.
// The step reads all of h_{t-1} from one half of hbuf and each slot writes its units of h_t to
// the other half, so the only barrier of a step is at its end.
//
// lstm_forward_thin(w, S, off, cnt, gates, h, c, cells, y, hbuf):
//   S steps in the order they are processed; step s covers rows off[s] .. off[s]+cnt[s]-1 of
//   the [N, ...] tensors, and its active batch rows are 0 .. cnt[s]-1 (counts monotonic in s,
//   as Steps gives them). Any cnt works; kThinRows is where it pays.
//   w: W_hh packed (LstmStepWeights). gates [N,4H] in: the input pre-activations of every step,
//   out: the activations i,f,g,o. h [B,H], c [B,H]: in the initial states, out the final ones
//   (a row keeps the state of its last active step). cells [N,H], y [N,H]: out, c_t and h_t.
//   hbuf [2,B,H]: scratch. No argument aliases another.
#pragma once

#include <cstdint>

#include "cpu/lstm_step.h"

namespace fusedrnn {
namespace cpu {

// Batches up to this size take the sweep when their input projection is hoisted (lstm.cpp).
// LSTM T=100 B=1 H=512 inference, two threads: 4-12% faster than a step at a time.
constexpr int64_t kThinRows = 4;

using LstmForwardThinFn = void (*)(const LstmStepWeights& w, int64_t S, const int64_t* off,
                                   const int64_t* cnt, float* gates, float* h, float* c,
                                   float* cells, float* y, float* hbuf);

// The sweep, or null where it does not run: where lstm_step_fn() is null (lstm_step.h) or with
// FUSEDRNN_CPU_THIN=0 (a step at a time, for measurements).
LstmForwardThinFn lstm_forward_thin_fn();

}  // namespace cpu
}  // namespace fusedrnn
