"""The equations of the cells in plain PyTorch, one time step at a time: the tests' oracle.

Same signatures and conventions as fusedrnn.functional (gate order of torch.nn: LSTM i,f,g,o;
GRU r,z,n with the reset gate applied after the recurrent matmul, or before it with
reset_after=False). Also the three MUT cells of Jozefowicz et al. 2015 (mut_cell, mut_layer;
variant 1, 2 or 3; gate order r, z, n) and the layer-normalised LSTM and GRU of Ba et al. 2016
(layer_norm_lstm_cell/_layer, layer_norm_gru_cell/_layer). Differentiable through ordinary autograd. Deliberately simple: no fusion, no tricks.
"""
import torch

__all__ = ["lstm_cell", "gru_cell", "rnn_cell", "mut_cell", "layer_norm_lstm_cell",
           "layer_norm_gru_cell", "lstm_layer", "gru_layer", "rnn_layer", "mut_layer",
           "layer_norm_lstm_layer", "layer_norm_gru_layer"]


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


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, reset_after=True):
    """One GRU step: x [B,I], h [B,H] -> h'.

    reset_after=True (torch.nn.GRU): n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
    reset_after=False (Cho et al. 2014, the reset gate before the product):
    n = tanh(W_in x + b_in + W_hn (r * h) + b_hn). Same parameters either way."""
    xr, xz, xn = _linear(x, w_ih, b_ih).chunk(3, dim=-1)
    if reset_after:
        hr, hz, hn = _linear(h, w_hh, b_hh).chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
    else:
        w_hr, w_hz, w_hn = w_hh.chunk(3, dim=0)
        b_hr, b_hz, b_hn = b_hh.chunk(3) if b_hh is not None else (None, None, None)
        r = torch.sigmoid(xr + _linear(h, w_hr, b_hr))
        z = torch.sigmoid(xz + _linear(h, w_hz, b_hz))
        n = torch.tanh(xn + _linear(r * h, w_hn, b_hn))
    return (1 - z) * n + z * h


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """One Elman step: x [B,I], h [B,H] -> h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)."""
    a = _linear(x, w_ih, b_ih) + _linear(h, w_hh, b_hh)
    if nonlinearity == "tanh":
        return torch.tanh(a)
    if nonlinearity == "relu":
        return torch.relu(a)
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def _check_variant(variant):
    if variant not in (1, 2, 3) or isinstance(variant, bool):
        raise ValueError(f"unknown MUT variant {variant!r} (1, 2 or 3)")


def mut_cell(x, h, w_ih, w_hh, bias=None, variant=1):
    """One MUT step (Jozefowicz et al. 2015): x [B,I], h [B,H] -> h'. sigma = sigmoid.

    MUT1: z = sigma(W_xz x + b_z); r = sigma(W_xr x + W_hr h + b_r);
          w_ih [2H,I] = (W_xr, W_xz), w_hh [2H,H] = (W_hr, W_hh); I == H.
          h' = tanh(W_hh (r * h) + tanh(x) + b_h) * z + h * (1 - z)
    MUT2: z = sigma(W_xz x + W_hz h + b_z); r = sigma(x + W_hr h + b_r);
          w_ih [2H,I] = (W_xz, W_xh), w_hh [3H,H] = (W_hr, W_hz, W_hh); I == H.
          h' = tanh(W_hh (r * h) + W_xh x + b_h) * z + h * (1 - z)
    MUT3: z = sigma(W_xz x + W_hz tanh(h) + b_z); r = sigma(W_xr x + W_hr h + b_r);
          w_ih [3H,I] = (W_xr, W_xz, W_xh), w_hh [3H,H] = (W_hr, W_hz, W_hh).
          h' = tanh(W_hh (r * h) + W_xh x + b_h) * z + h * (1 - z)
    bias [3H] = (b_r, b_z, b_h), or None for no bias."""
    _check_variant(variant)
    b_r, b_z, b_h = bias.chunk(3) if bias is not None else (None, None, None)
    if variant == 1:
        W_xr, W_xz = w_ih.chunk(2, dim=0)
        W_hr, W_hh = w_hh.chunk(2, dim=0)
        z = torch.sigmoid(_linear(x, W_xz, b_z))
        r = torch.sigmoid(_linear(x, W_xr, b_r) + h @ W_hr.t())
        n = torch.tanh(_linear(r * h, W_hh, b_h) + torch.tanh(x))
    elif variant == 2:
        W_xz, W_xh = w_ih.chunk(2, dim=0)
        W_hr, W_hz, W_hh = w_hh.chunk(3, dim=0)
        z = torch.sigmoid(_linear(x, W_xz, b_z) + h @ W_hz.t())
        r = torch.sigmoid(_linear(h, W_hr, b_r) + x)
        n = torch.tanh(_linear(r * h, W_hh, b_h) + x @ W_xh.t())
    else:
        W_xr, W_xz, W_xh = w_ih.chunk(3, dim=0)
        W_hr, W_hz, W_hh = w_hh.chunk(3, dim=0)
        z = torch.sigmoid(_linear(x, W_xz, b_z) + torch.tanh(h) @ W_hz.t())
        r = torch.sigmoid(_linear(x, W_xr, b_r) + h @ W_hr.t())
        n = torch.tanh(_linear(r * h, W_hh, b_h) + x @ W_xh.t())
    return n * z + h * (1 - z)


def _layer_norm(v, gain, bias=None, eps=1e-5):
    """(v - mean) / sqrt(var + eps) over the last dimension (biased variance), times gain, plus
    bias: torch.nn.LayerNorm's definition, written out."""
    mean = v.mean(dim=-1, keepdim=True)
    var = ((v - mean) ** 2).mean(dim=-1, keepdim=True)
    out = (v - mean) / torch.sqrt(var + eps) * gain
    return out if bias is None else out + bias


def layer_norm_lstm_cell(x, h, c, w_ih, w_hh, g_ih, g_hh, g_c, bias=None, b_c=None):
    """One step of the layer-normalised LSTM (Ba, Kiros and Hinton 2016): x [B,I], h, c [B,H]
    -> (h', c'). Gate order i, f, g, o; LN over each product's 4H pre-activations and over the
    H cells:
    a = g_ih * LN(x W_ih^T) + g_hh * LN(h W_hh^T) + bias,
    c' = sigmoid(a_f) * c + sigmoid(a_i) * tanh(a_g), h' = sigmoid(a_o) * tanh(g_c * LN(c') + b_c)."""
    a = _layer_norm(x @ w_ih.t(), g_ih) + _layer_norm(h @ w_hh.t(), g_hh)
    if bias is not None:
        a = a + bias
    ai, af, ag, ao = a.chunk(4, dim=-1)
    c_new = torch.sigmoid(af) * c + torch.sigmoid(ai) * torch.tanh(ag)
    h_new = torch.sigmoid(ao) * torch.tanh(_layer_norm(c_new, g_c, b_c))
    return h_new, c_new


def layer_norm_gru_cell(x, h, w_ih, w_hh, g_ih, g_hh, b_ih=None, b_hh=None):
    """One step of the layer-normalised GRU: x [B,I], h [B,H] -> h'. torch.nn.GRU's cell with
    each product layer-normalised over its 3H pre-activations:
    xx = g_ih * LN(x W_ih^T) + b_ih, hh = g_hh * LN(h W_hh^T) + b_hh,
    r = sigmoid(xx_r + hh_r), z = sigmoid(xx_z + hh_z), n = tanh(xx_n + r * hh_n),
    h' = (1 - z) * n + z * h."""
    xr, xz, xn = _layer_norm(x @ w_ih.t(), g_ih, b_ih).chunk(3, dim=-1)
    hr, hz, hn = _layer_norm(h @ w_hh.t(), g_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h


def _steps(T, reverse):
    return range(T - 1, -1, -1) if reverse else range(T)


def _scan(cell, x, states, reverse, batch_sizes, features):
    """Runs cell(x_t, *states) -> new states over the sequence; the first state is the output.

    Dense x [T,B,I]: every step updates all B rows. Packed x [N,I] (batch_sizes given): step t
    holds the next batch_sizes[t] rows of x, and they update the first batch_sizes[t] rows of
    the state (the live sequences are a prefix of the batch); the other rows keep their state.
    So each sequence stops after its own last step, and with reverse=True it starts at its own
    end from its h0 row (rows beyond the live prefix still hold h0 there)."""
    if batch_sizes is None:
        xs = list(x.unbind(0))
    else:
        xs = list(x.split(batch_sizes.tolist()))
    ys = [None] * len(xs)
    for t in _steps(len(xs), reverse):
        n = xs[t].shape[0]
        new = cell(xs[t], *(s[:n] for s in states))
        states = tuple(a if n == s.shape[0] else torch.cat([a, s[n:]])
                       for a, s in zip(new, states))
        ys[t] = new[0]
    if not ys:  # T = 0 (dense only: packed input has at least one step)
        return (x.new_empty(0, x.shape[1], features),) + states
    y = torch.stack(ys) if batch_sizes is None else torch.cat(ys)
    return (y,) + states


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False, batch_sizes=None,
               w_hr=None):
    """x [T,B,I] (or packed [N,I] with batch_sizes) -> (y [T,B,P] in time order, h_n, c_n)."""
    def cell(xt, h, c):
        return lstm_cell(xt, h, c, w_ih, w_hh, b_ih, b_hh, w_hr)
    return _scan(cell, x, (h0, c0), reverse, batch_sizes, w_hh.shape[1])


def gru_layer(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False, batch_sizes=None,
              reset_after=True):
    """x [T,B,I] (or packed [N,I] with batch_sizes) -> (y [T,B,H] in time order, h_n)."""
    def cell(xt, h):
        return (gru_cell(xt, h, w_ih, w_hh, b_ih, b_hh, reset_after),)
    return _scan(cell, x, (h0,), reverse, batch_sizes, w_hh.shape[1])


def rnn_layer(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", reverse=False,
              batch_sizes=None):
    """x [T,B,I] (or packed [N,I] with batch_sizes) -> (y [T,B,H] in time order, h_n)."""
    def cell(xt, h):
        return (rnn_cell(xt, h, w_ih, w_hh, b_ih, b_hh, nonlinearity),)
    return _scan(cell, x, (h0,), reverse, batch_sizes, w_hh.shape[1])


def mut_layer(x, h0, w_ih, w_hh, bias=None, variant=1, reverse=False, batch_sizes=None):
    """x [T,B,I] (or packed [N,I] with batch_sizes) -> (y [T,B,H] in time order, h_n)."""
    _check_variant(variant)

    def cell(xt, h):
        return (mut_cell(xt, h, w_ih, w_hh, bias, variant),)
    return _scan(cell, x, (h0,), reverse, batch_sizes, w_hh.shape[1])


def layer_norm_lstm_layer(x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, bias=None, b_c=None,
                          reverse=False, batch_sizes=None):
    """x [T,B,I] (or packed [N,I] with batch_sizes) -> (y [T,B,H] in time order, h_n, c_n)."""
    def cell(xt, h, c):
        return layer_norm_lstm_cell(xt, h, c, w_ih, w_hh, g_ih, g_hh, g_c, bias, b_c)
    return _scan(cell, x, (h0, c0), reverse, batch_sizes, w_hh.shape[1])


def layer_norm_gru_layer(x, h0, w_ih, w_hh, g_ih, g_hh, b_ih=None, b_hh=None, reverse=False,
                         batch_sizes=None):
    """x [T,B,I] (or packed [N,I] with batch_sizes) -> (y [T,B,H] in time order, h_n)."""
    def cell(xt, h):
        return (layer_norm_gru_cell(xt, h, w_ih, w_hh, g_ih, g_hh, b_ih, b_hh),)
    return _scan(cell, x, (h0,), reverse, batch_sizes, w_hh.shape[1])
