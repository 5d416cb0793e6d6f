"""Drop-in replacements for torch.nn.LSTM, torch.nn.GRU and torch.nn.RNN.

Each class derives from torch.nn.RNNBase, as torch.nn's own classes do, so parameter creation,
names, shapes, initialisation, state_dict keys and repr are torch.nn's; the constructors take
torch.nn's arguments in torch.nn's order. forward runs fusedrnn's fused layer ops
(fusedrnn.functional), one op per layer and direction, on the backend of fusedrnn.backend().

They are deliberately not subclasses of torch.nn.LSTM/GRU/RNN: torch.compile refuses to trace
any instance of those classes, and compiling without graph breaks is one of the points of
fusedrnn. So isinstance(fusedrnn.LSTM(...), torch.nn.LSTM) is False (it is an nn.RNNBase).
"""
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from fusedrnn import functional as F

__all__ = ["LSTM", "GRU", "RNN"]


class _FusedRNNBase:
    """forward() shared by the three modules; the subclass names its cell kind."""

    _kind = None  # "lstm", "gru", "rnn", "mut" (fusedrnn/mut.py), "ln_lstm"/"ln_gru" (layer_norm.py)

    def flatten_parameters(self):
        """A no-op: fusedrnn reads the parameters as they are (no cuDNN flat buffer)."""

    def _layer_weights(self, layer, direction):
        """(w_ih, w_hh, b_ih, b_hh, w_hr) of one layer and direction; absent ones are None.
        Looked up by name on every call (weight-drop wrappers replace them between calls)."""
        return own_attrs(self, _weight_names(layer, direction, self.bias,
                                             getattr(self, "proj_size", 0) > 0))

    def _one_layer_forward(self, input, hx):
        """The common call, a decoder's or a stream's step included: one unidirectional layer
        of torch.nn's cells (no projection) on a valid batched tensor and valid states, outside
        autocast. The same op call as the general path below without its bookkeeping, which took
        ~10 of a single step's 30-40 µs (2-core Xeon, B=1 H=512). Returns None for anything
        else, invalid input included, which the general path then handles (and rejects)."""
        kind = self._kind
        if (self.num_layers != 1 or self.bidirectional or kind not in _ONE_LAYER_KINDS
                or not isinstance(input, torch.Tensor) or input.dim() != 3
                or input.size(-1) != self.input_size
                or (kind == "lstm" and self.proj_size != 0)):
            return None
        w_ih, w_hh, b_ih, b_hh, _ = self._layer_weights(0, 0)
        if input.dtype != w_ih.dtype or torch._C._is_any_autocast_enabled():  # as torch.nn's
            return None
        T, B = (input.size(1), input.size(0)) if self.batch_first else input.shape[:2]
        if T == 0:
            return None
        shape = (1, B, self.hidden_size)
        lstm = kind == "lstm"
        if hx is None:
            h0 = input.new_zeros(shape)
            hx = (h0, input.new_zeros(shape)) if lstm else h0
        parts = hx if lstm else (hx,)
        if lstm and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            return None
        for t in parts:
            if not isinstance(t, torch.Tensor) or t.shape != shape:
                return None
        x = input.transpose(0, 1) if self.batch_first else input
        if lstm:
            y, h, c = F.lstm_layer(x, parts[0][0], parts[1][0], w_ih, w_hh, b_ih, b_hh)
            state = (h.unsqueeze(0), c.unsqueeze(0))
        elif kind == "gru":
            y, h = F.gru_layer(x, parts[0][0], w_ih, w_hh, b_ih, b_hh,
                               reset_after=self.reset_after)
            state = h.unsqueeze(0)
        else:
            y, h = F.rnn_layer(x, parts[0][0], w_ih, w_hh, b_ih, b_hh,
                               nonlinearity=self.nonlinearity)
            state = h.unsqueeze(0)
        return (y.transpose(0, 1) if self.batch_first else y), state

    def _check_hx(self, hx):
        name = type(self).__name__
        if self._kind in _WITH_CELL:
            ok = (isinstance(hx, (tuple, list)) and len(hx) == 2
                  and all(isinstance(t, torch.Tensor) for t in hx))
            if not ok:
                raise TypeError(f"fusedrnn.{name}: hx must be a tuple (h_0, c_0) of two tensors, "
                                f"got {_describe(hx)}")
        elif not isinstance(hx, torch.Tensor):
            raise TypeError(f"fusedrnn.{name}: hx must be a tensor h_0, got {_describe(hx)}")

    def forward(self, input, hx=None):
        if torch.onnx.is_in_onnx_export():
            # ONNX has standard LSTM/GRU/RNN operators and torch.nn's forward is what the
            # exporter translates into them; the state is torch.nn's, so its forward runs as is.
            if self._kind in ("mut", "ln_lstm", "ln_gru"):
                raise NotImplementedError(f"fusedrnn.{type(self).__name__}: ONNX export is not "
                                          "supported (ONNX has no operator for this cell)")
            if not getattr(self, "reset_after", True):  # GRU only
                raise NotImplementedError(
                    "fusedrnn.GRU(reset_after=False): ONNX export is not supported (the export "
                    "writes torch.nn.GRU's cell, which applies the reset gate after the product)")
            return _TORCH_NN[self._kind].forward(self, input, hx)
        out = self._one_layer_forward(input, hx)
        if out is not None:
            return out
        name = type(self).__name__
        lstm = self._kind in _WITH_CELL  # the state is (h, c)
        D = 2 if self.bidirectional else 1
        packed = isinstance(input, PackedSequence)
        if packed:
            # Packed data [N, I], sequences sorted by decreasing length: computed natively, each
            # sequence stopping at its own length (no padding is computed).
            x, batch_sizes, sorted_indices, unsorted_indices = input
            B = int(batch_sizes[0])
            is_batched = True
        else:
            if not isinstance(input, torch.Tensor):
                raise TypeError(f"fusedrnn.{name}: input must be a tensor or PackedSequence, "
                                f"got {_describe(input)}")
            if input.dim() not in (2, 3):
                raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D "
                                 "instead")
            batch_sizes = sorted_indices = unsorted_indices = None
            is_batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            x = input if is_batched else input.unsqueeze(batch_dim)
            B = x.size(batch_dim)
        if hx is None:
            zeros = x.new_zeros(self.num_layers * D, B, self.hidden_size)
            h_size = self.proj_size if lstm and self.proj_size > 0 else self.hidden_size
            hx = (x.new_zeros(self.num_layers * D, B, h_size), zeros) if lstm else zeros
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
            if sorted_indices is not None:  # the user's batch order -> the packed (sorted) order
                parts = tuple(p.index_select(1, sorted_indices) for p in parts)
            hx = parts if lstm else parts[0]
        # torch.nn's own checks: input dtype and size, hidden-state shapes (same messages).
        self.check_forward_args(x, hx, batch_sizes)
        if not packed and x.size(1 if self.batch_first else 0) == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")  # torch.nn's

        dtype = _autocast_dtype(self._kind, x)  # None: no cast (mismatches then raise)
        if not packed and self.batch_first:
            x = x.transpose(0, 1)
        cast = (lambda t: t.to(dtype)) if dtype is not None else (lambda t: t)
        x = cast(x)
        h0, c0 = (cast(hx[0]), cast(hx[1])) if lstm else (cast(hx), None)
        h_n, c_n = [], []
        # Bidirectional LSTM / GRU (torch.nn's cell, no projection): both directions of a layer
        # in one op where F.bidirectional_forward takes it (one persistent launch a pass on the
        # CUDA kernels; side by side on two threads on the CPU for small layers).
        both = (D == 2 and self._kind in ("lstm", "gru") and getattr(self, "reset_after", True)
                and getattr(self, "proj_size", 0) == 0)
        # Unidirectional stacks of them in inference: the layers in one op (persistent
        # wavefronts of up to 4 layers on the CUDA kernels), when no dropout runs between them.
        stack = None
        if (D == 1 and self.num_layers > 1 and self._kind in ("lstm", "gru")
                and getattr(self, "reset_after", True) and getattr(self, "proj_size", 0) == 0
                and not (self.dropout and self.training)):
            w = [tuple(cast(t) if t is not None else None
                       for t in self._layer_weights(layer, 0)[:4])
                 for layer in range(self.num_layers)]
            stack = F.stacked_forward(self._kind, x, h0, c0 if lstm else None, w, batch_sizes)
        if stack is not None:
            x, h, c = stack
            h_n = list(h.unbind(0))
            c_n = list(c.unbind(0)) if lstm else []
        for layer in range(self.num_layers if stack is None else 0):
            out = None
            if both:
                w = [tuple(cast(t) if t is not None else None
                           for t in self._layer_weights(layer, d)[:4]) for d in range(2)]
                k = 2 * layer
                out = F.bidirectional_forward(self._kind, x, h0[k:k + 2],
                                              c0[k:k + 2] if lstm else None, w[0], w[1],
                                              batch_sizes)
            if out is not None:
                x, h, c = out
                h_n += [h[0], h[1]]
                if lstm:
                    c_n += [c[0], c[1]]
                if self.dropout and self.training and layer + 1 < self.num_layers:
                    x = torch.nn.functional.dropout(x, self.dropout, training=True)
                continue
            ys = []
            for d in range(D):
                k = layer * D + d
                *w, w_hr = tuple(cast(t) if t is not None else None
                                 for t in self._layer_weights(layer, d))
                kw = dict(reverse=d == 1, batch_sizes=batch_sizes)
                if self._kind == "lstm":
                    y, h, c = F.lstm_layer(x, h0[k], c0[k], *w, w_hr=w_hr, **kw)
                    c_n.append(c)
                elif self._kind == "ln_lstm":  # (w_ih, w_hh, g_ih, g_hh, g_c, bias, b_c)
                    y, h, c = F.layer_norm_lstm_layer(x, h0[k], c0[k], *w, **kw)
                    c_n.append(c)
                elif self._kind == "gru":
                    y, h = F.gru_layer(x, h0[k], *w, reset_after=self.reset_after,
                                       **kw)
                elif self._kind == "ln_gru":  # (w_ih, w_hh, g_ih, g_hh, b_ih, b_hh)
                    y, h = F.layer_norm_gru_layer(x, h0[k], *w, **kw)
                elif self._kind == "rnn":
                    y, h = F.rnn_layer(x, h0[k], *w, nonlinearity=self.nonlinearity, **kw)
                else:  # MUT1-3: (w_ih, w_hh, bias)
                    y, h = F.mut_layer(x, h0[k], *w[:3], variant=self.variant, **kw)
                ys.append(y)
                h_n.append(h)
            x = ys[0] if D == 1 else torch.cat(ys, dim=-1)
            if self.dropout and self.training and layer + 1 < self.num_layers:
                x = torch.nn.functional.dropout(x, self.dropout, training=True)

        # One layer and direction: a view instead of a copy (torch.nn's h_n is not a view either
        # way in autograd's sense: it is an output of the layer's Function or op).
        h_n = h_n[0].unsqueeze(0) if len(h_n) == 1 else torch.stack(h_n)
        c_n = (c_n[0].unsqueeze(0) if len(c_n) == 1 else torch.stack(c_n)) if lstm else None
        if packed:
            output = PackedSequence(x, batch_sizes, sorted_indices, unsorted_indices)
            if unsorted_indices is not None:
                h_n = h_n.index_select(1, unsorted_indices)
                c_n = c_n.index_select(1, unsorted_indices) if lstm else None
        else:
            output = x.transpose(0, 1) if self.batch_first else x
            if not is_batched:
                output = output.squeeze(batch_dim)
                h_n = h_n.squeeze(1)
                c_n = c_n.squeeze(1) if lstm else None
        return (output, (h_n, c_n)) if lstm else (output, h_n)


_WITH_CELL = ("lstm", "ln_lstm")  # kinds whose state is (h, c)
_ONE_LAYER_KINDS = ("lstm", "gru", "rnn")  # torch.nn's cells: _one_layer_forward takes them


class _OwnParamsRNNBase(_FusedRNNBase, nn.Module):
    """The cells torch.nn does not have (fusedrnn/mut.py, layer_norm.py): torch.nn.RNNBase's
    constructor arguments, checks and repr, parameters created by the subclass."""

    proj_size = 0

    def _set_args(self, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                  bidirectional):
        name = type(self).__name__
        if num_layers < 1 or int(num_layers) != num_layers:
            raise ValueError(f"{name}: num_layers must be a positive integer, got {num_layers}")
        if not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = int(num_layers), bool(bias), batch_first
        self.dropout, self.bidirectional = float(dropout), bool(bidirectional)

    def check_forward_args(self, input, hidden, batch_sizes):
        """torch.nn's checks (messages alike): input dims, size and dtype, the states' shapes."""
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
        states = (("hidden", hidden[0]), ("cell", hidden[1])) if self._kind in _WITH_CELL else \
            (("hidden", hidden),)
        for what, t in states:
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


def own_attrs(module, names):
    """The attributes `names` of module (None for a name that is None): parameters straight from
    its _parameters (getattr goes through nn.Module.__getattr__, ~1 µs a lookup, a measurable
    part of a single step), anything else (a weight-drop wrapper's plain tensor) by getattr."""
    params = module._parameters
    return tuple(None if n is None else params[n] if n in params else getattr(module, n)
                 for n in names)


_WEIGHT_NAMES = {}


def _weight_names(layer, direction, bias, proj):
    """The attribute names of (w_ih, w_hh, b_ih, b_hh, w_hr), None for absent ones (cached:
    formatting them was a measurable part of a single step's time)."""
    key = (layer, direction, bool(bias), proj)
    names = _WEIGHT_NAMES.get(key)
    if names is None:
        sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        names = (f"weight_ih{sfx}", f"weight_hh{sfx}",
                 f"bias_ih{sfx}" if bias else None, f"bias_hh{sfx}" if bias else None,
                 f"weight_hr{sfx}" if proj else None)
        _WEIGHT_NAMES[key] = names
    return names


# Under autocast, torch.nn runs these layers in the autocast dtype (the "lower precision" list of
# that device type); the others keep the input's dtype. Measured on torch 2.14: on CPU, LSTM and
# RNN are cast and GRU is not; on CUDA (cuDNN) all three are cast.
_AUTOCAST_LOWERED = {"cpu": ("lstm", "rnn"), "cuda": ("lstm", "gru", "rnn")}


def _autocast_dtype(kind, input):
    """The dtype autocast runs this layer in, or None outside autocast."""
    dev = input.device.type
    if dev in _AUTOCAST_LOWERED and torch.is_autocast_enabled(dev):
        if kind in _AUTOCAST_LOWERED[dev]:
            return torch.get_autocast_dtype(dev)
        return input.dtype
    return None


def _reject_proj_size(kwargs):
    # torch.nn.GRU/RNN take **kwargs and refuse proj_size with this ValueError (any value); other
    # unknown keywords reach RNNBase.__init__, which raises Python's TypeError as torch.nn does.
    if "proj_size" in kwargs:
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")


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
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device=device, dtype=dtype)


class GRU(_FusedRNNBase, nn.RNNBase):
    """torch.nn.GRU computed by fusedrnn's fused kernels. Same arguments as torch.nn.GRU, and
    reset_after: True (default) is torch.nn.GRU's cell, n = tanh(W_in x + b_in + r * (W_hn h +
    b_hn)); False is Cho et al.'s original GRU (2014), the reset gate applied before the
    recurrent product, n = tanh(W_in x + b_in + W_hn (r * h) + b_hn), with the same parameters
    (names, shapes, initialisation, state_dict). reset_after=False is not exported to ONNX."""

    _kind = "gru"
    # The class default is torch.nn's cell: a torch.nn.GRU converted in place (fusedrnn.convert
    # changes its class) has no instance attribute and computes, prints and saves as before.
    reset_after = True

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, reset_after=True,
                 **kwargs):
        _reject_proj_size(kwargs)
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype, **kwargs)
        self.reset_after = bool(reset_after)

    def extra_repr(self):
        s = super().extra_repr()
        return s if self.reset_after else s + ", reset_after=False"


class RNN(_FusedRNNBase, nn.RNNBase):
    """torch.nn.RNN (tanh or relu) computed by fusedrnn's fused kernels. Same arguments."""

    _kind = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None,
                 **kwargs):
        _reject_proj_size(kwargs)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype, **kwargs)


_TORCH_NN = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
