"""Whole models holding fusedrnn layers saved with torch.save and loaded with
torch.load(weights_only=True): allow-listing fusedrnn's module classes (and the model's own
container) is enough for every module and cell, and the loaded model computes the same outputs."""
import io

import pytest
import torch

import fusedrnn

CASES = [
    ("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("LSTM", dict(proj_size=2, dropout=0.25, num_layers=2)),
    ("GRU", dict(num_layers=2, bias=False)),
    ("RNN", dict(nonlinearity="relu", bidirectional=True)),
    ("LSTMCell", {}),
    ("GRUCell", dict(bias=False)),
    ("RNNCell", dict(nonlinearity="relu")),
]
ALL = [fusedrnn.LSTM, fusedrnn.GRU, fusedrnn.RNN, fusedrnn.LSTMCell, fusedrnn.GRUCell,
       fusedrnn.RNNCell]


def _run(m, name):
    torch.manual_seed(3)
    if name.endswith("Cell"):
        return m[0](torch.randn(2, 3))
    x = torch.randn(2, 4, 3) if getattr(m[0], "batch_first", False) else torch.randn(4, 2, 3)
    return m[0](x)[0]


def _saved(model):
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_whole_model_loads_weights_only_with_fusedrnn_classes_allowed(name, kw):
    model = torch.nn.Sequential(getattr(fusedrnn, name)(3, 4, **kw)).eval()
    with torch.serialization.safe_globals(ALL + [torch.nn.Sequential]):
        loaded = torch.load(_saved(model), weights_only=True)
    assert type(loaded[0]) is type(model[0])
    with torch.no_grad():
        torch.testing.assert_close(_run(loaded, name), _run(model, name))


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"])
def test_converted_model_needs_fusedrnn_classes_not_torch_nn(name):
    """What code written for torch.nn allow-lists (word_language_model: torch.nn's classes) is
    not enough for a converted model; the README's list of fusedrnn classes is."""
    model = fusedrnn.convert(torch.nn.Sequential(getattr(torch.nn, name)(3, 4)))
    torch_nn = [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN, torch.nn.LSTMCell, torch.nn.GRUCell,
                torch.nn.RNNCell, torch.nn.Sequential]
    with torch.serialization.safe_globals(torch_nn):
        with pytest.raises(Exception, match="fusedrnn"):
            torch.load(_saved(model), weights_only=True)
    with torch.serialization.safe_globals(ALL + [torch.nn.Sequential]):
        loaded = torch.load(_saved(model), weights_only=True)
    with torch.no_grad():
        torch.testing.assert_close(_run(loaded, name), _run(model, name))
