"""Differentiable one-layer, one-direction RNN layers over a whole sequence.

Each function runs the fused forward op and, in backward, the fused backward op, on the backend
selected by `fusedrnn.backend(...)` (and, for LSTM and GRU on the CUDA kernels, the algorithm of
`fusedrnn.algorithm(...)`) at forward time. Shapes (G = 4 LSTM, 3 GRU, 1 RNN):
x [T,B,I]; h0, c0 [B,H]; w_ih [G*H,I]; w_hh [G*H,H]; b_ih, b_hh [G*H] or None (both or neither).
Outputs: y [T,B,H] in time order (also when reverse=True), h_n [B,H] (and c_n [B,H] for LSTM).
MUT1-3 (mut_layer) and the layer-normalised LSTM and GRU (layer_norm_lstm_layer,
layer_norm_gru_layer) have their own parameters: see those functions.
Packed input: pass batch_sizes (PackedSequence.batch_sizes, int64 on the CPU); x is then the
packed data [N,I] and y is [N,H] in the same packed order; B = batch_sizes[0]; each sequence
stops at its own length (and, with reverse=True, starts at its own end).
The same signatures as fusedrnn.reference, which computes the same thing one step at a time.

Higher-order derivatives: an ordinary backward runs the fused backward op. A backward that must
itself be differentiable (torch.autograd.grad(..., create_graph=True): gradient penalties,
Hessian-vector products, MAML) instead recomputes the layer with fusedrnn.reference's plain
PyTorch ops from the saved inputs and differentiates that with autograd, so its gradients carry
a graph and every order of derivative is right (slower than the fused backward).

In-place operations on the outputs (`y += 1`, `y.relu_()`, `h_n.mul_(2)`, on a packed y too)
are allowed, as with torch.nn's native CPU layers (torch.nn's oneDNN fp32 LSTM and cuDNN save
y and raise at backward instead), and the gradients are those of the values the layer computed:
the backward ops need the layer's own y, so the Functions keep an alias of y (no copy) with its
version, and a backward that finds y modified in place first recomputes it with the forward op
(one more forward pass, only then). The outputs are not views (autograd forbids in-place
changes of views created inside a custom Function). Under torch.compile y is saved for backward
as such, so an in-place change of a compiled model's output raises at backward.

Inference: when nothing can call backward (grad mode off, as under torch.no_grad and
torch.inference_mode, or no input requiring grad, as with frozen weights and a plain x), the
LSTM and GRU forward ops run with save=False: they keep none of the gates and cells (GRU: ghn)
that backward would need, and bound the input projection to a chunk of steps, so the forward
allocates y plus a scratch of a few MB instead of (G+1) more per-row tensors.
"""
import torch

from fusedrnn import reference
from fusedrnn._config import get_algorithm, get_backend
from fusedrnn._ops import ops

__all__ = ["lstm_layer", "gru_layer", "rnn_layer", "mut_layer", "layer_norm_lstm_layer",
           "layer_norm_gru_layer", "LSTMFunction", "GRUFunction", "RNNFunction", "MUTFunction",
           "LayerNormLSTMFunction", "LayerNormGRUFunction", "BidirLSTMFunction",
           "BidirGRUFunction"]


def _needs_backward(*tensors):
    """Whether backward can reach the layer: grad mode on (off under no_grad and
    inference_mode) and some input requiring grad. Otherwise the layers call their forward op
    directly, without an autograd Function (a single step spent a good part of its time in the
    Function's context and saved tensors), and the ops save nothing (save=False). Under
    torch.compile both are guarded, so a compiled graph never runs with the wrong choice."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _bias_grads(has_bias, db_ih, db_hh):
    return (db_ih, db_hh) if has_bias else (None, None)


def _keep_output(ctx, y):
    """Remembers y for the backward op. Returns what to put in save_for_backward: None, or y
    itself under torch.compile.

    Not save_for_backward, whose version check would make any in-place change of y an error at
    backward: a detached alias (same storage and version counter, no copy, no grad_fn, so no
    reference cycle) and its current version. Under torch.compile the version cannot be traced
    (dynamo traces the backward too; a branch on it would break the graph), so y is saved there:
    in-place changes inside the compiled graph are functionalized and never reach it, one of
    the compiled model's output outside the graph raises at backward (never silently wrong)."""
    if torch.compiler.is_compiling():
        ctx.y = None
        return y
    if y.is_inference():  # torch.inference_mode: no backward, and no version counter
        ctx.y = None
        return None
    ctx.y = y.detach()
    ctx.y_version = y._version
    return None


def _kept_output(ctx, saved_y):
    """The y of the forward (saved_y: the last of ctx.saved_tensors), or None when it was
    modified in place since (then the caller recomputes it with the forward op)."""
    if ctx.y is None:
        return saved_y
    return ctx.y if ctx.y._version == ctx.y_version else None


def _unview(y):
    # The ops return y as a [T,B,H] view of their [N,H] buffer. Autograd refuses in-place
    # changes of a view that a custom Function returns ("Output 0 of GRUFunction is a view and
    # is being modified inplace"), so the Functions return a detached alias instead: not a view,
    # same storage and version counter, no copy.
    return y.detach()


def _recompute_grads(ctx, inputs, layer, grads):
    """The backward under create_graph=True (grad mode is on inside backward only then).

    inputs: forward argument index -> saved input tensor (or None). The saved inputs carry their
    autograd history, so running layer (fusedrnn.reference on them) under enable_grad and taking
    torch.autograd.grad with create_graph=True gives gradients that are functions of the inputs
    and of grads: their own backward is ordinary autograd, to any order. The fused backward op
    cannot do this (its outputs have no graph), which once_differentiable used to hide by
    silently dropping the second-order terms. Returns one gradient per forward argument."""
    result = [None] * len(ctx.needs_input_grad)
    want = [i for i, t in inputs.items() if t is not None and ctx.needs_input_grad[i]]
    if not want:
        return tuple(result)
    x = inputs[0]
    # Autocast (thread-local, so possibly on here) must not lower the recomputation: the forward
    # ran in the dtype of the saved inputs.
    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        outs = layer()
    # An output that does not depend on anything needing grad (e.g. y of a length-0 sequence)
    # contributes nothing.
    pairs = [(o, g) for o, g in zip(outs, grads) if o.requires_grad and g is not None]
    if not pairs:
        return tuple(result)
    got = torch.autograd.grad([o for o, _ in pairs], [inputs[i] for i in want],
                              [g for _, g in pairs], create_graph=True, allow_unused=True)
    for i, g in zip(want, got):
        result[i] = g
    return tuple(result)


class LSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, backend, batch_sizes, w_hr,
                algorithm, save=True):
        y, h_n, c_n, gates, cells = ops.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse,
                                                     backend, batch_sizes, w_hr, algorithm, save)
        y = _unview(y)
        ctx.algorithm, ctx.saved_gates = algorithm, save
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, gates, cells, w_hr, b_ih, b_hh,
                              _keep_output(ctx, y))
        ctx.has_bias, ctx.reverse, ctx.backend = b_ih is not None, reverse, backend
        ctx.batch_sizes = batch_sizes
        return y, h_n, c_n

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        x, h0, c0, w_ih, w_hh, gates, cells, w_hr, b_ih, b_hh, y = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: see _recompute_grads
            return _recompute_grads(
                ctx, {0: x, 1: h0, 2: c0, 3: w_ih, 4: w_hh, 5: b_ih, 6: b_hh, 10: w_hr},
                lambda: reference.lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, ctx.reverse,
                                             ctx.batch_sizes, w_hr), (dy, dh_n, dc_n))
        y = _kept_output(ctx, y) if ctx.saved_gates else None
        # Modified in place, or a forward that saved nothing (save=False, which _needs_backward
        # only chooses when no backward can come: kept as a safety net): recompute (gates and
        # cells too, for consistency).
        if y is None:
            y, _, _, gates, cells = ops.lstm_forward(
                x, h0, c0, w_ih, w_hh, b_ih, b_hh, ctx.reverse, ctx.backend, ctx.batch_sizes,
                w_hr, ctx.algorithm)
        dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr = ops.lstm_backward(
            dy, dh_n.contiguous(), dc_n.contiguous(), x, h0, c0, w_ih, w_hh, y,
            gates, cells, ctx.reverse, ctx.backend, ctx.batch_sizes, w_hr, ctx.algorithm)
        return (dx, dh0, dc0, dw_ih, dw_hh, *_bias_grads(ctx.has_bias, db, db), None, None, None,
                dw_hr if w_hr is not None else None, None, None)


def _gru_forward(reset_after, x, h0, w_ih, w_hh, b_ih, b_hh, reverse, backend, batch_sizes,
                 algorithm, save=True):
    """The GRU forward op of the cell: gru_forward (torch.nn's, reset after) or gru_rb_forward
    (reset before: no algorithm choice, its fourth output is r * h instead of ghn)."""
    if reset_after:
        return ops.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, backend, batch_sizes,
                               algorithm, save)
    return ops.gru_rb_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, backend, batch_sizes, save)


class GRUFunction(torch.autograd.Function):
    """Both GRU cells: reset_after selects the ops (see _gru_forward); saved is ghn or r * h."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, reverse, backend, batch_sizes, algorithm,
                save=True, reset_after=True):
        y, h_n, gates, saved = _gru_forward(reset_after, x, h0, w_ih, w_hh, b_ih, b_hh, reverse,
                                            backend, batch_sizes, algorithm, save)
        y = _unview(y)
        ctx.algorithm, ctx.saved_gates, ctx.reset_after = algorithm, save, reset_after
        ctx.save_for_backward(x, h0, w_ih, w_hh, gates, saved, b_ih, b_hh, _keep_output(ctx, y))
        ctx.has_bias, ctx.reverse, ctx.backend = b_ih is not None, reverse, backend
        ctx.batch_sizes = batch_sizes
        return y, h_n

    @staticmethod
    def backward(ctx, dy, dh_n):
        x, h0, w_ih, w_hh, gates, saved, b_ih, b_hh, y = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: see _recompute_grads
            return _recompute_grads(
                ctx, {0: x, 1: h0, 2: w_ih, 3: w_hh, 4: b_ih, 5: b_hh},
                lambda: reference.gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, ctx.reverse,
                                            ctx.batch_sizes, ctx.reset_after), (dy, dh_n))
        y = _kept_output(ctx, y) if ctx.saved_gates else None
        if y is None:  # modified in place, or saved nothing (see LSTMFunction): recompute
            y, _, gates, saved = _gru_forward(ctx.reset_after, x, h0, w_ih, w_hh, b_ih, b_hh,
                                              ctx.reverse, ctx.backend, ctx.batch_sizes,
                                              ctx.algorithm)
        args = (dy, dh_n.contiguous(), x, h0, w_ih, w_hh, y, gates, saved, ctx.reverse,
                ctx.backend, ctx.batch_sizes)
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = (
            ops.gru_backward(*args, ctx.algorithm) if ctx.reset_after else
            ops.gru_rb_backward(*args))
        return (dx, dh0, dw_ih, dw_hh, *_bias_grads(ctx.has_bias, db_ih, db_hh), None, None,
                None, None, None, None)


def _mut_step(xp_t, h, w_hh, variant):
    """One MUT step from its input side xp_t [B,3H] (r, z, n; biases included): the recurrent
    part of fusedrnn.reference.mut_cell, for MUTFunction's differentiable backward."""
    H = h.shape[-1]
    xr, xz, xn = xp_t.split(H, dim=-1)
    w_hr, w_hn = w_hh[:H], w_hh[-H:]
    r = torch.sigmoid(xr + h @ w_hr.t())
    if variant == 1:
        z = torch.sigmoid(xz)
    else:
        z = torch.sigmoid(xz + (h if variant == 2 else torch.tanh(h)) @ w_hh[H:2 * H].t())
    n = torch.tanh(xn + (r * h) @ w_hn.t())
    return z * n + (1 - z) * h


class MUTFunction(torch.autograd.Function):
    """The recurrent part of MUT1-3 over the input side xp (see mut_layer); the input side's own
    gradients (x, w_ih, bias) are ordinary autograd."""

    @staticmethod
    def forward(ctx, xp, h0, w_hh, variant, reverse, backend, batch_sizes, save=True):
        y, h_n, gates, rh = ops.mut_forward(xp, h0, w_hh, variant, reverse, backend,
                                            batch_sizes, save)
        y = _unview(y)
        ctx.saved_gates, ctx.variant = save, variant
        ctx.save_for_backward(xp, h0, w_hh, gates, rh, _keep_output(ctx, y))
        ctx.reverse, ctx.backend, ctx.batch_sizes = reverse, backend, batch_sizes
        return y, h_n

    @staticmethod
    def backward(ctx, dy, dh_n):
        xp, h0, w_hh, gates, rh, y = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: see _recompute_grads
            def layer():
                def cell(xt, h):
                    return (_mut_step(xt, h, w_hh, ctx.variant),)
                return reference._scan(cell, xp, (h0,), ctx.reverse, ctx.batch_sizes,
                                       w_hh.shape[1])
            return _recompute_grads(ctx, {0: xp, 1: h0, 2: w_hh}, layer, (dy, dh_n))
        y = _kept_output(ctx, y) if ctx.saved_gates else None
        if y is None:  # modified in place, or saved nothing (see LSTMFunction): recompute
            y, _, gates, rh = ops.mut_forward(xp, h0, w_hh, ctx.variant, ctx.reverse,
                                              ctx.backend, ctx.batch_sizes)
        dxp, dh0, dw_hh = ops.mut_backward(dy, dh_n.contiguous(), h0, w_hh, y, gates, rh,
                                           ctx.variant, ctx.reverse, ctx.backend,
                                           ctx.batch_sizes)
        return dxp, dh0, dw_hh, None, None, None, None, None


_LN_EPS = 1e-5  # torch.nn.LayerNorm's default; the ops use the same (csrc/layer_norm_ops.h)


def _ln_lstm_step(xp_t, h, c, w_hh, g_hh, g_c, b_c):
    """One layer-normalised LSTM step from its input side xp_t [B,4H]: the recurrent part of
    fusedrnn.reference.layer_norm_lstm_cell, for LayerNormLSTMFunction's differentiable
    backward."""
    H = h.shape[-1]
    a = xp_t + torch.nn.functional.layer_norm(h @ w_hh.t(), (4 * H,), g_hh, None, _LN_EPS)
    ai, af, ag, ao = a.chunk(4, dim=-1)
    c_new = torch.sigmoid(af) * c + torch.sigmoid(ai) * torch.tanh(ag)
    h_new = torch.sigmoid(ao) * torch.tanh(
        torch.nn.functional.layer_norm(c_new, (H,), g_c, b_c, _LN_EPS))
    return h_new, c_new


class LayerNormLSTMFunction(torch.autograd.Function):
    """The recurrent part of the layer-normalised LSTM over the input side xp (see
    layer_norm_lstm_layer); the input side's own gradients are ordinary autograd."""

    @staticmethod
    def forward(ctx, xp, h0, c0, w_hh, g_hh, g_c, b_c, reverse, backend, batch_sizes,
                save=True):
        y, h_n, c_n, gates, gh, cells, stats = ops.ln_lstm_forward(
            xp, h0, c0, w_hh, g_hh, g_c, b_c, reverse, backend, batch_sizes, save)
        y = _unview(y)
        ctx.saved_gates = save
        ctx.save_for_backward(xp, h0, c0, w_hh, g_hh, g_c, b_c, gates, gh, cells, stats,
                              _keep_output(ctx, y))
        ctx.reverse, ctx.backend, ctx.batch_sizes = reverse, backend, batch_sizes
        return y, h_n, c_n

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        xp, h0, c0, w_hh, g_hh, g_c, b_c, gates, gh, cells, stats, y = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: see _recompute_grads
            def layer():
                def cell(xt, h, c):
                    return _ln_lstm_step(xt, h, c, w_hh, g_hh, g_c, b_c)
                return reference._scan(cell, xp, (h0, c0), ctx.reverse, ctx.batch_sizes,
                                       w_hh.shape[1])
            return _recompute_grads(ctx, {0: xp, 1: h0, 2: c0, 3: w_hh, 4: g_hh, 5: g_c, 6: b_c},
                                    layer, (dy, dh_n, dc_n))
        y = _kept_output(ctx, y) if ctx.saved_gates else None
        if y is None:  # modified in place, or saved nothing (see LSTMFunction): recompute
            y, _, _, gates, gh, cells, stats = ops.ln_lstm_forward(
                xp, h0, c0, w_hh, g_hh, g_c, b_c, ctx.reverse, ctx.backend, ctx.batch_sizes)
        dxp, dh0, dc0, dw_hh, dg_hh, dg_c, db_c = ops.ln_lstm_backward(
            dy, dh_n.contiguous(), dc_n.contiguous(), h0, c0, w_hh, g_hh, g_c, b_c, y, gates, gh,
            cells, stats, ctx.reverse, ctx.backend, ctx.batch_sizes)
        return (dxp, dh0, dc0, dw_hh, dg_hh, dg_c, db_c if b_c is not None else None, None, None,
                None, None)


def _ln_gru_step(xp_t, h, w_hh, g_hh, b_hh):
    """One layer-normalised GRU step from its input side xp_t [B,3H]: the recurrent part of
    fusedrnn.reference.layer_norm_gru_cell, for LayerNormGRUFunction's differentiable
    backward."""
    H = h.shape[-1]
    hh = torch.nn.functional.layer_norm(h @ w_hh.t(), (3 * H,), g_hh, b_hh, _LN_EPS)
    xr, xz, xn = xp_t.chunk(3, dim=-1)
    hr, hz, hn = hh.chunk(3, dim=-1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,)


class LayerNormGRUFunction(torch.autograd.Function):
    """The recurrent part of the layer-normalised GRU over the input side xp (see
    layer_norm_gru_layer); the input side's own gradients are ordinary autograd."""

    @staticmethod
    def forward(ctx, xp, h0, w_hh, g_hh, b_hh, reverse, backend, batch_sizes, save=True):
        y, h_n, gates, gh, stats = ops.ln_gru_forward(xp, h0, w_hh, g_hh, b_hh, reverse,
                                                      backend, batch_sizes, save)
        y = _unview(y)
        ctx.saved_gates = save
        ctx.save_for_backward(xp, h0, w_hh, g_hh, b_hh, gates, gh, stats, _keep_output(ctx, y))
        ctx.reverse, ctx.backend, ctx.batch_sizes = reverse, backend, batch_sizes
        return y, h_n

    @staticmethod
    def backward(ctx, dy, dh_n):
        xp, h0, w_hh, g_hh, b_hh, gates, gh, stats, y = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: see _recompute_grads
            def layer():
                def cell(xt, h):
                    return _ln_gru_step(xt, h, w_hh, g_hh, b_hh)
                return reference._scan(cell, xp, (h0,), ctx.reverse, ctx.batch_sizes,
                                       w_hh.shape[1])
            return _recompute_grads(ctx, {0: xp, 1: h0, 2: w_hh, 3: g_hh, 4: b_hh}, layer,
                                    (dy, dh_n))
        y = _kept_output(ctx, y) if ctx.saved_gates else None
        if y is None:  # modified in place, or saved nothing (see LSTMFunction): recompute
            y, _, gates, gh, stats = ops.ln_gru_forward(xp, h0, w_hh, g_hh, b_hh, ctx.reverse,
                                                        ctx.backend, ctx.batch_sizes)
        dxp, dh0, dw_hh, dg_hh, db_hh = ops.ln_gru_backward(
            dy, dh_n.contiguous(), h0, w_hh, g_hh, b_hh, y, gates, gh, stats, ctx.reverse,
            ctx.backend, ctx.batch_sizes)
        return (dxp, dh0, dw_hh, dg_hh, db_hh if b_hh is not None else None, None, None, None,
                None)


class RNNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse, backend, batch_sizes,
                save_h_n=False):
        y, h_n = ops.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse, backend,
                                 batch_sizes)
        y = _unview(y)
        # save_h_n (fusedrnn.RNNCell): h_n saved as torch.nn.RNNCell's tanh/relu saves its
        # result, so that an in-place change of the cell's output raises at backward as there.
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, h_n if save_h_n else None,
                              _keep_output(ctx, y))
        ctx.has_bias, ctx.reverse, ctx.backend = b_ih is not None, reverse, backend
        ctx.batch_sizes = batch_sizes
        ctx.nonlinearity = nonlinearity
        return y, h_n

    @staticmethod
    def backward(ctx, dy, dh_n):
        x, h0, w_ih, w_hh, b_ih, b_hh, _, y = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: see _recompute_grads
            return _recompute_grads(
                ctx, {0: x, 1: h0, 2: w_ih, 3: w_hh, 4: b_ih, 5: b_hh},
                lambda: reference.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, ctx.nonlinearity,
                                            ctx.reverse, ctx.batch_sizes), (dy, dh_n))
        y = _kept_output(ctx, y)
        if y is None:  # modified in place: recompute
            y, _ = ops.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, ctx.nonlinearity, ctx.reverse,
                                   ctx.backend, ctx.batch_sizes)
        dx, dh0, dw_ih, dw_hh, db = ops.rnn_backward(
            dy, dh_n.contiguous(), x, h0, w_ih, w_hh, y, ctx.nonlinearity,
            ctx.reverse, ctx.backend, ctx.batch_sizes)
        return (dx, dh0, dw_ih, dw_hh, *_bias_grads(ctx.has_bias, db, db), None, None, None,
                None, None)


def _empty(x, h0, w_hh):
    # The fused ops need B, I, H >= 1. torch.nn accepts a batch of 0 (and its cells a
    # hidden_size or input_size of 0): such calls run fusedrnn.reference's plain ops, which
    # handle empty tensors (and I = 0, where the output still depends on h0 and the biases).
    return h0.shape[0] == 0 or x.shape[-1] == 0 or w_hh.numel() == 0


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False, batch_sizes=None,
               w_hr=None):
    """One LSTM layer over x [T,B,I] (or packed [N,I]): returns (y, h_n [B,P], c_n [B,H]).

    w_hr [P,H] is torch.nn's projection (proj_size = P): h_t = (o * tanh(c_t)) W_hr^T, w_hh is
    then [4H,P] and y, h0, h_n have P features. Without it P = H."""
    if _empty(x, h0, w_hh):
        return reference.lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes, w_hr)
    save = _needs_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    if not save:  # nothing for autograd to record: the op alone, without a Function
        y, h_n, c_n, _, _ = ops.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse,
                                             get_backend(), batch_sizes, w_hr, get_algorithm(),
                                             False)
        return _unview(y), h_n, c_n
    return LSTMFunction.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, get_backend(),
                              batch_sizes, w_hr, get_algorithm(), save)


def _reference_bidir(kind, x, h0, c0, w, w_r, batch_sizes):
    """Both directions with fusedrnn.reference's plain ops (the double backward's graph)."""
    if kind == "lstm":
        f = reference.lstm_layer(x, h0[0], c0[0], *w, False, batch_sizes)
        r = reference.lstm_layer(x, h0[1], c0[1], *w_r, True, batch_sizes)
    else:
        f = reference.gru_layer(x, h0[0], *w, False, batch_sizes)
        r = reference.gru_layer(x, h0[1], *w_r, True, batch_sizes)
    return (torch.cat([f[0], r[0]], -1),) + tuple(torch.stack([a, b]) for a, b in zip(f[1:], r[1:]))


class BidirLSTMFunction(torch.autograd.Function):
    """Both directions of a bidirectional LSTM layer: lstm_forward_bidir (save=True) and
    lstm_backward_bidir, each one persistent launch where those kernels are chosen. h0, c0
    [2,B,H]; returns y [..,2H], h_n, c_n [2,B,H]. As LSTMFunction otherwise (y kept without a
    copy and recomputed when modified in place; create_graph through fusedrnn.reference)."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r, backend,
                batch_sizes, algorithm):
        y, h_n, c_n, gates, cells = ops.lstm_forward_bidir(
            x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r, backend,
            batch_sizes, algorithm, True)
        y = _unview(y)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r,
                              gates, cells, _keep_output(ctx, y))
        ctx.has_bias, ctx.backend, ctx.algorithm = b_ih is not None, backend, algorithm
        ctx.batch_sizes = batch_sizes
        return y, h_n, c_n

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r, gates, cells, y = (
            ctx.saved_tensors)
        w, w_r = (w_ih, w_hh, b_ih, b_hh), (w_ih_r, w_hh_r, b_ih_r, b_hh_r)
        if torch.is_grad_enabled():  # create_graph=True: see _recompute_grads
            return _recompute_grads(
                ctx, dict(enumerate((x, h0, c0, *w, *w_r))),
                lambda: _reference_bidir("lstm", x, h0, c0, w, w_r, ctx.batch_sizes),
                (dy, dh_n, dc_n))
        y = _kept_output(ctx, y)
        if y is None:  # modified in place: recompute (gates and cells too, for consistency)
            y, _, _, gates, cells = ops.lstm_forward_bidir(
                x, h0, c0, *w, *w_r, ctx.backend, ctx.batch_sizes, ctx.algorithm, True)
        dx, dh0, dc0, dw_ih, dw_hh, db, dw_ih_r, dw_hh_r, db_r = ops.lstm_backward_bidir(
            dy.contiguous(), dh_n.contiguous(), dc_n.contiguous(), x, h0, c0, w_ih, w_hh,
            w_ih_r, w_hh_r, y, gates, cells, ctx.backend, ctx.batch_sizes, ctx.algorithm)
        return (dx, dh0, dc0, dw_ih, dw_hh, *_bias_grads(ctx.has_bias, db, db), dw_ih_r, dw_hh_r,
                *_bias_grads(ctx.has_bias, db_r, db_r), None, None, None)


class BidirGRUFunction(torch.autograd.Function):
    """Both directions of a bidirectional GRU layer (torch.nn's cell), as BidirLSTMFunction:
    gru_forward_bidir (save=True) and gru_backward_bidir. h0 [2,B,H]; returns y, h_n."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r, backend,
                batch_sizes, algorithm):
        y, h_n, gates, ghn = ops.gru_forward_bidir(x, h0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r,
                                                   b_ih_r, b_hh_r, backend, batch_sizes,
                                                   algorithm, True)
        y = _unview(y)
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r,
                              gates, ghn, _keep_output(ctx, y))
        ctx.has_bias, ctx.backend, ctx.algorithm = b_ih is not None, backend, algorithm
        ctx.batch_sizes = batch_sizes
        return y, h_n

    @staticmethod
    def backward(ctx, dy, dh_n):
        x, h0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r, gates, ghn, y = (
            ctx.saved_tensors)
        w, w_r = (w_ih, w_hh, b_ih, b_hh), (w_ih_r, w_hh_r, b_ih_r, b_hh_r)
        if torch.is_grad_enabled():  # create_graph=True: see _recompute_grads
            return _recompute_grads(
                ctx, dict(enumerate((x, h0, *w, *w_r))),
                lambda: _reference_bidir("gru", x, h0, None, w, w_r, ctx.batch_sizes),
                (dy, dh_n))
        y = _kept_output(ctx, y)
        if y is None:  # modified in place: recompute
            y, _, gates, ghn = ops.gru_forward_bidir(x, h0, *w, *w_r, ctx.backend,
                                                     ctx.batch_sizes, ctx.algorithm, True)
        (dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dw_ih_r, dw_hh_r, db_ih_r,
         db_hh_r) = ops.gru_backward_bidir(dy.contiguous(), dh_n.contiguous(), x, h0, w_ih, w_hh,
                                           w_ih_r, w_hh_r, y, gates, ghn, ctx.backend,
                                           ctx.batch_sizes, ctx.algorithm)
        return (dx, dh0, dw_ih, dw_hh, *_bias_grads(ctx.has_bias, db_ih, db_hh), dw_ih_r,
                dw_hh_r, *_bias_grads(ctx.has_bias, db_ih_r, db_hh_r), None, None, None)


def bidirectional_forward(kind, x, h0, c0, w, w_r, batch_sizes=None):
    """Both directions of a bidirectional LSTM or GRU layer in one op: h0 (and c0) [2,B,H], w and
    w_r the (w_ih, w_hh, b_ih, b_hh) of each direction. Returns (y [..,2H], h_n [2,B,H], c_n
    [2,B,H] or None), or None when the layer must run a direction at a time: the CUDA kernels
    (CUDA tensors, or backend "simt") with the algorithm "stepwise".
    The CUDA kernels run both directions in one persistent launch where they are chosen and fit
    both (else one after the other); the CPU backend runs them side by side, a thread each,
    where a direction is small (cpu/bidir_concurrent.h), else one after the other. When
    autograd records, BidirLSTMFunction / BidirGRUFunction run the forward and the backward
    that way."""
    if _empty(x, h0[0], w[1]):
        return None
    training = _needs_backward(x, h0, c0, *w, *w_r)
    if (x.is_cuda or get_backend() == "simt") and get_algorithm() == "stepwise":
        return None
    if not x.is_cuda and get_backend() == "cuda":
        return None  # the single-direction ops give the error
    args = (get_backend(), batch_sizes, get_algorithm())
    if training:
        if kind == "lstm":
            return BidirLSTMFunction.apply(x, h0, c0, *w, *w_r, *args)
        return (*BidirGRUFunction.apply(x, h0, *w, *w_r, *args), None)
    if kind == "lstm":
        y, h_n, c_n, _, _ = ops.lstm_forward_bidir(x, h0, c0, *w, *w_r, *args)
        return _unview(y), h_n, c_n
    y, h_n, _, _ = ops.gru_forward_bidir(x, h0, *w, *w_r, *args)
    return _unview(y), h_n, None


def stacked_forward(kind, x, h0, c0, weights, batch_sizes=None):
    """The layers of a unidirectional LSTM or GRU stack in one op, for inference: h0 (and c0)
    [L,B,H], weights a (w_ih, w_hh, b_ih, b_hh) tuple a layer (biases None without them).
    Returns (y, h_n [L,B,H], c_n [L,B,H] or None), or None when the layers must run one at a
    time (as bidirectional_forward). The op runs the layers as persistent wavefronts (up to 4
    layers a launch, each one step behind the layer below) where those kernels are chosen and
    fit, else a layer at a time."""
    if get_algorithm() == "stepwise" or not (x.is_cuda or get_backend() == "simt"):
        return None
    flat = [t for w in weights for t in w[:2]]
    has_biases = weights[0][2] is not None
    if has_biases:
        flat = [t for w in weights for t in (w[0], w[1], w[2], w[3])]
    if _needs_backward(x, h0, c0, *flat) or _empty(x, h0[0], weights[0][1]):
        return None
    if kind == "lstm":
        y, h_n, c_n = ops.lstm_forward_stack(x, h0, c0, flat, has_biases, get_backend(),
                                             batch_sizes, get_algorithm())
        return _unview(y), h_n, c_n
    y, h_n = ops.gru_forward_stack(x, h0, flat, has_biases, get_backend(), batch_sizes,
                                   get_algorithm())
    return _unview(y), h_n, None


def gru_layer(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False, batch_sizes=None,
              reset_after=True):
    """One GRU layer over x: returns (y, h_n). reset_after=True is torch.nn.GRU's cell;
    reset_after=False is Cho et al.'s (2014), the reset gate applied to h before the recurrent
    product: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn), with the same parameters (every
    backend; on CUDA the stepwise kernels, two launches a step, whatever fusedrnn.algorithm)."""
    if _empty(x, h0, w_hh):
        return reference.gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, batch_sizes,
                                   reset_after)
    save = _needs_backward(x, h0, w_ih, w_hh, b_ih, b_hh)
    if not save:
        y, h_n, _, _ = _gru_forward(reset_after, x, h0, w_ih, w_hh, b_ih, b_hh, reverse,
                                    get_backend(), batch_sizes, get_algorithm(), False)
        return _unview(y), h_n
    return GRUFunction.apply(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, get_backend(), batch_sizes,
                             get_algorithm(), save, reset_after)


def rnn_layer(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", reverse=False,
              batch_sizes=None):
    """One Elman RNN layer (tanh or relu) over x: returns (y, h_n)."""
    return _rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse, batch_sizes)


def _rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse, batch_sizes, save_h_n=False):
    # save_h_n: see RNNFunction (fusedrnn.RNNCell sets it).
    if _empty(x, h0, w_hh):
        return reference.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse,
                                   batch_sizes)
    if not _needs_backward(x, h0, w_ih, w_hh, b_ih, b_hh):
        y, h_n = ops.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse,
                                 get_backend(), batch_sizes)
        return _unview(y), h_n
    return RNNFunction.apply(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse, get_backend(),
                             batch_sizes, save_h_n)


def _mut_input(x, w_ih, bias, variant):
    """The input side xp [..., 3H] of MUT's r, z, n pre-activations, biases included."""
    if variant == 1:  # r, z: W x; n: tanh(x)
        xp = torch.cat([x @ w_ih.t(), torch.tanh(x)], dim=-1)
    elif variant == 2:  # r: x; z, n: W x
        xp = torch.cat([x, x @ w_ih.t()], dim=-1)
    else:
        return torch.nn.functional.linear(x, w_ih, bias)
    return xp if bias is None else xp + bias


def mut_layer(x, h0, w_ih, w_hh, bias=None, variant=1, reverse=False, batch_sizes=None):
    """One layer of MUT1, MUT2 or MUT3 (Jozefowicz et al. 2015; variant 1-3) over x [T,B,I]
    (or packed [N,I]): returns (y, h_n). Gate order r, z, n; one bias per gate, [3H] or None:
      MUT1: w_ih [2H,I] (W_xr, W_xz), w_hh [2H,H] (W_hr, W_hh); I == H.
            z = s(W_xz x + b_z), r = s(W_xr x + W_hr h + b_r),
            h' = tanh(W_hh (r*h) + tanh(x) + b_h) * z + h * (1 - z)
      MUT2: w_ih [2H,I] (W_xz, W_xh), w_hh [3H,H] (W_hr, W_hz, W_hh); I == H.
            z = s(W_xz x + W_hz h + b_z), r = s(x + W_hr h + b_r),
            h' = tanh(W_hh (r*h) + W_xh x + b_h) * z + h * (1 - z)
      MUT3: w_ih [3H,I] (W_xr, W_xz, W_xh), w_hh [3H,H] (W_hr, W_hz, W_hh).
            z = s(W_xz x + W_hz tanh(h) + b_z), r = s(W_xr x + W_hr h + b_r),
            h' = tanh(W_hh (r*h) + W_xh x + b_h) * z + h * (1 - z)
    The input side (products over x for all steps, tanh(x), x) is computed with torch's ops
    before the loop; the recurrent part is the fused op mut_forward (every backend; on CUDA the
    stepwise kernels of Cho's GRU with the MUT update, two launches a step)."""
    if isinstance(variant, bool) or variant not in (1, 2, 3):
        raise ValueError(f"fusedrnn.mut_layer: variant must be 1, 2 or 3, got {variant!r}")
    H = w_hh.shape[-1]
    if variant in (1, 2) and x.shape[-1] != H:
        raise ValueError(f"MUT{variant} needs input size == hidden size (x enters the "
                         f"{'n' if variant == 1 else 'r'} gate as is), got input size "
                         f"{x.shape[-1]} and hidden size {H}")
    if _empty(x, h0, w_hh):
        return reference.mut_layer(x, h0, w_ih, w_hh, bias, variant, reverse, batch_sizes)
    xp = _mut_input(x, w_ih, bias, variant)
    if not _needs_backward(x, h0, w_ih, w_hh, bias):
        y, h_n, _, _ = ops.mut_forward(xp, h0, w_hh, variant, reverse, get_backend(),
                                       batch_sizes, False)
        return _unview(y), h_n
    return MUTFunction.apply(xp, h0, w_hh, variant, reverse, get_backend(), batch_sizes, True)


def layer_norm_lstm_layer(x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, bias=None, b_c=None,
                          reverse=False, batch_sizes=None):
    """One layer of the layer-normalised LSTM (Ba, Kiros and Hinton 2016) over x [T,B,I] (or
    packed [N,I]): returns (y, h_n, c_n). Gate order i, f, g, o as torch.nn.LSTM:
      a  = g_ih * LN(x W_ih^T) + g_hh * LN(h W_hh^T) + bias
      c' = s(a_f) * c + s(a_i) * tanh(a_g)         h' = s(a_o) * tanh(g_c * LN(c') + b_c)
    LN normalises a row (the 4H pre-activations of each product, the H cells) to mean 0 and
    variance 1 (eps 1e-5, as torch.nn.LayerNorm). w_ih [4H,I], w_hh [4H,H], g_ih, g_hh, bias
    [4H], g_c, b_c [H]; bias and b_c may be None. The input side (x's product for all steps and
    its normalisation) is computed with torch's ops before the loop; the recurrent part, with its
    two normalisations, is the fused op ln_lstm_forward (every backend; on CUDA a product kernel
    and a row kernel a step)."""
    H = w_hh.shape[-1]
    if _empty(x, h0, w_hh):
        return reference.layer_norm_lstm_layer(x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, bias, b_c,
                                               reverse, batch_sizes)
    xp = torch.nn.functional.layer_norm(x @ w_ih.t(), (4 * H,), g_ih, bias, _LN_EPS)
    if not _needs_backward(x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, bias, b_c):
        y, h_n, c_n, *_ = ops.ln_lstm_forward(xp, h0, c0, w_hh, g_hh, g_c, b_c, reverse,
                                              get_backend(), batch_sizes, False)
        return _unview(y), h_n, c_n
    return LayerNormLSTMFunction.apply(xp, h0, c0, w_hh, g_hh, g_c, b_c, reverse, get_backend(),
                                       batch_sizes, True)


def layer_norm_gru_layer(x, h0, w_ih, w_hh, g_ih, g_hh, b_ih=None, b_hh=None, reverse=False,
                         batch_sizes=None):
    """One layer of the layer-normalised GRU over x [T,B,I] (or packed [N,I]): returns
    (y, h_n). torch.nn.GRU's cell (gate order r, z, n, the reset gate after the product) with
    each product normalised (Ba et al. 2016):
      xx = g_ih * LN(x W_ih^T) + b_ih        hh = g_hh * LN(h W_hh^T) + b_hh
      r = s(xx_r + hh_r), z = s(xx_z + hh_z), n = tanh(xx_n + r * hh_n), h' = (1 - z) n + z h
    LN over each product's 3H pre-activations (eps 1e-5, as torch.nn.LayerNorm). w_ih [3H,I],
    w_hh [3H,H], g_ih, g_hh, b_ih, b_hh [3H]; the biases may be None (both or neither). The input
    side runs before the loop with torch's ops; the recurrent part with its normalisation is
    the fused op ln_gru_forward (every backend; on CUDA a product kernel and a row kernel a
    step)."""
    H = w_hh.shape[-1]
    if (b_ih is None) != (b_hh is None):
        raise ValueError("fusedrnn.layer_norm_gru_layer: b_ih and b_hh must be both given or "
                         "both None")
    if _empty(x, h0, w_hh):
        return reference.layer_norm_gru_layer(x, h0, w_ih, w_hh, g_ih, g_hh, b_ih, b_hh, reverse,
                                              batch_sizes)
    xp = torch.nn.functional.layer_norm(x @ w_ih.t(), (3 * H,), g_ih, b_ih, _LN_EPS)
    if not _needs_backward(x, h0, w_ih, w_hh, g_ih, g_hh, b_ih, b_hh):
        y, h_n, *_ = ops.ln_gru_forward(xp, h0, w_hh, g_hh, b_hh, reverse, get_backend(),
                                        batch_sizes, False)
        return _unview(y), h_n
    return LayerNormGRUFunction.apply(xp, h0, w_hh, g_hh, b_hh, reverse, get_backend(),
                                      batch_sizes, True)
