"""The CPU backend's cache of large buffers (csrc/cpu/big_buffer.h): outputs and saved tensors of
1 MB and more come from buffers freed by earlier calls. A buffer still referenced must never be
handed out again, and reused memory must not leak old values into new results."""
import torch

import fusedrnn
from fusedrnn import functional as F
from fusedrnn import reference


def _layer(seed, T=40, B=33, I=24, H=72):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    w = H ** -0.5  # torch.nn's scale: contractive dynamics, so fp32 rounding does not grow over T
    return (r(T, B, I), r(B, H), r(B, H), r(4 * H, I) * w, r(4 * H, H) * w, r(4 * H) * w,
            r(4 * H) * w)


def _reference(args):
    with torch.no_grad():
        return reference.lstm_layer(*[a.double() for a in args])


def _close(got, want):
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, rtol=2e-5, atol=2e-5)


def test_live_outputs_are_not_reused():
    kept = []
    with fusedrnn.backend("cpu"), torch.no_grad():
        for seed in range(4):
            args = _layer(seed, T=160)  # gates 160*33*288*4 B = 6 MB: a cached buffer
            out = F.lstm_layer(*args)
            kept.append((args, out, [t.clone() for t in out]))
            del out
    for args, out, copy in kept:  # earlier results are intact after later calls
        for a, b in zip(out, copy):
            assert torch.equal(a, b)
        _close(out, _reference(args))


def test_freed_buffers_are_reused_with_fresh_values():
    with fusedrnn.backend("cpu"):
        for seed in range(4):  # each call frees its buffers before the next one takes them
            args = [a.requires_grad_() for a in _layer(10 + seed, T=160)]
            y, h_n, c_n = F.lstm_layer(*args)
            _close((y, h_n, c_n), _reference(args))
            (y.sum() + h_n.sum() + c_n.sum()).backward()
            ref = [a.detach().double().requires_grad_() for a in args]
            yr, hr, cr = reference.lstm_layer(*ref)
            (yr.sum() + hr.sum() + cr.sum()).backward()
            for a, b in zip(args, ref):
                torch.testing.assert_close(a.grad.double(), b.grad, rtol=1e-4, atol=1e-4)
