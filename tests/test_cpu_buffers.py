"""The CPU backend's cache of large buffers (csrc/cpu/big_buffer.h): outputs and saved tensors of
1 MB and more come from buffers freed by earlier calls. A buffer still referenced must never be
handed out again, and reused memory must not leak old values into new results."""
import os
import subprocess
import sys

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


def _stats():
    return fusedrnn._ops._C.cpu_cache_stats()


def _train_call(T, B, H=128):
    torch.manual_seed(T * 1000 + B)
    m = torch.nn.LSTM(H, H)
    fusedrnn.convert(m)
    x = torch.randn(T, B, H, requires_grad=True)
    with fusedrnn.backend("cpu"):
        y, _ = m(x)
        y.sum().backward()


def test_cache_keeps_a_repeated_working_set():
    """Repeated shapes: from the third call on, the buffers of one call are cached for the next."""
    for _ in range(4):
        _train_call(100, 64)
    s = _stats()
    assert s["live"] == 0
    assert s["cached"] > 16 << 20, s  # the working set (~60 MB) stays
    assert s["recurring"] > 0, s


def test_cache_keeps_buffers_over_64_mb():
    """A repeated inference call whose output is 77 MB: from the third call on it comes from the
    cache (buffers over 64 MB used to be unmapped at once, and every call faulted its pages in
    again)."""
    T, B, H = 2000, 32, 300  # y [T*B, H] fp32: 76.8 MB (78 MB mapped)
    big = (T * B * H * 4 + (2 << 20) - 1) // (2 << 20) * (2 << 20)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(T, B, 16, generator=g)
    w = [torch.randn(H, 16, generator=g) * 0.1, torch.randn(H, H, generator=g) * 0.05]
    with fusedrnn.backend("cpu"), torch.no_grad():
        for _ in range(4):
            y, _ = F.rnn_layer(x, torch.zeros(B, H), *w)
            del y
    s = _stats()
    assert s["live"] == 0
    assert big in s["sizes"], s


def test_cache_returns_memory_when_shapes_keep_changing():
    """Varying shapes: per-shape buffers (y, gates, their gradients) are unmapped when no call
    takes them (they used to be kept up to 1 GB, and served any request of up to twice their
    size); only sizes every call asks for (packed weights, workspaces) stay cached."""
    for _ in range(4):
        _train_call(100, 64)
    assert _stats()["cached"] > 16 << 20
    H, mb2 = 128, 2 << 20
    shapes = [(31 + 8 * i, 11 + 6 * i) for i in range(24)]  # each shape once, sizes distinct
    per_shape = set()
    for T, B in shapes:
        for cols in (H, 4 * H):  # y, cells, dx [N, H]; gates, da [N, 4H] (fp32, 2 MB-rounded)
            per_shape.add((T * B * cols * 4 + mb2 - 1) // mb2 * mb2)
    for T, B in shapes:
        _train_call(T, B)
    # Neighbouring shapes may share a 2 MB size class (legitimately reused); what no later call
    # takes is unmapped within 4 op calls: after three small training calls nothing is left.
    assert _stats()["cached"] <= _stats()["limit"]
    for _ in range(3):
        _train_call(3, 1)  # no buffer of 1 MB or more
    s = _stats()
    assert s["live"] == 0
    kept = [b for b in s["sizes"] if b in per_shape]
    assert not kept, f"per-shape buffers kept: {kept}"


def test_sizes_that_coincide_between_shapes_are_not_kept():
    """A chain of shapes where each one's gates [T*B, 4H] are exactly the next one's output
    [4T*B, H] (T x4 at equal B): the sizes coincide between different shapes only, so the
    buffers are not cached (they were: a loop of such shapes held ~200 MB)."""
    H, B, mb2 = 128, 128, 2 << 20
    chain = [10, 40, 160, 640]
    coinciding = {(T * B * 4 * H * 4 + mb2 - 1) // mb2 * mb2 for T in chain[:-1]}
    for T in chain:
        _train_call(T, B, H)
    s = _stats()
    assert s["live"] == 0
    kept = [b for b in s["sizes"] if b in coinciding]
    assert not kept, f"buffers of coinciding sizes kept: {kept}"


def test_weight_sized_buffers_stay_cached_when_shapes_vary():
    """Packed weights and weight gradients have the same size whatever T and B, so a loop of
    changing small shapes keeps them (their page faults would dominate such calls)."""
    H = 512  # W_ih, W_hh: [2048, 512] fp32 = 4 MB each
    torch.manual_seed(0)
    m = fusedrnn.LSTM(H, H)
    with fusedrnn.backend("cpu"):
        for T, B in [(3 + i, 1 + i % 4) for i in range(8)]:  # activations all under 1 MB
            y, _ = m(torch.randn(T, B, H, requires_grad=True))
            y.sum().backward()
            m.zero_grad(set_to_none=True)
    s = _stats()
    assert s["live"] == 0
    assert len([b for b in s["sizes"] if b >= 4 << 20]) >= 2, s


def _limit_in_fresh_process(env_mb):
    env = {k: v for k, v in os.environ.items() if k != "FUSEDRNN_CPU_CACHE_MB"}
    if env_mb is not None:
        env["FUSEDRNN_CPU_CACHE_MB"] = env_mb
    code = "import fusedrnn; print(fusedrnn._ops._C.cpu_cache_stats()['limit'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[-1])


def test_cache_limit_default_and_override():
    """The limit is an eighth of the physical memory, at least 512 MB (a fixed 512 MB was too
    little for the loops the cache exists for: LSTM training at H = 2048 cycles ~1.5 GB of
    buffers); FUSEDRNN_CPU_CACHE_MB overrides it, 0 turns the cache off."""
    eighth = os.sysconf("SC_PHYS_PAGES") // 8 * os.sysconf("SC_PAGE_SIZE")
    assert _limit_in_fresh_process(None) == max(512 << 20, eighth)
    assert _limit_in_fresh_process("100") == 100 << 20
    assert _limit_in_fresh_process("0") == 0
