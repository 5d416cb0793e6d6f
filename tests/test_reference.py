"""The oracle itself: fusedrnn.reference agrees with torch.nn.LSTM/GRU/RNN."""
import pytest
import torch

from fusedrnn import reference


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("reverse", [False, True])
def test_reference_matches_torch_nn(kind, reverse):
    torch.manual_seed(1)
    T, B, I, H = 6, 3, 5, 7
    if kind == "lstm":
        m = torch.nn.LSTM(I, H, bidirectional=True)
    elif kind == "gru":
        m = torch.nn.GRU(I, H, bidirectional=True)
    else:
        m = torch.nn.RNN(I, H, nonlinearity=kind[4:], bidirectional=True)
    m = m.double()
    x = torch.randn(T, B, I, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(2, B, H, dtype=torch.double)
    c0 = torch.randn(2, B, H, dtype=torch.double)
    d = 1 if reverse else 0
    sfx = "_l0_reverse" if reverse else "_l0"
    w = [getattr(m, n + sfx) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if kind == "lstm":
        out, (hn, cn) = m(x, (h0, c0))
        y, h, c = reference.lstm_layer(x, h0[d], c0[d], *w, reverse=reverse)
        torch.testing.assert_close(c, cn[d])
    elif kind == "gru":
        out, hn = m(x, h0)
        y, h = reference.gru_layer(x, h0[d], *w, reverse=reverse)
    else:
        out, hn = m(x, h0)
        y, h = reference.rnn_layer(x, h0[d], *w, nonlinearity=kind[4:], reverse=reverse)
    torch.testing.assert_close(y, out[..., d * H:(d + 1) * H])
    torch.testing.assert_close(h, hn[d])
    # Gradients of a loss that sees only this direction's outputs.
    g_ref = torch.autograd.grad((y * y).sum(), [x] + w)
    g_nn = torch.autograd.grad((out[..., d * H:(d + 1) * H] ** 2).sum(), [x] + w)
    for a, b in zip(g_ref, g_nn):
        torch.testing.assert_close(a, b)
