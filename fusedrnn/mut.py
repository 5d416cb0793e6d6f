"""MUT1, MUT2 and MUT3 (Jozefowicz, Zaremba and Sutskever 2015), the three recurrent cells
found by that paper's architecture search, as modules and cells in torch.nn's style.

Equations and parameter layout: fusedrnn.functional.mut_layer (gate order r, z, n; one bias
per gate). Parameters per layer k (suffix _reverse for the backward direction):
weight_ih_l{k} [2H or 3H, I_k], weight_hh_l{k} [2H or 3H, H], bias_l{k} [3H]; all initialised
uniform(-1/sqrt(H), 1/sqrt(H)) as torch.nn's RNNs. MUT1 and MUT2 add x itself to a gate, so
their input size must equal the hidden size (in every layer: with bidirectional=True they take
one layer only). forward takes and returns what torch.nn.GRU's does.
"""
import math

import torch
from torch import nn

from fusedrnn.cells import _FusedCellBase
from fusedrnn.modules import _OwnParamsRNNBase, own_attrs

__all__ = ["MUT1", "MUT2", "MUT3", "MUT1Cell", "MUT2Cell", "MUT3Cell"]

# Rows of weight_ih and weight_hh per hidden unit.
_IH_GATES = {1: 2, 2: 2, 3: 3}
_HH_GATES = {1: 2, 2: 3, 3: 3}


def _check_sizes(name, variant, input_size, hidden_size):
    if hidden_size <= 0 or input_size <= 0:
        raise ValueError(f"{name}: input_size and hidden_size must be positive, got "
                         f"{input_size} and {hidden_size}")
    if variant in (1, 2) and input_size != hidden_size:
        raise ValueError(f"{name} needs input_size == hidden_size (x enters the "
                         f"{'n' if variant == 1 else 'r'} gate as is), got {input_size} and "
                         f"{hidden_size}")


def _reset(module, hidden_size):
    bound = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


class _MUTBase(_OwnParamsRNNBase):
    _kind = "mut"
    variant = None

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        _check_sizes(name, self.variant, input_size, hidden_size)
        self._set_args(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                       bidirectional)
        D = 2 if bidirectional else 1
        if self.variant in (1, 2) and bidirectional and num_layers > 1:
            raise ValueError(f"{name}: the layers after the first get 2*hidden_size inputs with "
                             f"bidirectional=True, and {name} needs input_size == hidden_size: "
                             "use num_layers=1 or bidirectional=False")
        kw = dict(device=device, dtype=dtype)
        H = hidden_size
        for layer in range(self.num_layers):
            width = input_size if layer == 0 else D * H
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
                self.register_parameter(
                    f"weight_ih{sfx}",
                    nn.Parameter(torch.empty(_IH_GATES[self.variant] * H, width, **kw)))
                self.register_parameter(
                    f"weight_hh{sfx}",
                    nn.Parameter(torch.empty(_HH_GATES[self.variant] * H, H, **kw)))
                self.register_parameter(
                    f"bias{sfx}", nn.Parameter(torch.empty(3 * H, **kw)) if self.bias else None)
        self.reset_parameters()

    def reset_parameters(self):
        _reset(self, self.hidden_size)

    def _layer_weights(self, layer, direction):
        sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        return (getattr(self, f"weight_ih{sfx}"), getattr(self, f"weight_hh{sfx}"),
                getattr(self, f"bias{sfx}"), None, None)


class MUT1(_MUTBase):
    """MUT1: z = s(W_xz x + b_z), r = s(W_xr x + W_hr h + b_r),
    h' = tanh(W_hh (r*h) + tanh(x) + b_h) * z + h * (1 - z). input_size == hidden_size."""

    variant = 1


class MUT2(_MUTBase):
    """MUT2: z = s(W_xz x + W_hz h + b_z), r = s(x + W_hr h + b_r),
    h' = tanh(W_hh (r*h) + W_xh x + b_h) * z + h * (1 - z). input_size == hidden_size."""

    variant = 2


class MUT3(_MUTBase):
    """MUT3: z = s(W_xz x + W_hz tanh(h) + b_z), r = s(W_xr x + W_hr h + b_r),
    h' = tanh(W_hh (r*h) + W_xh x + b_h) * z + h * (1 - z)."""

    variant = 3


class _MUTCellBase(_FusedCellBase, nn.Module):
    """One step of MUT1-3: parameters weight_ih, weight_hh, bias (layout of the modules'
    layer 0); forward(input [B,I] or [I], hx=None) -> h' as torch.nn.GRUCell's."""

    _kind = "mut"
    variant = None

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        _check_sizes(type(self).__name__, self.variant, input_size, hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size
        kw = dict(device=device, dtype=dtype)
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(_IH_GATES[self.variant] * H, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(_HH_GATES[self.variant] * H, H, **kw))
        self.bias = nn.Parameter(torch.empty(3 * H, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        _reset(self, self.hidden_size)

    def _weights(self):
        return own_attrs(self, ("weight_ih", "weight_hh", "bias"))

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        return s if self.bias is not None else s + ", bias=False"


class MUT1Cell(_MUTCellBase):
    """One MUT1 step (equations: fusedrnn.MUT1)."""

    variant = 1


class MUT2Cell(_MUTCellBase):
    """One MUT2 step (equations: fusedrnn.MUT2)."""

    variant = 2


class MUT3Cell(_MUTCellBase):
    """One MUT3 step (equations: fusedrnn.MUT3)."""

    variant = 3
