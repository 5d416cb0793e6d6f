"""The CPU backend's fused LSTM step (csrc/cpu/lstm_step.h: the recurrent GEMM with the cell
update in its epilogue, W_hh packed L units x 4 gates per panel), on every instruction set it is
compiled for that this CPU has (the cpu_isa fixture: AVX-512, L = 16, tiles of 4 rows; AVX2 + FMA,
L = 8, tiles of 3 rows). Against the fp64 reference and against the unfused path
(FUSEDRNN_CPU_FUSED=0: GEMM, then the pointwise pass, same instruction set) on the same inputs:
hidden sizes that do and do not fill an 8- or 16-unit panel, batches that do and do not fill a
row tile, packed input in both directions, 1 and 2 threads, the input projection hoisted and per
step (FUSEDRNN_CPU_HOIST=1/0; the sizes here would all be hoisted otherwise), the gradients (the
backward reads the activations the fused step saved), and the half types and fp64 (fp16/bf16 run
the fp32 step on widened inputs; fp64 never runs it) at their own tolerances."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from fusedrnn import functional as F
from fusedrnn import reference

from conftest import TOL

testing = torch.ops.fusedrnn_testing
# A call of fewer rows than this in all reads W_hh as stored instead of packing it for the fused
# step (csrc/cpu/matmul.h: kPackMinRows), so every case here has at least this many.
MIN_ROWS = 17
pytestmark = pytest.mark.skipif(not testing.cpu_lstm_fused(),
                                reason="the fused LSTM step needs AVX2 + FMA or AVX-512")


def _inputs(T, B, I, H, seed, bias=True):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.5  # noqa: E731
    x, h0, c0 = r(T, B, I), r(B, H), r(B, H)
    # W_hh at std 0.5 up to H = 36, then 3 / sqrt(H): the pre-activations stay O(1) instead of
    # saturating, where fp32 rounding (fused against unfused, fp32 against fp64) grows chaotically
    k = min(1.0, 6 / H ** 0.5)
    w = [r(4 * H, I), r(4 * H, H) * k] + ([r(4 * H), r(4 * H)] if bias else [None, None])
    return x, h0, c0, w


def _run(x, h0, c0, w, reverse, batch_sizes=None, layer=F.lstm_layer, cot_dtype=None):
    """Outputs and gradients of lstm_layer on the cpu backend (or of another layer function), for
    fixed random cotangents (rounded to cot_dtype first, if given)."""
    leaves = [t.clone().requires_grad_() for t in (x, h0, c0, *[v for v in w if v is not None])]
    xs, h0s, c0s, *ws = leaves
    w_ih, w_hh = ws[0], ws[1]
    b_ih, b_hh = (ws[2], ws[3]) if len(ws) == 4 else (None, None)
    with fusedrnn.backend("cpu"):
        kw = {"batch_sizes": batch_sizes} if batch_sizes is not None else {}
        y, h_n, c_n = layer(xs, h0s, c0s, w_ih, w_hh, b_ih, b_hh, reverse=reverse, **kw)
    g = torch.Generator().manual_seed(7)
    dy, dh, dc = (torch.randn(t.shape, generator=g).to(cot_dtype or t.dtype).to(t.dtype)
                  for t in (y, h_n, c_n))
    torch.autograd.backward((y, h_n, c_n), (dy, dh, dc))
    return [y.detach(), h_n.detach(), c_n.detach()] + [t.grad for t in leaves]


def _unfused(monkeypatch, *args, **kw):
    with monkeypatch.context() as m:
        m.setenv("FUSEDRNN_CPU_FUSED", "0")
        assert not testing.cpu_lstm_fused()
        return _run(*args, **kw)


def _close(got, want, tol):
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol)


@pytest.fixture(params=["1", "0"], ids=["hoisted", "per_step"])
def hoist(request, monkeypatch):
    monkeypatch.setenv("FUSEDRNN_CPU_HOIST", request.param)
    return request.param


@pytest.mark.parametrize("H", [1, 5, 7, 8, 13, 16, 17, 37, 40, 67, 100])
@pytest.mark.parametrize("B", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_matches_reference_and_unfused(H, B, reverse, threads, hoist, cpu_isa,
                                             monkeypatch):
    T, I = max(6, -(-MIN_ROWS // B)), 11
    x, h0, c0, w = _inputs(T, B, I, H, seed=H * 100 + B)
    assert testing.cpu_lstm_fused_isa() == cpu_isa
    got = _run(x, h0, c0, w, reverse)
    with torch.no_grad():
        y, h_n, c_n = reference.lstm_layer(x.double(), h0.double(), c0.double(),
                                           *[v.double() for v in w], reverse=reverse)
    _close(got[:3], [y, h_n, c_n], 2e-5)
    _close(got, _unfused(monkeypatch, x, h0, c0, w, reverse), 2e-5)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_packed(reverse, bias, threads, hoist, cpu_isa, monkeypatch):
    T, B, I, H = 9, 7, 13, 35
    x, h0, c0, w = _inputs(T, B, I, H, seed=11, bias=bias)
    assert testing.cpu_lstm_fused_isa() == cpu_isa
    lengths = torch.tensor([9, 8, 8, 5, 3, 2, 1])
    packed = pack_padded_sequence(x, lengths)
    args = (packed.data, h0, c0, w, reverse, packed.batch_sizes)
    got = _run(*args)
    _close(got, _unfused(monkeypatch, *args), 2e-5)
    # each sequence alone through the fp64 reference: y rows and its own final state
    ys = []
    for b, L in enumerate(lengths.tolist()):
        with torch.no_grad():
            y, h_n, c_n = reference.lstm_layer(
                x[:L, b:b + 1].double(), h0[b:b + 1].double(), c0[b:b + 1].double(),
                *[v.double() if v is not None else None for v in w], reverse=reverse)
        torch.testing.assert_close(got[1][b:b + 1].double(), h_n, rtol=2e-5, atol=2e-5)
        torch.testing.assert_close(got[2][b:b + 1].double(), c_n, rtol=2e-5, atol=2e-5)
        ys.append(y[:, 0])
    want = pack_padded_sequence(torch.nn.utils.rnn.pad_sequence(ys), lengths).data
    torch.testing.assert_close(got[0].double(), want, rtol=2e-5, atol=2e-5)


def test_fused_large_step_two_threads(threads, hoist, cpu_isa, monkeypatch):
    """A step above the threading threshold (4 MFLOP): threads split the panels."""
    T, B, I, H = 3, 33, 20, 200
    assert testing.cpu_lstm_fused_isa() == cpu_isa
    x, h0, c0, w = _inputs(T, B, I, H, seed=5)
    _close(_run(x, h0, c0, w, False), _unfused(monkeypatch, x, h0, c0, w, False), 5e-5)


@pytest.mark.parametrize("reverse", [False, True])
def test_fused_large_streamed_projection(reverse, cpu_isa, monkeypatch):
    """Gates of 16 MB and more (T*B*4H floats, B >= 32: hoisted) are written by the input
    projection with non-temporal stores, and the fused step prefetches them: same results as the
    unfused path (ordinary stores) and the fp64 reference."""
    T, B, I, H = 40, 33, 37, 801  # 40*33*3204*4 bytes = 16.9 MB of gates
    # a layer this wide takes the GEMM + pointwise pass by default (lstm_step_for): force the step
    monkeypatch.setenv("FUSEDRNN_CPU_FUSED", "1")
    x, h0, c0, w = _inputs(T, B, I, H, seed=5)
    # weights ~ 1/sqrt(fan-in), as torch.nn initialises them: at std 0.5 a recurrence of 801 units
    # saturates and is chaotic over 40 steps, so fp32 and fp64 drift apart whatever the code
    w = [v * 2 / (I ** 0.5 if k == 0 else H ** 0.5) for k, v in enumerate(w)]
    assert testing.cpu_lstm_fused_isa() == cpu_isa
    got = _run(x, h0, c0, w, reverse)
    with torch.no_grad():
        y, h_n, c_n = reference.lstm_layer(x.double(), h0.double(), c0.double(),
                                           *[v.double() for v in w], reverse=reverse)
    _close(got[:3], [y, h_n, c_n], 1e-4)
    _close(got, _unfused(monkeypatch, x, h0, c0, w, reverse), 1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("H", [7, 37])
def test_fused_other_dtypes(dtype, H, cpu_isa):
    """fp16/bf16 widen to fp32 and take the fused step; fp64 takes the GEMM + pointwise pass.
    Outputs and gradients against autograd through the fp64 reference on the same (rounded)
    inputs, within the dtype's tolerance (conftest.TOL)."""
    T, B, I = 6, 3, 6
    x, h0, c0, w = _inputs(T, B, I, H, seed=H + 1)
    w = [v * 2 / (I ** 0.5 if k == 0 else H ** 0.5) for k, v in enumerate(w)]
    x, h0, c0, *w = (t.to(dtype) for t in (x, h0, c0, *w))
    got = _run(x, h0, c0, w, False)
    want = _run(*(t.double() for t in (x, h0, c0)), [v.double() for v in w], False,
                layer=reference.lstm_layer, cot_dtype=dtype)
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.dtype == dtype, k
        torch.testing.assert_close(a.double(), b, **TOL[dtype], msg=f"item {k}")


def _bits_equal(a, b):
    return all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("H,fused", [(200, True), (600, False)])
def test_fused_only_where_it_pays(H, fused, cpu_isa, monkeypatch):
    """Beyond the thin batches the fused step runs only up to the kernel's max_step_h (384 on
    AVX2, 512 on AVX-512; lstm_step.h: lstm_step_for): at H = 200 the layer's results are those
    of the fused step bit for bit, at H = 600 those of the GEMM + pointwise pass;
    FUSEDRNN_CPU_FUSED=1 forces the step. Thin batches keep it at any H (their sweeps)."""
    T, B, I = 3, 17, 9
    assert testing.cpu_lstm_fused_isa() == cpu_isa
    assert testing.cpu_lstm_fused_for(B, H) == fused
    assert testing.cpu_lstm_fused_for(8, 4096) and testing.cpu_lstm_fused_for(B, 100)
    x, h0, c0, w = _inputs(T, B, I, H, seed=H)
    default = _run(x, h0, c0, w, False)
    with monkeypatch.context() as m:
        m.setenv("FUSEDRNN_CPU_FUSED", "1")
        assert testing.cpu_lstm_fused_for(B, H)
        forced = _run(x, h0, c0, w, False)
    unfused = _unfused(monkeypatch, x, h0, c0, w, False)
    # the two paths round differently (sums in another order), so bitwise equality names the path
    assert not _bits_equal(forced[:3], unfused[:3])
    assert _bits_equal(default[:3], forced[:3] if fused else unfused[:3])
    _close(default, unfused, 5e-5)
