"""Drop-in replacements for torch.nn.LSTM, torch.nn.GRU and torch.nn.RNN.

Each class derives from torch.nn.RNNBase, as torch.nn's own classes do, so parameter creation,
names, shapes, initialisation, state_dict keys and repr are torch.nn's; the constructors take
torch.nn's arguments in torch.nn's order. forward runs fusedrnn's fused layer ops
(fusedrnn.functional), one op per layer and direction, on the backend of fusedrnn.backend().

They are deliberately not subclasses of torch.nn.LSTM/GRU/RNN: torch.compile refuses to trace
any instance of those classes, and compiling without graph breaks is one of the points of
fusedrnn. So isinstance(fusedrnn.LSTM(...), torch.nn.LSTM) is False (it is an nn.RNNBase).

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

    def _layer_weights(self, layer, direction, dtype):
        sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ())
        w = [getattr(self, n + sfx).to(dtype) for n in names]  # .to: autocast's cast, else no-op
        return tuple(w) if self.bias else (w[0], w[1], None, None)

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

        dtype = _autocast_dtype(self._kind, input)
        x = input.transpose(0, 1) if self.batch_first else input
        x = x.to(dtype)
        h0, c0 = (hx[0].to(dtype), hx[1].to(dtype)) if lstm else (hx.to(dtype), None)
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            ys = []
            for d in range(D):
                k = layer * D + d
                w = self._layer_weights(layer, d, dtype)
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


# Under autocast, torch.nn runs these layers in the autocast dtype (the "lower precision" list of
# that device type); the others keep the input's dtype. Measured on torch 2.14: on CPU, LSTM and
# RNN are cast and GRU is not; on CUDA (cuDNN) all three are cast.
_AUTOCAST_LOWERED = {"cpu": ("lstm", "rnn"), "cuda": ("lstm", "gru", "rnn")}


def _autocast_dtype(kind, input):
    dev = input.device.type
    if dev in _AUTOCAST_LOWERED and torch.is_autocast_enabled(dev):
        if kind in _AUTOCAST_LOWERED[dev]:
            return torch.get_autocast_dtype(dev)
    return input.dtype


def _describe(obj):
    if isinstance(obj, (tuple, list)):
        return f"{type(obj).__name__} of length {len(obj)}"
    return type(obj).__name__


class LSTM(_FusedRNNBase, nn.RNNBase):
    """torch.nn.LSTM computed by fusedrnn's fused kernels. Same arguments as torch.nn.LSTM."""

    _kind = "lstm"
    # torch.nn.LSTM's checks of (h_0, c_0), so errors read the same.
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args
    permute_hidden = nn.LSTM.permute_hidden

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        if proj_size > 0:
            raise NotImplementedError("fusedrnn.LSTM: proj_size > 0 is not supported yet")
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device=device, dtype=dtype)


class GRU(_FusedRNNBase, nn.RNNBase):
    """torch.nn.GRU computed by fusedrnn's fused kernels. Same arguments as torch.nn.GRU."""

    _kind = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)


class RNN(_FusedRNNBase, nn.RNNBase):
    """torch.nn.RNN (tanh or relu) computed by fusedrnn's fused kernels. Same arguments."""

    _kind = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)
