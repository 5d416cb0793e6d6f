"""The layer-normalised LSTM and GRU (Ba, Kiros and Hinton 2016) as modules and cells in
torch.nn's style: fusedrnn.LayerNormLSTM, LayerNormLSTMCell, LayerNormGRU, LayerNormGRUCell.

Equations: fusedrnn.functional.layer_norm_lstm_layer and layer_norm_gru_layer (gate orders of
torch.nn: i, f, g, o and r, z, n; layer norm over each product's pre-activations and, for the
LSTM, over the H cells; eps 1e-5). Parameters per layer k (suffix _reverse for the reverse
direction; the cells: the same names without _l{k}), G = 4 (LSTM) or 3 (GRU):
  weight_ih_l{k} [G*H, I_k], weight_hh_l{k} [G*H, H]   uniform(-1/sqrt(H), 1/sqrt(H)), as torch.nn
  gain_ih_l{k}, gain_hh_l{k} [G*H]                      ones (the gate norms' gains)
  LSTM: gain_cell_l{k} [H] ones; bias_l{k} [4H] uniform and bias_cell_l{k} [H] zeros (bias=True):
        one gate bias, since the two gate norms' own biases would only add to it
  GRU:  bias_ih_l{k}, bias_hh_l{k} [3H] uniform (bias=True), as torch.nn.GRU's (b_hn sits
        inside r * (...), so both are needed)
bias=False drops the biases. forward takes and returns what torch.nn.LSTM's / GRU's does (no
proj_size).
"""
import math

import torch
from torch import nn

from fusedrnn.cells import _FusedCellBase
from fusedrnn.modules import _OwnParamsRNNBase, own_attrs

__all__ = ["LayerNormLSTM", "LayerNormLSTMCell", "LayerNormGRU", "LayerNormGRUCell"]

# Per kind, one layer's parameters in the functional's argument order after (x, h0[, c0]):
# (name, rows per hidden unit, columns: "in" the layer's input width or "H", initialisation,
# present only with bias=True).
_SPECS = {
    "ln_lstm": (("weight_ih", 4, "in", "uniform", False), ("weight_hh", 4, "H", "uniform", False),
                ("gain_ih", 4, None, "ones", False), ("gain_hh", 4, None, "ones", False),
                ("gain_cell", 1, None, "ones", False), ("bias", 4, None, "uniform", True),
                ("bias_cell", 1, None, "zeros", True)),
    "ln_gru": (("weight_ih", 3, "in", "uniform", False), ("weight_hh", 3, "H", "uniform", False),
               ("gain_ih", 3, None, "ones", False), ("gain_hh", 3, None, "ones", False),
               ("bias_ih", 3, None, "uniform", True), ("bias_hh", 3, None, "uniform", True)),
}


def _make(module, sfx, width, H, bias, kw):
    for name, rows, cols, _, needs_bias in _SPECS[module._kind]:
        shape = (rows * H,) if cols is None else (rows * H, width if cols == "in" else H)
        p = nn.Parameter(torch.empty(*shape, **kw)) if bias or not needs_bias else None
        module.register_parameter(f"{name}{sfx}", p)


def _init(module, sfxs):
    bound = 1.0 / math.sqrt(module.hidden_size)
    with torch.no_grad():
        for sfx in sfxs:
            for name, _, _, how, _ in _SPECS[module._kind]:
                p = getattr(module, f"{name}{sfx}")
                if p is None:
                    continue
                if how == "uniform":
                    nn.init.uniform_(p, -bound, bound)
                else:
                    p.fill_(1.0 if how == "ones" else 0.0)


def _check(name, input_size, hidden_size):
    if hidden_size <= 0 or input_size <= 0:
        raise ValueError(f"{name}: input_size and hidden_size must be positive, got "
                         f"{input_size} and {hidden_size}")


class _LayerNormRNNBase(_OwnParamsRNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__()
        _check(type(self).__name__, input_size, hidden_size)
        self._set_args(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                       bidirectional)
        D = 2 if bidirectional else 1
        kw = dict(device=device, dtype=dtype)
        self._sfxs = [f"_l{layer}" + ("_reverse" if d == 1 else "")
                      for layer in range(self.num_layers) for d in range(D)]
        for i, sfx in enumerate(self._sfxs):
            width = input_size if i < D else D * hidden_size
            _make(self, sfx, width, hidden_size, self.bias, kw)
        self.reset_parameters()

    def reset_parameters(self):
        _init(self, self._sfxs)

    def _layer_weights(self, layer, direction):
        sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        return tuple(getattr(self, f"{n}{sfx}") for n, *_ in _SPECS[self._kind]) + (None,)


class _LayerNormCellBase(_FusedCellBase, nn.Module):
    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        _check(type(self).__name__, input_size, hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size
        # Not self.bias: the LSTM cell's gate bias is a parameter of that name.
        self._with_bias = bool(bias)
        _make(self, "", input_size, hidden_size, self._with_bias,
              dict(device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self):
        _init(self, [""])

    def _weights(self):
        return own_attrs(self, [n for n, *_ in _SPECS[self._kind]])

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        return s if self._with_bias else s + ", bias=False"


class LayerNormLSTM(_LayerNormRNNBase):
    """The layer-normalised LSTM (Ba et al. 2016), torch.nn.LSTM's arguments (no proj_size)
    and call: a = g_ih LN(x W_ih^T) + g_hh LN(h W_hh^T) + b, c' = f c + i g,
    h' = o tanh(g_c LN(c') + b_c); parameters: fusedrnn/layer_norm.py."""

    _kind = "ln_lstm"


class LayerNormGRU(_LayerNormRNNBase):
    """The layer-normalised GRU, torch.nn.GRU's arguments and call: torch.nn.GRU's cell with
    x W_ih^T + b_ih and h W_hh^T + b_hh replaced by g_ih LN(x W_ih^T) + b_ih and
    g_hh LN(h W_hh^T) + b_hh; parameters: fusedrnn/layer_norm.py."""

    _kind = "ln_gru"


class LayerNormLSTMCell(_LayerNormCellBase):
    """One step of fusedrnn.LayerNormLSTM: torch.nn.LSTMCell's arguments and call
    (input [B,I] or [I], hx=(h, c) or None -> (h', c'))."""

    _kind = "ln_lstm"


class LayerNormGRUCell(_LayerNormCellBase):
    """One step of fusedrnn.LayerNormGRU: torch.nn.GRUCell's arguments and call
    (input [B,I] or [I], hx=h or None -> h')."""

    _kind = "ln_gru"
