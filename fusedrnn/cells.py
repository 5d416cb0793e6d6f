"""Drop-in replacements for torch.nn.LSTMCell, torch.nn.GRUCell and torch.nn.RNNCell.

Subclasses of their torch.nn counterparts (same constructor, parameters, state_dict, repr); one
step is the fused layer op over a sequence of length 1.
"""
import torch
from torch import nn

from fusedrnn import functional as F
from fusedrnn.modules import own_attrs

__all__ = ["LSTMCell", "GRUCell", "RNNCell"]


_CELL_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_CELL_WEIGHTS_NO_BIAS = ("weight_ih", "weight_hh", None, None)


class _FusedCellBase:
    _kind = None

    def _prepare(self, input, hx):
        # torch.nn's checks in torch.nn's order, with its exception types and messages (those of
        # the cells' Python forward, then of ATen's check_rnn_cell_forward_*). Stricter only in
        # the types hx may have (TypeError where torch.nn fails further down, or not at all).
        name = type(self).__name__
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"fusedrnn.{name}: input must be a tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        lstm = self._kind in ("lstm", "ln_lstm")  # the state is (h, c)
        if hx is not None:
            if lstm:
                if not (isinstance(hx, (tuple, list)) and len(hx) == 2
                        and isinstance(hx[0], torch.Tensor) and isinstance(hx[1], torch.Tensor)):
                    raise TypeError(f"fusedrnn.{name}: hx must be a tuple (h, c) of two tensors")
            elif not isinstance(hx, torch.Tensor):
                raise TypeError(f"fusedrnn.{name}: hx must be a tensor")
            for idx, p in enumerate(hx if lstm else (hx,)):
                if p.dim() not in (1, 2):
                    what = f"hx[{idx}]" if lstm else "hidden"
                    raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {p.dim()}D "
                                     "instead")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        B = x.size(0)
        if x.size(1) != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {x.size(1)} expected "
                               f"{self.input_size}")
        if hx is None:
            z = x.new_zeros(B, self.hidden_size)
            parts = (z, z) if lstm else (z,)
        else:
            parts = tuple(hx) if lstm else (hx,)
            if not batched:  # as torch.nn, so a 2-D hidden state fails its size check below
                parts = tuple(p.unsqueeze(0) for p in parts)
            want = (B, self.hidden_size)
            for k, p in enumerate(parts):
                if p.size(0) != B:
                    # torch.nn's message, then the shapes (tests look for "hidden size").
                    raise RuntimeError(f"Input batch size {B} doesn't match hidden{k} batch "
                                       f"size {p.size(0)} (expected hidden size {want}, got "
                                       f"{tuple(p.shape)})")
                if p.dim() > 1 and p.size(1) != self.hidden_size:
                    raise RuntimeError(f"hidden{k} has inconsistent hidden_size: got "
                                       f"{p.size(1)}, expected {self.hidden_size}")
                if p.dim() != 2:
                    raise RuntimeError(f"{name}: Expected hidden size {want}, got "
                                       f"{tuple(p.shape)}")
        return x.unsqueeze(0), parts, self._weights(), batched

    def _weights(self):
        return own_attrs(self, _CELL_WEIGHTS if self.bias else _CELL_WEIGHTS_NO_BIAS)

    def forward(self, input, hx=None):
        if torch.onnx.is_in_onnx_export():  # torch.nn's ops, which ONNX exporters translate
            if self._kind in ("mut", "ln_lstm", "ln_gru"):
                raise NotImplementedError(f"fusedrnn.{type(self).__name__}: ONNX export is not "
                                          "supported (ONNX has no operator for this cell)")
            if not getattr(self, "reset_after", True):  # GRUCell only
                raise NotImplementedError(
                    "fusedrnn.GRUCell(reset_after=False): ONNX export is not supported (the "
                    "export writes torch.nn.GRUCell's cell, which applies the reset gate after "
                    "the product)")
            return super().forward(input, hx)
        x, parts, w, batched = self._prepare(input, hx)
        if self._kind in ("lstm", "ln_lstm"):
            layer = F.lstm_layer if self._kind == "lstm" else F.layer_norm_lstm_layer
            _, h, c = layer(x, parts[0], parts[1], *w)
            return (h, c) if batched else (h.squeeze(0), c.squeeze(0))
        if self._kind == "gru":
            _, h = F.gru_layer(x, parts[0], *w, reset_after=self.reset_after)
        elif self._kind == "mut":
            _, h = F.mut_layer(x, parts[0], *w, variant=self.variant)
        elif self._kind == "ln_gru":
            _, h = F.layer_norm_gru_layer(x, parts[0], *w)
        else:
            # save_h_n: torch.nn.RNNCell's backward uses its output (the result of tanh/relu),
            # so modifying h in place raises at backward there; the same here.
            _, h = F._rnn_layer(x, parts[0], *w, self.nonlinearity, False, None, save_h_n=True)
        return h if batched else h.squeeze(0)


class LSTMCell(_FusedCellBase, nn.LSTMCell):
    """torch.nn.LSTMCell computed by fusedrnn's fused op."""

    _kind = "lstm"


class GRUCell(_FusedCellBase, nn.GRUCell):
    """torch.nn.GRUCell computed by fusedrnn's fused op; reset_after as fusedrnn.GRU's (False:
    Cho et al.'s cell, the reset gate before the recurrent product)."""

    _kind = "gru"
    # The class default is torch.nn's cell: a torch.nn.GRU converted in place (fusedrnn.convert
    # changes its class) has no instance attribute and computes, prints and saves as before.
    reset_after = True

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None,
                 reset_after=True):
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        self.reset_after = bool(reset_after)

    def extra_repr(self):
        s = super().extra_repr()
        return s if self.reset_after else s + ", reset_after=False"


class RNNCell(_FusedCellBase, nn.RNNCell):
    """torch.nn.RNNCell (tanh or relu) computed by fusedrnn's fused op."""

    _kind = "rnn"
