"""The layer-normalised LSTM (Ba, Kiros and Hinton 2016) as a module and a cell in torch.nn's
style: fusedrnn.LayerNormLSTM and fusedrnn.LayerNormLSTMCell.

Equations: fusedrnn.functional.layer_norm_lstm_layer (gate order i, f, g, o as torch.nn.LSTM;
layer norm over each product's 4H pre-activations and over the H cells, eps 1e-5).
Parameters per layer k (suffix _reverse for the reverse direction; the cell: the same names
without _l{k}):
  weight_ih_l{k} [4H, I_k], weight_hh_l{k} [4H, H]   uniform(-1/sqrt(H), 1/sqrt(H)), as torch.nn
  bias_l{k} [4H] (bias=True)                          uniform(-1/sqrt(H), 1/sqrt(H))
  gain_ih_l{k}, gain_hh_l{k} [4H], gain_cell_l{k} [H] ones (the layer norms' gains)
  bias_cell_l{k} [H] (bias=True)                      zeros (the cell norm's bias)
One bias for the gates: the two gate norms' own biases would only add to it. bias=False drops
both biases. forward takes and returns what torch.nn.LSTM's does (no proj_size).
"""
import math

import torch
from torch import nn

from fusedrnn.cells import _FusedCellBase
from fusedrnn.modules import _FusedRNNBase

__all__ = ["LayerNormLSTM", "LayerNormLSTMCell"]

# (name, rows per hidden unit, initialisation) of one layer's parameters after the weights.
_LN_PARAMS = (("gain_ih", 4, "ones"), ("gain_hh", 4, "ones"), ("gain_cell", 1, "ones"))
_LN_BIASES = (("bias", 4, "uniform"), ("bias_cell", 1, "zeros"))


def _make(module, sfx, width, H, bias, kw):
    module.register_parameter(f"weight_ih{sfx}", nn.Parameter(torch.empty(4 * H, width, **kw)))
    module.register_parameter(f"weight_hh{sfx}", nn.Parameter(torch.empty(4 * H, H, **kw)))
    for name, rows, _ in _LN_PARAMS:
        module.register_parameter(f"{name}{sfx}", nn.Parameter(torch.empty(rows * H, **kw)))
    for name, rows, _ in _LN_BIASES:
        module.register_parameter(
            f"{name}{sfx}", nn.Parameter(torch.empty(rows * H, **kw)) if bias else None)


def _init(module, H):
    bound = 1.0 / math.sqrt(H)
    kinds = {name: how for name, _, how in _LN_PARAMS + _LN_BIASES}
    kinds.update(weight_ih="uniform", weight_hh="uniform")
    with torch.no_grad():
        for full, p in module.named_parameters():
            how = next(v for k, v in kinds.items() if full == k or full.startswith(k + "_l"))
            if how == "uniform":
                nn.init.uniform_(p, -bound, bound)
            elif how == "ones":
                p.fill_(1.0)
            else:
                p.zero_()


def _names(sfx):
    """The layer's parameters in layer_norm_lstm_layer's order after (x, h0, c0)."""
    return tuple(f"{n}{sfx}" for n in ("weight_ih", "weight_hh", "gain_ih", "gain_hh",
                                        "gain_cell", "bias", "bias_cell"))


class LayerNormLSTM(_FusedRNNBase, nn.Module):
    """The layer-normalised LSTM (Ba et al. 2016), torch.nn.LSTM's arguments (no proj_size)
    and call: a = g_ih LN(x W_ih^T) + g_hh LN(h W_hh^T) + b, c' = f c + i g,
    h' = o tanh(g_c LN(c') + b_c); parameters: fusedrnn/layer_norm.py."""

    _kind = "ln_lstm"
    proj_size = 0

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        if hidden_size <= 0 or input_size <= 0:
            raise ValueError(f"{name}: input_size and hidden_size must be positive, got "
                             f"{input_size} and {hidden_size}")
        if num_layers < 1 or int(num_layers) != num_layers:
            raise ValueError(f"{name}: num_layers must be a positive integer, got {num_layers}")
        if not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = int(num_layers), bool(bias), batch_first
        self.dropout, self.bidirectional = float(dropout), bool(bidirectional)
        D = 2 if bidirectional else 1
        kw = dict(device=device, dtype=dtype)
        for layer in range(self.num_layers):
            width = input_size if layer == 0 else D * hidden_size
            for d in range(D):
                _make(self, f"_l{layer}" + ("_reverse" if d == 1 else ""), width, hidden_size,
                      self.bias, kw)
        self.reset_parameters()

    def reset_parameters(self):
        _init(self, self.hidden_size)

    def _layer_weights(self, layer, direction):
        sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        return tuple(getattr(self, n) for n in _names(sfx)) + (None,)

    def check_forward_args(self, input, hidden, batch_sizes):
        """torch.nn.LSTM's checks (messages alike): input dims, size and dtype, h_0's and c_0's
        shapes."""
        want = 2 if batch_sizes is not None else 3
        if input.dim() != want:
            raise RuntimeError(f"input must have {want} dimensions, got {input.dim()}")
        if input.size(-1) != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {input.size(-1)}")
        w = self.weight_ih_l0
        if input.dtype != w.dtype and not torch.is_autocast_enabled(input.device.type):
            raise ValueError(f"input must have the type {w.dtype}, got type {input.dtype}")
        if batch_sizes is not None:
            B = int(batch_sizes[0])
        else:
            B = input.size(0) if self.batch_first else input.size(1)
        D = 2 if self.bidirectional else 1
        expected = (self.num_layers * D, B, self.hidden_size)
        for what, t in (("hidden", hidden[0]), ("cell", hidden[1])):
            if tuple(t.size()) != expected:
                raise RuntimeError(f"Expected {what} size {expected}, got {list(t.size())}")

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class LayerNormLSTMCell(_FusedCellBase, nn.Module):
    """One step of fusedrnn.LayerNormLSTM: torch.nn.LSTMCell's arguments and call
    (input [B,I] or [I], hx=(h, c) or None -> (h', c'))."""

    _kind = "ln_lstm"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        if hidden_size <= 0 or input_size <= 0:
            raise ValueError(f"{type(self).__name__}: input_size and hidden_size must be "
                             f"positive, got {input_size} and {hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.bias = bool(bias)
        _make(self, "", input_size, hidden_size, self.bias, dict(device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self):
        _init(self, self.hidden_size)

    def _weights(self):
        return tuple(getattr(self, n) for n in _names(""))

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        return s if self.bias else s + ", bias=False"
