// The LSTM time loops for thin batches (fp32, AVX-512 or AVX2+FMA, no projection), each in one
// parallel region with one spin barrier per step (slot_barrier.h) instead of waking the thread
// pool every step. Written once (lstm_sweep_impl.h) and compiled with the fused step
// (lstm_step.h) for each instruction set; the sweeps returned below are those of the instruction
// set of lstm_step_fn(). Each slot (thread) owns a contiguous range of hidden units, multiples of
// the vector width L (16 AVX-512, 8 AVX2), for the whole loop. Because a step costs a barrier
// rather than a wake-up, threads split W_hh from 128 KB on (H >= ~90), where the step-at-a-time
// path keeps up to 2 MB on one thread.
//
// Forward, lstm_forward_thin(w, S, off, cnt, gates, h, c, cells, y, hbuf): the fused step
// (lstm_step.h) of every step, a slot computing its units' panels. The step reads all of
// h_{t-1} from one half of hbuf and each slot writes its units of h_t to the other half, so the
// only barrier of a step is at its end.
//   w: W_hh packed by lstm_step_fn() (LstmStepWeights). gates [N,4H] in: the input
//   pre-activations of every step (the input projection is hoisted), out: the activations
//   i,f,g,o. h [B,H], c [B,H]: in the
//   initial states, out the final ones (a row keeps the state of its last active step).
//   cells [N,H], y [N,H]: out, c_t and h_t. hbuf [2,B,H]: scratch.
//
// Backward, lstm_backward_thin(H, w_hh, S, off, cnt, gates, cells, c_prev, dy, dh, dc, da): per
// step the cell's backward for the slot's units (all four gates), then dh[:, its units] =
// da W_hh[:, its units] over all 4H rows of W_hh, read as stored (a matrix-vector product needs
// no packing). A slot's units of dh are its own product, so the only barrier of a step sits
// between the two halves (every slot reads all of da). Every other step walks W_hh in reverse,
// so the rows read last, still in L2, come first.
//   w_hh [4H,H] contiguous, read only.
//   gates [N,4H] activations i,f,g,o; cells [N,H] c_t; c_prev [N,H] c_{t-1}; dy [N,H]: read only.
//   dh [B,H], dc [B,H]: in the gradients of h_n, c_n; out those of h_0, c_0 (a row keeps its
//   value through steps where it is not active).
//   da [N,4H]: out, the gate pre-activation gradients.
//
// Both: S steps in the order they are processed (backward: from the last time step); step s
// covers rows off[s] .. off[s]+cnt[s]-1 of the [N, ...] tensors, and its active batch rows are
// 0 .. cnt[s]-1 (counts monotonic in s, as Steps gives them). Any count and size work; the
// constants below say where they pay. No argument aliases another.
#pragma once

#include <cstdint>

#include "cpu/lstm_step.h"

namespace fusedrnn {
namespace cpu {

// Batches up to kThinRows take the forward sweep where their input projection is hoisted, and
// the backward sweep where W_hh is at most kThinBackwardBytes (lstm.cpp). Against a step at a
// time, T=100, two threads: forward B=1 H=512 9-10% faster, H=128/256 1.4-1.5x; backward
// B=1/2/4/8 H=256 1.39/1.15/1.08/1.03x, H=128 1.25x (B=1); T=20 B=8 H=128 (the quick suite)
// forward 1.12x, backward 1.06x. The backward's strided reads of W_hh lose on larger
// matrices: H=512 even, H=1024 0.80x (B=1) and 0.62x (B=3).
constexpr int64_t kThinRows = 8;
constexpr double kThinBackwardBytes = 2 << 20;

using LstmForwardThinFn = void (*)(const LstmStepWeights& w, int64_t S, const int64_t* off,
                                   const int64_t* cnt, float* gates, float* h, float* c,
                                   float* cells, float* y, float* hbuf);
using LstmBackwardThinFn = void (*)(int64_t H, const float* w_hh, int64_t S, const int64_t* off,
                                    const int64_t* cnt, const float* gates, const float* cells,
                                    const float* c_prev, const float* dy, float* dh, float* dc,
                                    float* da);

// The sweeps of lstm_step_fn()'s instruction set, or null where they do not run: where
// lstm_step_fn() is null (lstm_step.h) or with FUSEDRNN_CPU_THIN=0 (a step at a time, for
// measurements). Called by lstm.cpp.
LstmForwardThinFn lstm_forward_thin_fn();
LstmBackwardThinFn lstm_backward_thin_fn();

}  // namespace cpu
}  // namespace fusedrnn
