"""Loads the native extension and registers the fake (meta) kernels of every op.

The fake kernels give output shapes without computing, which torch.compile and
torch.library.opcheck need. Shapes follow csrc/ops.h.
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


def _layer_sizes(x, w_hh, *others):
    """Sizes of a layer call; also the dtype/device rules of the real kernels, so that a mixed
    call traced by torch.compile (or dispatched to the fake kernel) fails the same way."""
    torch._check(x.dim() == 3, lambda: f"fusedrnn: x must be [T, B, I], got {tuple(x.shape)}")
    for t in (w_hh,) + others:
        if t is None:
            continue
        torch._check(t.dtype == x.dtype,
                     lambda: f"fusedrnn: mixed dtypes {t.dtype} and {x.dtype} (x)")
        torch._check(t.device == x.device,
                     lambda: f"fusedrnn: tensors on {t.device} and {x.device} (x)")
    T, B, _ = x.shape
    return T, B, w_hh.shape[1]


@torch.library.register_fake("fusedrnn::lstm_forward")
def _lstm_forward_fake(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=False, backend="auto"):
    T, B, H = _layer_sizes(x, w_hh, h0, c0, w_ih, b_ih, b_hh)
    e = x.new_empty
    return e(T, B, H), e(B, H), e(B, H), e(T, B, 4 * H), e(T, B, H)


@torch.library.register_fake("fusedrnn::lstm_backward")
def _lstm_backward_fake(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells, reverse=False,
                        backend="auto"):
    T, B, H = _layer_sizes(x, w_hh, dy, dh_n, dc_n, h0, c0, w_ih, y, gates, cells)
    e = x.new_empty
    return e(x.shape), e(B, H), e(B, H), e(w_ih.shape), e(w_hh.shape), e(4 * H)


@torch.library.register_fake("fusedrnn::gru_forward")
def _gru_forward_fake(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=False, backend="auto"):
    T, B, H = _layer_sizes(x, w_hh, h0, w_ih, b_ih, b_hh)
    e = x.new_empty
    return e(T, B, H), e(B, H), e(T, B, 3 * H), e(T, B, H)


@torch.library.register_fake("fusedrnn::gru_backward")
def _gru_backward_fake(dy, dh_n, x, h0, w_ih, w_hh, y, gates, ghn, reverse=False, backend="auto"):
    T, B, H = _layer_sizes(x, w_hh, dy, dh_n, h0, w_ih, y, gates, ghn)
    e = x.new_empty
    return e(x.shape), e(B, H), e(w_ih.shape), e(w_hh.shape), e(3 * H), e(3 * H)


@torch.library.register_fake("fusedrnn::rnn_forward")
def _rnn_forward_fake(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", reverse=False,
                      backend="auto"):
    T, B, H = _layer_sizes(x, w_hh, h0, w_ih, b_ih, b_hh)
    return x.new_empty(T, B, H), x.new_empty(B, H)


@torch.library.register_fake("fusedrnn::rnn_backward")
def _rnn_backward_fake(dy, dh_n, x, h0, w_ih, w_hh, y, nonlinearity="tanh", reverse=False,
                       backend="auto"):
    T, B, H = _layer_sizes(x, w_hh, dy, dh_n, h0, w_ih, y)
    e = x.new_empty
    return e(x.shape), e(B, H), e(w_ih.shape), e(w_hh.shape), e(H)
