"""The fp32 activations of the CPU cells (csrc/cpu/pointwise_impl.h: sigmoid and tanh built on
fast_exp, the inline exp of the AVX2 and AVX-512 passes) on every instruction set this CPU has,
against float64: pre-activations over [-100, 100] and the special values (+-inf, NaN, the edge
of exp's range), through the fused LSTM step (a sequence of enough rows), the pointwise pass (one
row: W_hh read as stored, GEMM then pass) and the RNN's tanh.

The weights are zero on purpose: a gate's pre-activation is then exactly its bias, so the saved
activations are the functions themselves, evaluated at chosen points."""
import pytest
import torch

from fusedrnn._ops import ops

SPECIAL = [float("nan"), float("inf"), -float("inf"), 0.0, 88.5, -88.5, 87.0, -87.0, 1e-30,
           -1e-30, 0.0625, -0.0625]


def _points(n):
    return torch.cat([torch.linspace(-100, 100, n - len(SPECIAL)), torch.tensor(SPECIAL)])


def _check(got, want, fn):
    """got (fp32) against want (fp64): NaN where want is NaN, exact where want is 0 or +-1 after
    rounding to fp32 (the saturated values the cells rely on), else sigmoid within 4 ulp
    relative, tanh within 2e-7 absolute and 2e-6 relative (its 1 - 2 / (e^2x + 1) form
    cancels just above |x| = 1/16)."""
    got = got.double()
    assert torch.equal(got.isnan(), want.isnan())
    ok = ~want.isnan()
    got, want = got[ok], want[ok]
    exact = want.float().double()
    sat = (exact == 0) | (exact.abs() == 1)
    assert torch.equal(got[sat], exact[sat]), (got[sat] - exact[sat]).abs().max()
    # Below fp32's normal range (sigmoid under -87) a result may be 0 or the smallest normal
    # instead of a denormal: absolute error there.
    tiny = want.abs() < 2.0 ** -126
    assert ((got[tiny] - want[tiny]).abs() <= 2.0 ** -126).all()
    g, w = got[~sat & ~tiny], want[~sat & ~tiny]
    rel = ((g - w).abs() / w.abs()).max().item()
    if fn == "sigmoid":
        assert rel <= 4 * 2.0 ** -23, rel
    else:
        assert (g - w).abs().max().item() <= 2e-7 and rel <= 2e-6, rel


@pytest.mark.parametrize("T", [24, 1], ids=["fused_step", "pointwise_pass"])
def test_lstm_gates(cpu_isa, T):
    H = 1037  # not a multiple of 8 or 16: the last vector of each gate is partial
    v = _points(4 * H)
    x = torch.randn(T, 1, 3)
    h0, c0 = torch.zeros(1, H), torch.zeros(1, H)
    w_ih, w_hh = torch.zeros(4 * H, 3), torch.zeros(4 * H, H)
    _, _, _, gates, _ = ops.lstm_forward(x, h0, c0, w_ih, w_hh, v, torch.zeros(4 * H), False,
                                         "cpu", None, None, "auto", True)
    vd = v.double()
    # Step 0 only: from step 1 on the NaN of one unit reaches every unit through h W_hh (0 * NaN).
    for t in range(1):
        g = gates.reshape(T, 4 * H)[t]
        _check(g[:2 * H], torch.sigmoid(vd[:2 * H]), "sigmoid")
        _check(g[2 * H:3 * H], torch.tanh(vd[2 * H:3 * H]), "tanh")
        _check(g[3 * H:], torch.sigmoid(vd[3 * H:]), "sigmoid")


def test_rnn_tanh(cpu_isa):
    H = 4099
    v = _points(H)
    x = torch.randn(5, 1, 3)
    y, _ = ops.rnn_forward(x, torch.zeros(1, H), torch.zeros(H, 3), torch.zeros(H, H), v,
                           torch.zeros(H), "tanh", False, "cpu", None)
    _check(y[0, 0], torch.tanh(v.double()), "tanh")  # step 0: as in test_lstm_gates

