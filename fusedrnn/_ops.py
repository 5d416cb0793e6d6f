"""Loads the native extension and registers the fake (meta) kernels of every op.

The fake kernels give output shapes without computing, which torch.compile and
torch.library.opcheck need. Shapes follow csrc/ops.h (save=False: the saved tensors are empty
1-D tensors).
"""
import torch

try:
    from fusedrnn import _C  # noqa: F401  (registers torch.ops.fusedrnn.*)
except ImportError as e:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        f"fusedrnn: the native extension fusedrnn._C could not be loaded ({e}). It is built from "
        "source against the installed torch; rebuild it with\n"
        "    pip install --no-build-isolation -e .\n"
        "from the fusedrnn checkout (after any change of torch version), or see README.md."
    ) from e

ops = torch.ops.fusedrnn


def _layer_sizes(x, w_hh, *others, packed=False):
    """Sizes of a layer call; also the dtype/device rules of the real kernels, so that a mixed
    call traced by torch.compile (or dispatched to the fake kernel) fails the same way.
    Returns (rows, H): rows(K) is the shape of a per-row tensor with K features, [T,B,K] for
    dense input and [N,K] for packed input (x [N,I])."""
    want = 2 if packed else 3
    torch._check(x.dim() == want, lambda: f"fusedrnn: x must be {want}-D, got {tuple(x.shape)}")
    for t in (w_hh,) + others:
        if t is None:
            continue
        torch._check(t.dtype == x.dtype,
                     lambda: f"fusedrnn: mixed dtypes {t.dtype} and {x.dtype} (x)")
        torch._check(t.device == x.device,
                     lambda: f"fusedrnn: tensors on {t.device} and {x.device} (x)")
    lead = tuple(x.shape[:-1])
    return (lambda K: lead + (K,)), w_hh.shape[1]


@torch.library.register_fake("fusedrnn::lstm_forward")
def _lstm_forward_fake(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=False, backend="auto",
                       batch_sizes=None, w_hr=None, algorithm="auto", save=True):
    rows, P = _layer_sizes(x, w_hh, h0, c0, w_ih, b_ih, b_hh, w_hr,
                           packed=batch_sizes is not None)
    H = w_hh.shape[0] // 4  # P != H with a projection
    e = x.new_empty
    if not save:
        return e(rows(P)), e(h0.shape), e(c0.shape), e((0,)), e((0,))
    return e(rows(P)), e(h0.shape), e(c0.shape), e(rows(4 * H)), e(rows(H))


@torch.library.register_fake("fusedrnn::lstm_forward_bidir")
def _lstm_forward_bidir_fake(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r,
                             backend="auto", batch_sizes=None, algorithm="auto", save=False):
    packed = batch_sizes is not None
    rows, H = _layer_sizes(x, w_hh, h0, c0, w_ih, b_ih, b_hh, packed=packed)
    _layer_sizes(x, w_hh_r, w_ih_r, b_ih_r, b_hh_r, packed=packed)
    e = x.new_empty
    if not save:
        return e(rows(2 * H)), e(h0.shape), e(c0.shape), e((0,)), e((0,))
    return e(rows(2 * H)), e(h0.shape), e(c0.shape), e((2,) + rows(4 * H)), e((2,) + rows(H))


@torch.library.register_fake("fusedrnn::gru_forward_bidir")
def _gru_forward_bidir_fake(x, h0, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r,
                            backend="auto", batch_sizes=None, algorithm="auto", save=False):
    packed = batch_sizes is not None
    rows, H = _layer_sizes(x, w_hh, h0, w_ih, b_ih, b_hh, packed=packed)
    _layer_sizes(x, w_hh_r, w_ih_r, b_ih_r, b_hh_r, packed=packed)
    e = x.new_empty
    if not save:
        return e(rows(2 * H)), e(h0.shape), e((0,)), e((0,))
    return e(rows(2 * H)), e(h0.shape), e((2,) + rows(3 * H)), e((2,) + rows(H))


@torch.library.register_fake("fusedrnn::lstm_backward_bidir")
def _lstm_backward_bidir_fake(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, w_ih_r, w_hh_r, y, gates,
                              cells, backend="auto", batch_sizes=None, algorithm="auto"):
    packed = batch_sizes is not None
    _layer_sizes(x, w_hh, dy, dh_n, dc_n, h0, c0, w_ih, y, gates, cells, packed=packed)
    _layer_sizes(x, w_hh_r, w_ih_r, packed=packed)
    H = w_hh.shape[1]
    e = x.new_empty
    return (e(x.shape), e(h0.shape), e(c0.shape), e(w_ih.shape), e(w_hh.shape), e(4 * H),
            e(w_ih_r.shape), e(w_hh_r.shape), e(4 * H))


@torch.library.register_fake("fusedrnn::gru_backward_bidir")
def _gru_backward_bidir_fake(dy, dh_n, x, h0, w_ih, w_hh, w_ih_r, w_hh_r, y, gates, ghn,
                             backend="auto", batch_sizes=None, algorithm="auto"):
    packed = batch_sizes is not None
    _layer_sizes(x, w_hh, dy, dh_n, h0, w_ih, y, gates, ghn, packed=packed)
    _layer_sizes(x, w_hh_r, w_ih_r, packed=packed)
    H = w_hh.shape[1]
    e = x.new_empty
    return (e(x.shape), e(h0.shape), e(w_ih.shape), e(w_hh.shape), e(3 * H), e(3 * H),
            e(w_ih_r.shape), e(w_hh_r.shape), e(3 * H), e(3 * H))


def _stack_layers(x, h0, weights, has_biases, packed):
    per = 4 if has_biases else 2
    torch._check(len(weights) > 0 and len(weights) % per == 0,
                 lambda: f"fusedrnn: weights must be whole layers of {per} tensors")
    L = len(weights) // per
    torch._check(h0.dim() == 3 and h0.shape[0] == L,
                 lambda: f"fusedrnn: h0 must be [{L}, B, H], got {tuple(h0.shape)}")
    rows, H = _layer_sizes(x, weights[1], h0, *weights, packed=packed)
    return rows, H


@torch.library.register_fake("fusedrnn::lstm_forward_stack")
def _lstm_forward_stack_fake(x, h0, c0, weights, has_biases, backend="auto", batch_sizes=None,
                             algorithm="auto"):
    rows, H = _stack_layers(x, h0, weights, has_biases, batch_sizes is not None)
    e = x.new_empty
    return e(rows(H)), e(h0.shape), e(c0.shape)


@torch.library.register_fake("fusedrnn::gru_forward_stack")
def _gru_forward_stack_fake(x, h0, weights, has_biases, backend="auto", batch_sizes=None,
                            algorithm="auto"):
    rows, H = _stack_layers(x, h0, weights, has_biases, batch_sizes is not None)
    return x.new_empty(rows(H)), x.new_empty(h0.shape)


@torch.library.register_fake("fusedrnn::lstm_backward")
def _lstm_backward_fake(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells, reverse=False,
                        backend="auto", batch_sizes=None, w_hr=None, algorithm="auto"):
    _layer_sizes(x, w_hh, dy, dh_n, dc_n, h0, c0, w_ih, y, gates, cells, w_hr,
                 packed=batch_sizes is not None)
    H = w_hh.shape[0] // 4
    e = x.new_empty
    return (e(x.shape), e(h0.shape), e(c0.shape), e(w_ih.shape), e(w_hh.shape), e(4 * H),
            e(w_hr.shape if w_hr is not None else (0,)))


@torch.library.register_fake("fusedrnn::gru_forward")
def _gru_forward_fake(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=False, backend="auto",
                      batch_sizes=None, algorithm="auto", save=True):
    rows, H = _layer_sizes(x, w_hh, h0, w_ih, b_ih, b_hh, packed=batch_sizes is not None)
    e = x.new_empty
    if not save:
        return e(rows(H)), e(h0.shape), e((0,)), e((0,))
    return e(rows(H)), e(h0.shape), e(rows(3 * H)), e(rows(H))


@torch.library.register_fake("fusedrnn::gru_backward")
def _gru_backward_fake(dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, reverse=False, backend="auto",
                       batch_sizes=None, algorithm="auto"):
    rows, H = _layer_sizes(x, w_hh, dy, dh_n, h0, w_ih, y, gates, ghn,
                           packed=batch_sizes is not None)
    e = x.new_empty
    return e(x.shape), e(h0.shape), e(w_ih.shape), e(w_hh.shape), e(3 * H), e(3 * H)


@torch.library.register_fake("fusedrnn::gru_rb_forward")
def _gru_rb_forward_fake(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=False, backend="auto",
                         batch_sizes=None, save=True):
    rows, H = _layer_sizes(x, w_hh, h0, w_ih, b_ih, b_hh, packed=batch_sizes is not None)
    e = x.new_empty
    if not save:
        return e(rows(H)), e(h0.shape), e((0,)), e((0,))
    return e(rows(H)), e(h0.shape), e(rows(3 * H)), e(rows(H))


@torch.library.register_fake("fusedrnn::gru_rb_backward")
def _gru_rb_backward_fake(dy, dh_n, x, h0, w_ih, w_hh, y, gates, rh, reverse=False,
                          backend="auto", batch_sizes=None):
    rows, H = _layer_sizes(x, w_hh, dy, dh_n, h0, w_ih, y, gates, rh,
                           packed=batch_sizes is not None)
    e = x.new_empty
    return e(x.shape), e(h0.shape), e(w_ih.shape), e(w_hh.shape), e(3 * H), e(3 * H)


@torch.library.register_fake("fusedrnn::mut_forward")
def _mut_forward_fake(xp, h0, w_hh, variant, reverse=False, backend="auto", batch_sizes=None,
                      save=True):
    rows, H = _layer_sizes(xp, w_hh, h0, packed=batch_sizes is not None)
    e = xp.new_empty
    if not save:
        return e(rows(H)), e(h0.shape), e((0,)), e((0,))
    return e(rows(H)), e(h0.shape), e(rows(3 * H)), e(rows(H))


@torch.library.register_fake("fusedrnn::mut_backward")
def _mut_backward_fake(dy, dh_n, h0, w_hh, y, gates, rh, variant, reverse=False, backend="auto",
                       batch_sizes=None):
    _layer_sizes(gates, w_hh, dy, dh_n, h0, y, rh, packed=batch_sizes is not None)
    e = dy.new_empty
    return e(gates.shape), e(h0.shape), e(w_hh.shape)


def _acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.register_fake("fusedrnn::ln_lstm_forward")
def _ln_lstm_forward_fake(xp, h0, c0, w_hh, g_hh, g_c, b_c, reverse=False, backend="auto",
                          batch_sizes=None, save=True):
    rows, H = _layer_sizes(xp, w_hh, h0, c0, g_hh, g_c, b_c, packed=batch_sizes is not None)
    e = xp.new_empty
    acc = _acc_dtype(xp.dtype)
    if not save:
        return (e(rows(H)), e(h0.shape), e(c0.shape), e((0,)), e((0,), dtype=acc), e((0,)),
                e((0,), dtype=acc))
    return (e(rows(H)), e(h0.shape), e(c0.shape), e(rows(4 * H)), e(rows(4 * H), dtype=acc),
            e(rows(H)), e(rows(4), dtype=acc))


@torch.library.register_fake("fusedrnn::ln_lstm_backward")
def _ln_lstm_backward_fake(dy, dh_n, dc_n, h0, c0, w_hh, g_hh, g_c, b_c, y, gates, gh, cells,
                           stats, reverse=False, backend="auto", batch_sizes=None):
    _layer_sizes(gates, w_hh, dy, dh_n, dc_n, h0, c0, g_hh, g_c, b_c, y, cells,
                 packed=batch_sizes is not None)
    e = dy.new_empty
    return (e(gates.shape), e(h0.shape), e(c0.shape), e(w_hh.shape), e(g_hh.shape), e(g_c.shape),
            e(g_c.shape))


@torch.library.register_fake("fusedrnn::ln_gru_forward")
def _ln_gru_forward_fake(xp, h0, w_hh, g_hh, b_hh, reverse=False, backend="auto",
                         batch_sizes=None, save=True):
    rows, H = _layer_sizes(xp, w_hh, h0, g_hh, b_hh, packed=batch_sizes is not None)
    e = xp.new_empty
    acc = _acc_dtype(xp.dtype)
    if not save:
        return e(rows(H)), e(h0.shape), e((0,)), e((0,), dtype=acc), e((0,), dtype=acc)
    return (e(rows(H)), e(h0.shape), e(rows(3 * H)), e(rows(3 * H), dtype=acc),
            e(rows(2), dtype=acc))


@torch.library.register_fake("fusedrnn::ln_gru_backward")
def _ln_gru_backward_fake(dy, dh_n, h0, w_hh, g_hh, b_hh, y, gates, gh, stats, reverse=False,
                          backend="auto", batch_sizes=None):
    _layer_sizes(gates, w_hh, dy, dh_n, h0, g_hh, b_hh, y, packed=batch_sizes is not None)
    e = dy.new_empty
    return e(gates.shape), e(h0.shape), e(w_hh.shape), e(g_hh.shape), e(g_hh.shape)


@torch.library.register_fake("fusedrnn::rnn_forward")
def _rnn_forward_fake(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", reverse=False,
                      backend="auto", batch_sizes=None):
    rows, H = _layer_sizes(x, w_hh, h0, w_ih, b_ih, b_hh, packed=batch_sizes is not None)
    return x.new_empty(rows(H)), x.new_empty(h0.shape)


@torch.library.register_fake("fusedrnn::rnn_backward")
def _rnn_backward_fake(dy, dh_n, x, h0, w_ih, w_hh, y, nonlinearity="tanh", reverse=False,
                       backend="auto", batch_sizes=None):
    rows, H = _layer_sizes(x, w_hh, dy, dh_n, h0, w_ih, y, packed=batch_sizes is not None)
    e = x.new_empty
    return e(x.shape), e(h0.shape), e(w_ih.shape), e(w_hh.shape), e(H)
