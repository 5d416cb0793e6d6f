"""fusedrnn.LSTMCell/GRUCell/RNNCell against torch.nn's cells, and fusedrnn.convert()."""
import pytest
import torch

import fusedrnn

from conftest import device_of

CELLS = [("LSTMCell", {}), ("GRUCell", {}), ("RNNCell", {"nonlinearity": "tanh"}),
         ("RNNCell", {"nonlinearity": "relu"})]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name,extra", CELLS, ids=["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_cell_matches_torch_nn(backend, name, extra, bias):
    device = device_of(backend)
    torch.manual_seed(0)
    ref = getattr(torch.nn, name)(5, 7, bias=bias, **extra).double().to(device)
    ours = getattr(fusedrnn, name)(5, 7, bias=bias, **extra).double().to(device)
    ours.load_state_dict(ref.state_dict())
    assert repr(ours) == repr(ref)
    for batched in (True, False):
        x = torch.randn(*((3,) if batched else ()), 5, dtype=torch.double, device=device)
        h = torch.randn(*((3,) if batched else ()), 7, dtype=torch.double, device=device)
        hx = (h, h.flip(-1)) if name == "LSTMCell" else h
        for args in ((x,), (x, hx)):
            r, o = ref(*args), ours(*args)
            r = r if isinstance(r, tuple) else (r,)
            o = o if isinstance(o, tuple) else (o,)
            for a, b in zip(o, r):
                torch.testing.assert_close(a, b)
            gr = torch.autograd.grad(sum(t.square().sum() for t in r), list(ref.parameters()))
            go = torch.autograd.grad(sum(t.square().sum() for t in o), list(ours.parameters()))
            for a, b in zip(go, gr):
                torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cell_bad_inputs(name):
    m = getattr(fusedrnn, name)(4, 5)
    with pytest.raises(ValueError, match="1D or 2D"):
        m(torch.randn(2, 3, 4))
    with pytest.raises(RuntimeError, match="input_size"):
        m(torch.randn(3, 6))
    h = torch.randn(2, 5)
    with pytest.raises(RuntimeError, match="hidden size"):
        m(torch.randn(3, 4), (h, h) if name == "LSTMCell" else h)
    with pytest.raises(TypeError):
        m(torch.randn(3, 4), (torch.randn(3, 5),) * (1 if name == "LSTMCell" else 2))


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.rnns = torch.nn.ModuleList([torch.nn.LSTM(4, 6, num_layers=2), torch.nn.GRU(6, 5),
                                         torch.nn.RNN(5, 3, nonlinearity="relu")])
        self.cell = torch.nn.GRUCell(3, 3)
        self.head = torch.nn.Linear(3, 10)

    def forward(self, tokens):
        x = self.emb(tokens)
        x, _ = self.rnns[0](x)
        x, _ = self.rnns[1](x)
        x, h = self.rnns[2](x)
        return self.head(self.cell(x[-1], h[0]))


def test_convert_replaces_every_rnn_and_keeps_weights():
    torch.manual_seed(0)
    model = Model().double()
    tokens = torch.randint(0, 10, (7, 2))
    expected = model(tokens)
    params = list(model.parameters())
    out = fusedrnn.convert(model)
    assert out is model
    assert type(model.rnns[0]) is fusedrnn.LSTM and type(model.rnns[1]) is fusedrnn.GRU
    assert type(model.rnns[2]) is fusedrnn.RNN and type(model.cell) is fusedrnn.GRUCell
    assert all(a is b for a, b in zip(model.parameters(), params))
    torch.testing.assert_close(model(tokens), expected)
    assert type(fusedrnn.convert(torch.nn.LSTM(3, 4))) is fusedrnn.LSTM
    assert type(fusedrnn.convert(torch.nn.LSTM(3, 4, proj_size=2))) is fusedrnn.LSTM
