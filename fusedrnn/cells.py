"""Drop-in replacements for torch.nn.LSTMCell, torch.nn.GRUCell and torch.nn.RNNCell.

Subclasses of their torch.nn counterparts (same constructor, parameters, state_dict, repr); one
step is the fused layer op over a sequence of length 1.
"""
import torch
from torch import nn

from fusedrnn import functional as F

__all__ = ["LSTMCell", "GRUCell", "RNNCell"]


class _FusedCellBase:
    _kind = None

    def _prepare(self, input, hx):
        name = type(self).__name__
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"fusedrnn.{name}: input must be a tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if input.size(-1) != self.input_size:
            raise RuntimeError(f"{name}: input has inconsistent input_size: got "
                               f"{input.size(-1)} expected {self.input_size}")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        B = x.size(0)
        lstm = self._kind == "lstm"
        if hx is None:
            z = x.new_zeros(B, self.hidden_size)
            parts = (z, z) if lstm else (z,)
        else:
            if lstm:
                if not (isinstance(hx, (tuple, list)) and len(hx) == 2
                        and all(isinstance(t, torch.Tensor) for t in hx)):
                    raise TypeError(f"fusedrnn.{name}: hx must be a tuple (h, c) of two tensors")
                parts = tuple(hx)
            else:
                if not isinstance(hx, torch.Tensor):
                    raise TypeError(f"fusedrnn.{name}: hx must be a tensor")
                parts = (hx,)
            for p in parts:
                if p.dim() != input.dim():
                    raise RuntimeError(f"{name}: Expected hidden to be {input.dim()}D for "
                                       f"{input.dim()}D input, got {p.dim()}D instead")
            if not batched:
                parts = tuple(p.unsqueeze(0) for p in parts)
            for p in parts:
                if tuple(p.shape) != (B, self.hidden_size):
                    raise RuntimeError(f"{name}: Expected hidden size {(B, self.hidden_size)}, "
                                       f"got {tuple(p.shape)}")
        w = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh) if self.bias else \
            (self.weight_ih, self.weight_hh, None, None)
        return x.unsqueeze(0), parts, w, batched

    def forward(self, input, hx=None):
        x, parts, w, batched = self._prepare(input, hx)
        if self._kind == "lstm":
            _, h, c = F.lstm_layer(x, parts[0], parts[1], *w)
            return (h, c) if batched else (h.squeeze(0), c.squeeze(0))
        if self._kind == "gru":
            _, h = F.gru_layer(x, parts[0], *w)
        else:
            _, h = F.rnn_layer(x, parts[0], *w, nonlinearity=self.nonlinearity)
        return h if batched else h.squeeze(0)


class LSTMCell(_FusedCellBase, nn.LSTMCell):
    """torch.nn.LSTMCell computed by fusedrnn's fused op."""

    _kind = "lstm"


class GRUCell(_FusedCellBase, nn.GRUCell):
    """torch.nn.GRUCell computed by fusedrnn's fused op."""

    _kind = "gru"


class RNNCell(_FusedCellBase, nn.RNNCell):
    """torch.nn.RNNCell (tanh or relu) computed by fusedrnn's fused op."""

    _kind = "rnn"
