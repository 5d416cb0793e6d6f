"""Deploying without fusedrnn: torch.export of models holding fusedrnn layers (dynamic batch and
sequence length), and torch.onnx.export (the TorchScript exporter) producing ONNX's standard
LSTM/GRU/RNN nodes that onnxruntime runs with torch.nn's outputs."""
import io
import warnings

import pytest
import torch
from torch import nn

import fusedrnn

KW = dict(num_layers=2, bidirectional=True, batch_first=True)


class Head(nn.Module):
    """A recurrent layer and a linear read-out, as a user's model holds it."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn, self.out = rnn, nn.Linear(rnn.hidden_size * 2, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y)


def _pair(name, seed=0):
    torch.manual_seed(seed)
    ours = Head(getattr(fusedrnn, name)(4, 5, **KW)).eval()
    ref = Head(getattr(nn, name)(4, 5, **KW)).eval()
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_torch_export_dynamic_batch_and_length(name):
    ours, ref = _pair(name)
    B, T = torch.export.Dim("B", min=2, max=512), torch.export.Dim("T", min=2, max=4096)
    ep = torch.export.export(ours, (torch.randn(3, 6, 4),), dynamic_shapes={"x": {0: B, 1: T}})
    assert any("fusedrnn" in str(n.target) for n in ep.graph.nodes)
    run = ep.module()
    for shape in ((2, 9, 4), (5, 2, 4)):  # other batch and length than traced
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(run(x), ref(x), atol=1e-5, rtol=1e-4)


def _onnx():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    return onnx, ort


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_onnx_export_gives_standard_nodes(name):
    onnx, ort = _onnx()
    ours, ref = _pair(name, seed=1)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ours, (torch.randn(3, 6, 4),), buf, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "B", 1: "T"}})
    model = onnx.load_from_string(buf.getvalue())
    ops = {n.op_type for n in model.graph.node}
    assert name in ops, ops  # ONNX's LSTM / GRU / RNN operator
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node), "custom ops left"
    sess = ort.InferenceSession(buf.getvalue())
    for shape in ((2, 9, 4), (5, 2, 4)):
        x = torch.randn(*shape)
        got = torch.from_numpy(sess.run(None, {"x": x.numpy()})[0])
        with torch.no_grad():
            torch.testing.assert_close(got, ref(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_onnx_export_of_cells(name):
    onnx, ort = _onnx()
    torch.manual_seed(2)
    ours = getattr(fusedrnn, name)(4, 5).eval()
    ref = getattr(nn, name)(4, 5).eval()
    ref.load_state_dict(ours.state_dict())
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ours, (torch.randn(3, 4),), buf, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "B"}})
    model = onnx.load_from_string(buf.getvalue())
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    sess = ort.InferenceSession(buf.getvalue())
    x = torch.randn(6, 4)
    got = sess.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        exp = ref(x)
    exp = exp[0] if isinstance(exp, tuple) else exp
    torch.testing.assert_close(torch.from_numpy(got), exp, atol=1e-5, rtol=1e-4)
