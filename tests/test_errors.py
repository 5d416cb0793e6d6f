"""Bad input raises a clear Python exception naming the problem: never a crash, never a
silently wrong result. Module level (torch.nn's messages where torch.nn has them) and op level."""
import pytest
import torch

import fusedrnn

from conftest import layer_inputs

ops = torch.ops.fusedrnn


# ---------------------------------------------------------------- modules
@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_module_input_rank(name):
    m = getattr(fusedrnn, name)(4, 5)
    for shape in [(2, 3, 4, 4), (4,)]:
        with pytest.raises(ValueError, match="Expected input to be 2D or 3D"):
            m(torch.randn(shape))


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_module_input_size(name):
    m = getattr(fusedrnn, name)(4, 5)
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size"):
        m(torch.randn(3, 2, 6))


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_module_mixed_dtypes(name):
    m = getattr(fusedrnn, name)(4, 5)
    # torch.nn's own check and message (ValueError in recent torch versions).
    with pytest.raises((ValueError, RuntimeError), match="dtype"):
        m(torch.randn(3, 2, 4, dtype=torch.float64))
    h = torch.randn(1, 2, 5, dtype=torch.float64)
    hx = (h, h) if name == "LSTM" else h
    with pytest.raises(RuntimeError, match="dtype"):
        m(torch.randn(3, 2, 4), hx)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_module_mixed_devices(name):
    m = getattr(fusedrnn, name)(4, 5)
    with pytest.raises(RuntimeError, match="meta"):
        m(torch.randn(3, 2, 4, device="meta"))


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_module_hidden_shapes(name):
    m = getattr(fusedrnn, name)(4, 5, num_layers=2)
    x = torch.randn(3, 2, 4)
    for bad in [(1, 2, 5), (2, 3, 5), (2, 2, 6)]:
        h = torch.randn(bad)
        hx = (h, torch.randn(2, 2, 5)) if name == "LSTM" else h
        with pytest.raises(RuntimeError, match="Expected hidden"):
            m(x, hx)
    h = torch.randn(2, 5)  # unbatched hidden state with batched input
    with pytest.raises(RuntimeError, match="3-D"):
        m(x, (h, h) if name == "LSTM" else h)


def test_lstm_hidden_tuple():
    m = fusedrnn.LSTM(4, 5)
    x = torch.randn(3, 2, 4)
    h = torch.randn(1, 2, 5)
    for bad in [h, (h,), (h, h, h), (h, None)]:
        with pytest.raises(TypeError, match="tuple \\(h_0, c_0\\)"):
            m(x, bad)
    with pytest.raises(RuntimeError, match="Expected hidden"):
        m(x, (h, torch.randn(1, 2, 4)))


@pytest.mark.parametrize("name", ["GRU", "RNN"])
def test_gru_rnn_hidden_must_be_tensor(name):
    m = getattr(fusedrnn, name)(4, 5)
    h = torch.randn(1, 2, 5)
    with pytest.raises(TypeError, match="must be a tensor"):
        m(torch.randn(3, 2, 4), (h, h))


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        with fusedrnn.backend("gpu"):
            pass


# ---------------------------------------------------------------- ops
def lstm_args(**over):
    d = layer_inputs("lstm", 3, 2, 4, 5, dtype=torch.float32)
    d.update(over)
    return (d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])


@pytest.mark.parametrize("over,match", [
    (dict(x=torch.randn(3, 4)), "x must be \\[T, B, I\\]"),
    (dict(x=torch.randn(3, 0, 4)), "B >= 1"),
    (dict(w_ih=torch.randn(20, 3)), "w_ih must be"),
    (dict(w_hh=torch.randn(20, 4)), "w_hh must be"),
    (dict(w_hh=torch.randn(20)), "w_hh must be 2-D"),
    (dict(h0=torch.randn(3, 5)), "h0 must be"),
    (dict(c0=torch.randn(2, 6)), "c0 must be"),
    (dict(b_ih=None), "both given or both absent"),
    (dict(b_hh=torch.randn(19)), "b_hh must be"),
    (dict(h0=torch.randn(2, 5, dtype=torch.float64)), "dtype"),
    (dict(w_hh=torch.randn(20, 5, dtype=torch.float64)), "dtype"),
    (dict(x=torch.ones(3, 2, 4, dtype=torch.int32)), "dtype|floating"),
    (dict(c0=torch.randn(2, 5, device="meta")), "meta"),
])
def test_op_bad_inputs(over, match):
    with pytest.raises(RuntimeError, match=match):
        ops.lstm_forward(*lstm_args(**over))


def test_op_bad_backend_and_nonlinearity():
    with pytest.raises(RuntimeError, match="unknown backend"):
        ops.lstm_forward(*lstm_args(), False, "gpu")
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        ops.lstm_forward(*lstm_args(), False, "cuda")
    d = layer_inputs("rnn", 3, 2, 4, 5, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="nonlinearity"):
        ops.rnn_forward(d["x"], d["h0"], d["w_ih"], d["w_hh"], None, None, "sigmoid")


def test_op_bad_gradient_shapes():
    args = lstm_args()
    y, hn, cn, gates, cells = ops.lstm_forward(*args)
    x, h0, c0, w_ih, w_hh = args[:5]
    good = [torch.randn_like(y), torch.randn_like(hn), torch.randn_like(cn)]
    for k, bad in [(0, torch.randn(3, 2, 6)), (1, torch.randn(2, 6)),
                   (2, torch.randn(2, 5, dtype=torch.float64))]:
        g = list(good)
        g[k] = bad
        with pytest.raises(RuntimeError, match=["dy", "dh_n", "dc_n"][k]):
            ops.lstm_backward(*g, x, h0, c0, w_ih, w_hh, y, gates, cells)
    with pytest.raises(RuntimeError, match="gates"):
        ops.lstm_backward(*good, x, h0, c0, w_ih, w_hh, y, gates[:, :, :4], cells)
