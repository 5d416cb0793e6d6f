// The fused pointwise passes of the CPU backend: one call per time step, over the n active rows
// of the step, each row H hidden units (all gates of a unit at stride H within the row).
// Row-major pointers with row strides G*H (gates) or H (states); nothing may alias unless
// stated ("in/out"). Nullable arguments say so. Implemented once (pointwise_impl.h) and compiled
// per instruction set (pointwise_{default,avx2,avx512}.cpp); pointwise<S>() returns the best
// table the running CPU supports.
#pragma once

#include <cstdint>

namespace fusedrnn {
namespace cpu {

template <class S>
struct Pointwise {
  // g [n,4H] in: pre-activations, out: activations i,f,g,o. c_state [n,H] in: c_{t-1}, out: c_t.
  // c_out [n,H] = c_t; m_out [n,H] = o*tanh(c_t); h_state (nullable) [n,H] also gets m.
  void (*lstm_forward)(int64_t n, int64_t H, S* g, S* c_state, S* c_out, S* m_out, S* h_state);
  // g [n,4H] activations, c [n,H] = c_t, c_prev [n,H]; dm = dm_a + dm_b (dm_b nullable) the
  // gradient of o*tanh(c_t); dc_state [n,H] in: dc_t from t+1, out: dc_{t-1}; da [n,4H] out.
  void (*lstm_backward)(int64_t n, int64_t H, const S* g, const S* c, const S* c_prev,
                        const S* dm_a, const S* dm_b, S* dc_state, S* da);
  // g [n,3H] in: input projections (with b_ih), out: activations r,z,n. gh [n,3H] recurrent
  // projections without b_hh; b_hh [3H] nullable. h_state [n,H] in: h_{t-1}, out: h_t.
  // h_out [n,H] = h_t; ghn_out [n,H] = W_hn h_{t-1} + b_hn.
  void (*gru_forward)(int64_t n, int64_t H, S* g, const S* gh, const S* b_hh, S* h_state,
                      S* h_out, S* ghn_out);
  // g [n,3H] activations, ghn [n,H], h_prev [n,H]; dh_state [n,H] in: dh from t+1, out: the
  // direct part z*dh of dh_{t-1}; dy [n,H]; dgx, dgh [n,3H] out (input and recurrent sides).
  void (*gru_backward)(int64_t n, int64_t H, const S* g, const S* ghn, const S* h_prev,
                       S* dh_state, const S* dy, S* dgx, S* dgh);
  // GRU with the reset gate before the recurrent product (cells/gru_reset_before.h; also the
  // MUT cells, `mut`), a step's two passes around its second product. g [n,3H] in: input
  // projections (with b_ih); gh [n,ldgh] the recurrent products with their b_hh: r's, and z's
  // when ldgh == 2H (ldgh == H: z has none, MUT1); rz: g's r,z columns out: activations,
  // rh_out [n,H] = r * h_{t-1} (h_state [n,H] = h_{t-1}).
  void (*grurb_forward_rz)(int64_t n, int64_t H, S* g, const S* gh, int64_t ldgh,
                           const S* h_state, S* rh_out);
  // ghn [n,H] = (r * h_{t-1}) W_hn^T + b_hn; g's n column in: x_n, out: activation n; h_state
  // in: h_{t-1}, out: h_t; h_out [n,H] = h_t; th_out [n,H] = tanh(h_t) (nullable; MUT3's next
  // z product reads it).
  void (*grurb_forward_n)(int64_t n, int64_t H, S* g, const S* ghn, S* h_state, S* h_out,
                          S* th_out, bool mut);
  // g [n,3H] activations, h_prev [n,H]; dh = dh_state + dy; dg [n,3H]: its z and n columns out
  // (pre-activation gradients); dh_state out: the direct part (z * dh; MUT (1 - z) * dh).
  void (*grurb_backward_zn)(int64_t n, int64_t H, const S* g, const S* h_prev, S* dh_state,
                            const S* dy, S* dg, bool mut);
  // drh [n,H] = dg_n W_hn; dg's r column out; dh_state += r * drh.
  void (*grurb_backward_r)(int64_t n, int64_t H, const S* g, const S* h_prev, const S* drh,
                           S* dh_state, S* dg);
  // Layer-normalised LSTM (cells/layer_norm_lstm.h), a step's pass after its product, rows
  // b < n: gh [n,4H] the raw products h W_hh^T, xp [n,4H] the input side, g_hh [4H], g_c [H],
  // b_c [H] or null; c_state [n,H] in: c_{t-1}, out: c_t; out: gates [n,4H] i, f, g, o,
  // cells [n,H] c_t, stats [n,4] (mean and rstd of gh's row, of c_t's), h_state and y [n,H] h_t.
  void (*lnlstm_forward)(int64_t n, int64_t H, const S* xp, const S* gh, const S* g_hh,
                         const S* g_c, const S* b_c, S* c_state, S* gates, S* cells, S* stats,
                         S* h_state, S* y);
  // Its backward before the product, rows b < n: dh = dh_state + dy; dc_state in: the carry
  // from step t+1, out: dc_{t-1}; c_prev [n,H]; out: da [n,4H] the pre-activation gradients
  // (the input side's), dgh [n,4H] the raw products', dyc [n,H] g_c * LN(c) + b_c's.
  void (*lnlstm_backward)(int64_t n, int64_t H, const S* gates, const S* gh, const S* cells,
                          const S* c_prev, const S* stats, const S* g_hh, const S* g_c,
                          const S* b_c, const S* dh_state, const S* dy, S* dc_state, S* da,
                          S* dgh, S* dyc);
  // Layer-normalised GRU (torch.nn.GRU's cell, hh = g_hh * LN(h W_hh^T) + b_hh), a step's pass
  // after its product, rows b < n: gh [n,3H] the raw products, xp [n,3H], g_hh [3H], b_hh [3H]
  // or null; h_state [n,H] in: h_{t-1}, out: h_t; out: gates [n,3H] r, z, n, stats [n,2] (mean
  // and rstd of gh's row), y [n,H] h_t.
  void (*lngru_forward)(int64_t n, int64_t H, const S* xp, const S* gh, const S* g_hh,
                        const S* b_hh, S* h_state, S* gates, S* stats, S* y);
  // Its backward before the product, rows b < n: dh = dh_state + dy; h_prev [n,H]; out: da
  // [n,3H] the input side's pre-activation gradients, dhh [n,3H] hh's, dgh [n,3H] the raw
  // products', dh_state the direct part of dh_{t-1} (z * dh).
  void (*lngru_backward)(int64_t n, int64_t H, const S* gates, const S* gh, const S* stats,
                         const S* g_hh, const S* b_hh, const S* h_prev, S* dh_state, const S* dy,
                         S* da, S* dhh, S* dgh);
  // y [n,H] in: pre-activations, out: h_t; h_state [n,H] out: h_t. act: 0 tanh, 1 relu.
  void (*rnn_forward)(int64_t n, int64_t H, int act, S* y, S* h_state);
  // y [n,H] = h_t; dh = dh_state + dy; da [n,H] out.
  void (*rnn_backward)(int64_t n, int64_t H, int act, const S* y, const S* dh_state, const S* dy,
                       S* da);
};

template <class S>
const Pointwise<S>& pointwise();

// Test hook: act as a CPU whose best instruction set is `level` (0 portable/BLAS, 1 AVX2 + FMA,
// 2 AVX-512) for the pointwise passes, the GEMM (force_gemm_isa) and the fused LSTM step and
// sweeps (lstm_step_fn and the thin ones), from the next call on; -1 = automatic again. Returns
// false (and changes nothing) if this CPU cannot run it. Process-wide: for tests, which run one
// at a time.
bool force_cpu_isa(int level);

}  // namespace cpu
}  // namespace fusedrnn
