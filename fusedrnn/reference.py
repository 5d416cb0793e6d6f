"""The equations of the cells in plain PyTorch, one time step at a time: the tests' oracle.

Same signatures and conventions as fusedrnn.functional (gate order of torch.nn: LSTM i,f,g,o;
GRU r,z,n with the reset gate applied after the recurrent matmul). Differentiable through
ordinary autograd. Deliberately simple: no fusion, no tricks.
"""
import torch

__all__ = ["lstm_cell", "gru_cell", "rnn_cell", "lstm_layer", "gru_layer", "rnn_layer"]


def _linear(x, w, b):
    y = x @ w.t()
    return y if b is None else y + b


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None):
    """One LSTM step: x [B,I], h [B,P], c [B,H] -> (h', c'); P = H without projection w_hr."""
    a = _linear(x, w_ih, b_ih) + _linear(h, w_hh, b_hh)
    ai, af, ag, ao = a.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(ai), torch.sigmoid(af), torch.tanh(ag), torch.sigmoid(ao)
    c_new = f * c + i * g
    h_new = o * torch.tanh(c_new)
    return (h_new if w_hr is None else h_new @ w_hr.t()), c_new


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step (reset-after): x [B,I], h [B,H] -> h'."""
    xr, xz, xn = _linear(x, w_ih, b_ih).chunk(3, dim=-1)
    hr, hz, hn = _linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """One Elman step: x [B,I], h [B,H] -> h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)."""
    a = _linear(x, w_ih, b_ih) + _linear(h, w_hh, b_hh)
    if nonlinearity == "tanh":
        return torch.tanh(a)
    if nonlinearity == "relu":
        return torch.relu(a)
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def _steps(T, reverse):
    return range(T - 1, -1, -1) if reverse else range(T)


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False, w_hr=None):
    """x [T,B,I] -> (y [T,B,P] in time order, h_n, c_n)."""
    h, c, ys = h0, c0, [None] * x.shape[0]
    for t in _steps(x.shape[0], reverse):
        h, c = lstm_cell(x[t], h, c, w_ih, w_hh, b_ih, b_hh, w_hr)
        ys[t] = h
    y = torch.stack(ys) if ys else x.new_empty(0, x.shape[1], w_hh.shape[1])
    return y, h, c


def gru_layer(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False):
    """x [T,B,I] -> (y [T,B,H] in time order, h_n)."""
    h, ys = h0, [None] * x.shape[0]
    for t in _steps(x.shape[0], reverse):
        h = gru_cell(x[t], h, w_ih, w_hh, b_ih, b_hh)
        ys[t] = h
    y = torch.stack(ys) if ys else x.new_empty(0, x.shape[1], w_hh.shape[1])
    return y, h


def rnn_layer(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", reverse=False):
    """x [T,B,I] -> (y [T,B,H] in time order, h_n)."""
    h, ys = h0, [None] * x.shape[0]
    for t in _steps(x.shape[0], reverse):
        h = rnn_cell(x[t], h, w_ih, w_hh, b_ih, b_hh, nonlinearity)
        ys[t] = h
    y = torch.stack(ys) if ys else x.new_empty(0, x.shape[1], w_hh.shape[1])
    return y, h
