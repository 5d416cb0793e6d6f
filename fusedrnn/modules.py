"""Drop-in replacements for torch.nn.LSTM, torch.nn.GRU and torch.nn.RNN.

Each class subclasses its torch.nn counterpart, so the constructor, parameter names, shapes,
initialisation, state_dict keys, repr and isinstance checks are torch.nn's own; only forward
differs: it runs fusedrnn's fused layer ops (fusedrnn.functional), one op per layer and
direction, with the backend chosen by fusedrnn.backend().

Not yet supported (NotImplementedError naming the argument): LSTM proj_size > 0 and
PackedSequence input.
"""
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from fusedrnn import functional as F

__all__ = ["LSTM", "GRU", "RNN"]


class _FusedRNNBase:
    """forward() shared by the three modules; the subclass names its cell kind."""

    _kind = None  # "lstm", "gru" or "rnn"

    def flatten_parameters(self):
        """A no-op: fusedrnn reads the parameters as they are (no cuDNN flat buffer)."""

    def _layer_weights(self, layer, direction):
        sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        w_ih, w_hh = getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx)
        if self.bias:
            return w_ih, w_hh, getattr(self, "bias_ih" + sfx), getattr(self, "bias_hh" + sfx)
        return w_ih, w_hh, None, None

    def _check_hx(self, hx):
        name = type(self).__name__
        if self._kind == "lstm":
            ok = (isinstance(hx, (tuple, list)) and len(hx) == 2
                  and all(isinstance(t, torch.Tensor) for t in hx))
            if not ok:
                raise TypeError(f"fusedrnn.{name}: hx must be a tuple (h_0, c_0) of two tensors, "
                                f"got {_describe(hx)}")
        elif not isinstance(hx, torch.Tensor):
            raise TypeError(f"fusedrnn.{name}: hx must be a tensor h_0, got {_describe(hx)}")

    def forward(self, input, hx=None):
        name = type(self).__name__
        if isinstance(input, PackedSequence):
            raise NotImplementedError(f"fusedrnn.{name}: PackedSequence input is not supported yet")
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"fusedrnn.{name}: input must be a tensor, got {_describe(input)}")
        if input.dim() not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D instead")
        lstm = self._kind == "lstm"
        is_batched = input.dim() == 3
        batch_dim = 0 if self.batch_first else 1
        if not is_batched:
            input = input.unsqueeze(batch_dim)
        B = input.size(batch_dim)
        D = 2 if self.bidirectional else 1
        if hx is None:
            zeros = input.new_zeros(self.num_layers * D, B, self.hidden_size)
            hx = (zeros, zeros) if lstm else zeros
        else:
            self._check_hx(hx)
            parts = tuple(hx) if lstm else (hx,)
            want = 3 if is_batched else 2
            if any(p.dim() != want for p in parts):
                dims = ", ".join(f"{p.dim()}-D" for p in parts)
                kind = "batched 3-D" if is_batched else "unbatched 2-D"
                raise RuntimeError(f"For {kind} input, hx should also be {want}-D but got ({dims})")
            if not is_batched:
                parts = tuple(p.unsqueeze(1) for p in parts)
            hx = parts if lstm else parts[0]
        # torch.nn's own checks: input dtype and size, hidden-state shapes (same messages).
        self.check_forward_args(input, hx, None)

        x = input.transpose(0, 1) if self.batch_first else input
        h0, c0 = hx if lstm else (hx, None)
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            ys = []
            for d in range(D):
                k = layer * D + d
                w = self._layer_weights(layer, d)
                if lstm:
                    y, h, c = F.lstm_layer(x, h0[k], c0[k], *w, reverse=d == 1)
                    c_n.append(c)
                elif self._kind == "gru":
                    y, h = F.gru_layer(x, h0[k], *w, reverse=d == 1)
                else:
                    y, h = F.rnn_layer(x, h0[k], *w, nonlinearity=self.nonlinearity,
                                       reverse=d == 1)
                ys.append(y)
                h_n.append(h)
            x = ys[0] if D == 1 else torch.cat(ys, dim=2)
            if self.dropout and self.training and layer + 1 < self.num_layers:
                x = torch.nn.functional.dropout(x, self.dropout, training=True)

        output = x.transpose(0, 1) if self.batch_first else x
        h_n = torch.stack(h_n)
        c_n = torch.stack(c_n) if lstm else None
        if not is_batched:
            output = output.squeeze(batch_dim)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if lstm else None
        return (output, (h_n, c_n)) if lstm else (output, h_n)


def _describe(obj):
    if isinstance(obj, (tuple, list)):
        return f"{type(obj).__name__} of length {len(obj)}"
    return type(obj).__name__


class LSTM(_FusedRNNBase, nn.LSTM):
    """torch.nn.LSTM computed by fusedrnn's fused kernels. Same arguments as torch.nn.LSTM."""

    _kind = "lstm"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.proj_size > 0:
            raise NotImplementedError("fusedrnn.LSTM: proj_size > 0 is not supported yet")


class GRU(_FusedRNNBase, nn.GRU):
    """torch.nn.GRU computed by fusedrnn's fused kernels. Same arguments as torch.nn.GRU."""

    _kind = "gru"


class RNN(_FusedRNNBase, nn.RNN):
    """torch.nn.RNN (tanh or relu) computed by fusedrnn's fused kernels. Same arguments."""

    _kind = "rnn"
