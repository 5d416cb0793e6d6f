"""fp64 torch.autograd.gradcheck of the three fused layers through every backend."""
import pytest
import torch

from conftest import device_of, layer_inputs
from fusedrnn import functional as F


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_gradcheck(backend, kind, reverse):
    base = kind.split("_")[0]
    d = layer_inputs(base, 3, 2, 3, 4, device=device_of(backend), seed=3)
    names = ["x", "h0"] + (["c0"] if base == "lstm" else []) + ["w_ih", "w_hh", "b_ih", "b_hh"]
    args = [d[n].clone().requires_grad_() for n in names]

    def f(*a):
        kw = dict(zip(names, a))
        w = (kw["w_ih"], kw["w_hh"], kw["b_ih"], kw["b_hh"])
        if base == "lstm":
            return F.lstm_layer(kw["x"], kw["h0"], kw["c0"], *w, reverse=reverse)
        if base == "gru":
            return F.gru_layer(kw["x"], kw["h0"], *w, reverse=reverse)
        return F.rnn_layer(kw["x"], kw["h0"], *w, nonlinearity=kind[4:], reverse=reverse)

    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-5)
