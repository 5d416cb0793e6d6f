"""The layer-normalised GRU: the ops ln_gru_forward and ln_gru_backward,
fusedrnn.functional.layer_norm_gru_layer, the module fusedrnn.LayerNormGRU and the cell
LayerNormGRUCell, on every backend (the CPU backend; the CUDA kernels under SIMT, and on a GPU
where there is one), against fusedrnn.reference.layer_norm_gru_cell/_layer (written from the
equations, itself checked against the equations written out by hand below with
torch.nn.functional.layer_norm) in every dtype, dense and packed, both directions, with and
without the biases, odd sizes, TF32 on and off; gradcheck and gradgradcheck in fp64, and a
gradient penalty (create_graph=True) against the reference's; opcheck; the saved tensors against
their definitions; the module's parameters, state_dict, initialisation, dropout, PackedSequence
and batch_first handling; torch.compile; bad inputs.

torch.nn.GRU's cell (gate order r, z, n, the reset gate after the product) with each product
layer-normalised over its 3H pre-activations (biased variance, eps 1e-5):
  xx = g_ih * LN(x W_ih^T) + b_ih          hh = g_hh * LN(h W_hh^T) + b_hh
  r = s(xx_r + hh_r), z = s(xx_z + hh_z), n = tanh(xx_n + r * hh_n), h' = (1 - z) n + z h
The gains and biases are random and away from their initialisation (ones; the biases in
[-0.5, 0.5], larger than their init's 1/sqrt(H)) wherever they are inputs, so that a kernel
ignoring or misplacing one of them cannot pass."""
import copy

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

import fusedrnn
from fusedrnn import functional as F
from fusedrnn import reference
from conftest import (skip_unless as _skip_unless,
                      batch_sizes as _batch_sizes,
                      loss_weights as _weights,
                      prev_states as _prev_states,
                      row_stats as _row_stats)
from conftest import TOL, assert_close, device_of, tf32_rnns

ops = torch.ops.fusedrnn
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
HALF = (torch.float16, torch.bfloat16)
EPS = 1e-5
NAMES = ("x", "h0", "w_ih", "w_hh", "g_ih", "g_hh", "b_ih", "b_hh")


@pytest.fixture
def one_thread():
    """torch's intra-op threads set to 1 (restored afterwards) for the finite-difference checks:
    thousands of tiny ops, which a second thread only slows down, and on a loaded machine its
    OpenMP spin-waits cost more than the test itself (30 s instead of 1)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def ln_gru_inputs(T, B, I, H, dtype=torch.float64, bias=True, seed=0):
    """Fresh random inputs of one layer (never zeros); weights scaled like torch.nn's init,
    gains in [0.5, 1.5] (never their init, 1), biases in [-0.5, 0.5]."""
    g = torch.Generator().manual_seed(seed)
    k = H ** -0.5

    def rnd(*shape, scale=1.0, centre=0.0):
        return ((torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale
                + centre).to(dtype)

    return dict(x=rnd(T, B, I), h0=rnd(B, H, scale=0.8),
                w_ih=rnd(3 * H, I, scale=k), w_hh=rnd(3 * H, H, scale=k),
                g_ih=rnd(3 * H, scale=0.5, centre=1.0), g_hh=rnd(3 * H, scale=0.5, centre=1.0),
                b_ih=rnd(3 * H, scale=0.5) if bias else None,
                b_hh=rnd(3 * H, scale=0.5) if bias else None)


def _args(d, dtype, grad, device="cpu"):
    out = []
    for k in NAMES:
        t = d[k]
        out.append(None if t is None else t.to(device=device, dtype=dtype).requires_grad_(grad))
    return out


def _ref(args):
    """The same (rounded) inputs in fp64 on the CPU, as leaves for the reference."""
    return [None if a is None else a.detach().double().cpu().requires_grad_() for a in args]


def _xp(x, w_ih, g_ih, b_ih):
    """The input side g_ih * LN(x W_ih^T) + b_ih that ln_gru_forward takes."""
    return reference._layer_norm(x @ w_ih.t(), g_ih, b_ih)


def _recurrence(xp, h0, w_hh, g_hh, b_hh, reverse=False, batch_sizes=None):
    """The recurrence from its input side xp = g_ih * LN(x W_ih^T) + b_ih (the equations, as
    reference.layer_norm_gru_cell after its input product), written out here."""
    H = w_hh.shape[1]

    def cell(xt, h):
        hh = reference._layer_norm(h @ w_hh.t(), g_hh, b_hh)
        r = torch.sigmoid(xt[:, :H] + hh[:, :H])
        z = torch.sigmoid(xt[:, H:2 * H] + hh[:, H:2 * H])
        n = torch.tanh(xt[:, 2 * H:] + r * hh[:, 2 * H:])
        return ((1 - z) * n + z * h,)
    return reference._scan(cell, xp, (h0,), reverse, batch_sizes, H)


def _reference(ref, dtype, reverse=False, batch_sizes=None):
    """The fp64 reference on the leaves ref. In fp16 and bf16 it also sees the input side
    rounded to the dtype, as the layer forms it (torch's ops in the dtype; its value enters the
    recurrence, its gradient is the fp64 one at that value): LN's rstd over products of odd
    inputs amplifies that rounding beyond the half types' tolerances, an effect of the dtype,
    not of the fused op. The recurrence itself, the fused op's part, stays exact."""
    if dtype not in HALF:
        return reference.layer_norm_gru_layer(*ref, reverse=reverse, batch_sizes=batch_sizes)
    x, h0, w_ih, w_hh, g_ih, g_hh, b_ih, b_hh = ref
    xp = _xp(x, w_ih, g_ih, b_ih)
    low = [None if t is None else t.detach().to(dtype) for t in (x, w_ih, g_ih, b_ih)]
    rounded = torch.nn.functional.layer_norm(low[0] @ low[1].t(), (xp.shape[-1],), low[2],
                                             low[3], EPS).double()
    xp = xp + (rounded - xp).detach()
    return _recurrence(xp, h0, w_hh, g_hh, b_hh, reverse, batch_sizes)


def _compare_grads(args, ref, dtype, names=NAMES, scale=4):
    for name, a, r in zip(names, args, ref):
        if a is not None:
            assert a.grad is not None, f"no gradient for {name}"
            assert_close(a.grad, r.grad, dtype, scale=scale, msg=f"d{name}")


def _loss(outs, ws):
    return sum((o.double() * w.double().to(o.device)).sum() for o, w in zip(outs, ws))


# ------------------------------------------------------------------ the reference itself

@pytest.mark.parametrize("bias", [True, False])
def test_reference_equations_of_one_step(bias):
    """reference.layer_norm_gru_cell against the equations written out by hand with
    torch.nn.functional.layer_norm (an independent layer norm)."""
    H, I = 5, 4
    d = ln_gru_inputs(1, 3, I, H, bias=bias, seed=1)
    x, h = d["x"][0], d["h0"]
    ln = torch.nn.functional.layer_norm
    xx = ln(x @ d["w_ih"].T, (3 * H,), d["g_ih"], d["b_ih"], EPS)
    hh = ln(h @ d["w_hh"].T, (3 * H,), d["g_hh"], d["b_hh"], EPS)
    r = torch.sigmoid(xx[:, :H] + hh[:, :H])
    z = torch.sigmoid(xx[:, H:2 * H] + hh[:, H:2 * H])
    n = torch.tanh(xx[:, 2 * H:] + r * hh[:, 2 * H:])
    want = (1 - z) * n + z * h
    args = [d[k] for k in NAMES[2:]]
    got = reference.layer_norm_gru_cell(x, h, *args)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # The normalisations, each gain and bias, the place of r (after the product, on hh_n only)
    # and the roles of z / (1 - z) each change the result well beyond the loosest tolerance on
    # these inputs: a kernel getting one of them wrong cannot pass the comparisons below.
    unit = torch.ones(3 * H, dtype=torch.float64)
    w_ih, w_hh, g_ih, g_hh, b_ih, b_hh = args
    variants = {
        "g_ih": reference.layer_norm_gru_cell(x, h, w_ih, w_hh, unit, g_hh, b_ih, b_hh),
        "g_hh": reference.layer_norm_gru_cell(x, h, w_ih, w_hh, g_ih, unit, b_ih, b_hh),
        "no LN": reference.gru_cell(x, h, w_ih, w_hh, b_ih, b_hh),
        "z swapped": z * n + (1 - z) * h,
        "r on all of n": (1 - z) * torch.tanh(r * (xx[:, 2 * H:] + hh[:, 2 * H:])) + z * h,
    }
    if bias:
        variants["b_ih"] = reference.layer_norm_gru_cell(x, h, w_ih, w_hh, g_ih, g_hh, None,
                                                         b_hh)
        variants["b_hh"] = reference.layer_norm_gru_cell(x, h, w_ih, w_hh, g_ih, g_hh, b_ih,
                                                         None)
        # b_hn inside r * (...), as torch.nn.GRU, not added outside it.
        variants["b_hn outside r"] = (1 - z) * torch.tanh(
            xx[:, 2 * H:] + r * (hh[:, 2 * H:] - b_hh[2 * H:]) + b_hh[2 * H:]) + z * h
    for name, v in variants.items():
        assert (v - want).abs().max() > 10 * TOL[torch.float16]["atol"], name


@pytest.mark.parametrize("reverse", [False, True])
def test_reference_layer_is_its_cell_step_by_step(reverse):
    H = 4
    d = ln_gru_inputs(5, 3, 6, H, seed=11)
    args = _args(d, torch.float64, False)
    y, h_n = reference.layer_norm_gru_layer(*args, reverse=reverse)
    h = d["h0"]
    for t in (range(4, -1, -1) if reverse else range(5)):
        h = reference.layer_norm_gru_cell(d["x"][t], h, *args[2:])
        torch.testing.assert_close(y[t], h, rtol=0, atol=0)
    torch.testing.assert_close(h_n, h, rtol=0, atol=0)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_recurrence_from_the_input_side_is_the_reference(reverse, packed):
    """The tests' split of the reference (the input side, then the recurrence over it, as the
    layer computes it) is the reference itself; in fp64, _reference is the reference."""
    d = ln_gru_inputs(4, 3, 5, 6, seed=12)
    args = _args(d, torch.float64, False)
    bs = None
    if packed:
        bs = _batch_sizes([4, 2, 1])
        args[0] = torch.rand(int(bs.sum()), 5, dtype=torch.float64) * 2 - 1
    want = reference.layer_norm_gru_layer(*args, reverse=reverse, batch_sizes=bs)
    x, h0, w_ih, w_hh, g_ih, g_hh, b_ih, b_hh = args
    got = _recurrence(_xp(x, w_ih, g_ih, b_ih), h0, w_hh, g_hh, b_hh, reverse, bs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(_reference(args, torch.float64, reverse, bs), want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ------------------------------------------------------------------ the layer, CPU backend

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,B,I,H", [(5, 1, 3, 7), (4, 19, 11, 13), (3, 5, 17, 33)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_against_reference(dtype, T, B, I, H, reverse, bias):
    d = ln_gru_inputs(T, B, I, H, bias=bias, seed=T * 100 + B)
    args = _args(d, dtype, True)
    ref = _ref(args)
    with fusedrnn.backend("cpu"):
        y, h_n = F.layer_norm_gru_layer(*args, reverse=reverse)
    assert y.dtype == h_n.dtype == dtype and y.shape == (T, B, H) and h_n.shape == (B, H)
    yr, hr = _reference(ref, dtype, reverse)
    assert_close(y, yr, dtype)
    assert_close(h_n, hr, dtype)
    ws = _weights(y.shape, h_n.shape)
    _loss((y, h_n), ws).backward()
    _loss((yr, hr), ws).backward()
    _compare_grads(args, ref, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_instruction_sets_and_threads(cpu_isa, threads, dtype):
    """The CPU row passes (pointwise.h lngru_forward/_backward) as compiled for AVX-512 and for
    AVX2 (vector widths 8 and 16 against H = 7, 13, 33: tails and whole vectors), one and two
    threads over the rows."""
    for T, B, I, H in ((3, 5, 4, 7), (2, 3, 6, 13), (2, 4, 5, 33)):
        d = ln_gru_inputs(T, B, I, H, seed=H + B)
        args = _args(d, dtype, True)
        ref = _ref(args)
        with fusedrnn.backend("cpu"):
            y, h_n = F.layer_norm_gru_layer(*args, reverse=H == 13)
        yr, hr = reference.layer_norm_gru_layer(*ref, reverse=H == 13)
        assert_close(y, yr, dtype)
        assert_close(h_n, hr, dtype)
        ws = _weights(y.shape, h_n.shape, seed=H)
        _loss((y, h_n), ws).backward()
        _loss((yr, hr), ws).backward()
        _compare_grads(args, ref, dtype)


# ------------------------------------------------------------------ the CUDA kernels

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,B,I,H,bias", [(3, 1, 3, 7, True), (2, 19, 9, 13, False),
                                          (2, 5, 5, 33, True)])
@pytest.mark.parametrize("reverse", [False, True])
def test_kernels_against_reference(kernel_backend, dtype, T, B, I, H, bias, reverse, tf32):
    """The product and row kernels, under SIMT here and on CUDA where there is a GPU: H not a
    multiple of the 16-unit tiles, batches of one and of several row tiles, with and without the
    biases, the half types and TF32 (tolerance as fp16's)."""
    if tf32 and dtype != torch.float32:
        pytest.skip("TF32 applies to fp32 only")
    dev = device_of(kernel_backend)
    d = ln_gru_inputs(T, B, I, H, bias=bias, seed=T * 10 + B)
    args = _args(d, dtype, True, dev)
    ref = _ref(args)
    with fusedrnn.backend(kernel_backend):
        y, h_n = F.layer_norm_gru_layer(*args, reverse=reverse)
    assert y.device.type == dev and y.dtype == h_n.dtype == dtype
    assert y.shape == (T, B, H) and h_n.shape == (B, H)
    yr, hr = _reference(ref, dtype, reverse)
    tol = torch.float16 if tf32 and dtype == torch.float32 else dtype
    assert_close(y, yr, tol)
    assert_close(h_n, hr, tol)
    ws = _weights(y.shape, h_n.shape, seed=2)
    with fusedrnn.backend(kernel_backend):
        _loss((y, h_n), ws).backward()
    _loss((yr, hr), ws).backward()
    _compare_grads(args, ref, tol)


@pytest.mark.parametrize("H", [90, 260])
def test_kernels_rows_wider_than_a_block(kernel_backend, H):
    """3H over the row kernels' 256 threads (H = 90: the reductions' strided loops), and H over
    them too (H = 260: the per-unit loops), fp64, both directions, forward and gradients."""
    for reverse in (False, True):
        d = ln_gru_inputs(2, 2, 3, H, seed=H + reverse)
        dev = device_of(kernel_backend)
        args = _args(d, torch.float64, True, dev)
        ref = _ref(args)
        with fusedrnn.backend(kernel_backend):
            y, h_n = F.layer_norm_gru_layer(*args, reverse=reverse)
            ws = _weights(y.shape, h_n.shape, seed=3)
            _loss((y, h_n), ws).backward()
        yr, hr = reference.layer_norm_gru_layer(*ref, reverse=reverse)
        assert_close(y, yr, torch.float64)
        assert_close(h_n, hr, torch.float64)
        _loss((yr, hr), ws).backward()
        _compare_grads(args, ref, torch.float64, scale=1)


def test_tf32_changes_the_simt_results():
    """Sanity of the tf32 cases above: TF32 does reach these kernels (the fp32 results differ
    with it on), so the ieee cases check IEEE fp32 and the tf32 cases the tensor-core path."""
    _skip_unless("simt")
    d = ln_gru_inputs(3, 5, 5, 13, seed=3)
    args = _args(d, torch.float32, False)
    with fusedrnn.backend("simt"):
        a = F.layer_norm_gru_layer(*args)[0]
        with tf32_rnns():
            b = F.layer_norm_gru_layer(*args)[0]
    assert (a - b).abs().max() > TOL[torch.float32]["atol"]


# ------------------------------------------------------------------ packed, gradcheck

@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_packed_against_reference(reverse, bias, backend):
    _skip_unless(backend)
    lengths = [6, 6, 4, 3, 1]
    batch_sizes = _batch_sizes(lengths)
    N, I, H = int(batch_sizes.sum()), 5, 7
    d = ln_gru_inputs(1, len(lengths), I, H, bias=bias, seed=3)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(N, I, generator=g, dtype=torch.float64).mul(2).sub(1).requires_grad_()
    args = [x] + _args(d, torch.float64, True)[1:]
    ref = _ref(args)
    with fusedrnn.backend(backend):
        y, h_n = F.layer_norm_gru_layer(*args, reverse=reverse, batch_sizes=batch_sizes)
    assert y.shape == (N, H) and h_n.shape == (5, H)
    yr, hr = reference.layer_norm_gru_layer(*ref, reverse=reverse, batch_sizes=batch_sizes)
    assert_close(y, yr, torch.float64)
    assert_close(h_n, hr, torch.float64)
    ws = _weights(y.shape, h_n.shape, seed=5)
    with fusedrnn.backend(backend):
        _loss((y, h_n), ws).backward()
    _loss((yr, hr), ws).backward()
    _compare_grads(args, ref, torch.float64)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_lower_precision(backend, dtype):
    """Packed input in fp32 and bf16 (the half types' conversions of the packed rows)."""
    _skip_unless(backend)
    lengths = [5, 3, 3, 2]
    batch_sizes = _batch_sizes(lengths)
    N, I, H = int(batch_sizes.sum()), 6, 13
    d = ln_gru_inputs(1, len(lengths), I, H, seed=31)
    g = torch.Generator().manual_seed(32)
    d["x"] = torch.rand(N, I, generator=g, dtype=torch.float64) * 2 - 1
    args = _args(d, dtype, True)
    ref = _ref(args)
    for reverse in (False, True):
        with fusedrnn.backend(backend):
            y, h_n = F.layer_norm_gru_layer(*args, reverse=reverse, batch_sizes=batch_sizes)
        assert y.shape == (N, H) and y.dtype == h_n.dtype == dtype
        yr, hr = _reference(ref, dtype, reverse, batch_sizes)
        assert_close(y, yr, dtype)
        assert_close(h_n, hr, dtype)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck(backend, reverse, one_thread):
    """First and second derivatives by finite differences, every input (x, h0, both weights,
    both gains, both biases); H = 3."""
    _skip_unless(backend)
    d = ln_gru_inputs(3, 2, 2, 3, seed=7 + reverse)
    args = tuple(_args(d, torch.float64, True))

    def fn(*a):
        with fusedrnn.backend(backend):
            return F.layer_norm_gru_layer(*a, reverse=reverse)
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_gradcheck_packed_without_bias(backend, one_thread):
    _skip_unless(backend)
    lengths = [3, 1, 2]
    batch_sizes = _batch_sizes(lengths)
    H = 3
    d = ln_gru_inputs(1, 3, 2, H, bias=False, seed=5)
    g = torch.Generator().manual_seed(6)
    x = torch.rand(int(batch_sizes.sum()), 2, generator=g, dtype=torch.float64) * 2 - 1
    x.requires_grad_()
    args = (x, *_args(d, torch.float64, True)[1:6])
    for reverse in (False, True):
        def fn(*a):
            with fusedrnn.backend(backend):
                return F.layer_norm_gru_layer(*a, reverse=reverse, batch_sizes=batch_sizes)
        assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("bias", [True, False])
def test_create_graph_matches_reference(backend, bias):
    """create_graph=True (the backward recomputed with plain ops, functional._ln_gru_step):
    first-order gradients and those of a gradient penalty against the reference's, dense and
    packed. gradcheck and gradgradcheck alone cannot tell a wrong recomputation (it is
    differentiated consistently with itself)."""
    _skip_unless(backend)
    H = 4
    lengths = [3, 2, 2]
    batch_sizes = _batch_sizes(lengths)
    for reverse, packed in ((False, False), (True, False), (False, True), (True, True)):
        d = ln_gru_inputs(3, 3, 3, H, bias=bias, seed=21 + reverse)
        args = _args(d, torch.float64, True)
        if packed:
            g = torch.Generator().manual_seed(22)
            args[0] = (torch.rand(int(batch_sizes.sum()), 3, generator=g, dtype=torch.float64)
                       * 2 - 1).requires_grad_()
        ref = _ref(args)
        bs = batch_sizes if packed else None
        grads = []
        for fn, a in ((F.layer_norm_gru_layer, args), (reference.layer_norm_gru_layer, ref)):
            leaves = [t for t in a if t is not None]
            with fusedrnn.backend(backend):
                out = fn(*a, reverse=reverse, batch_sizes=bs)
                ws = _weights(*(o.shape for o in out), seed=4)
                first = torch.autograd.grad(_loss(out, ws), leaves, create_graph=True)
                penalty = sum((f * f).sum() for f in first)
                grads.append((first, torch.autograd.grad(penalty, leaves)))
        names = [n for n, t in zip(NAMES, args) if t is not None]
        for order in (0, 1):
            for name, got, want in zip(names, grads[0][order], grads[1][order]):
                assert_close(got, want, torch.float64,
                             msg=f"order {order + 1}, reverse={reverse}, packed={packed}: "
                                 f"d{name}")


def test_one_bias_only_is_an_error():
    d = ln_gru_inputs(2, 2, 3, 4, seed=1)
    args = _args(d, torch.float64, False)
    for b_ih, b_hh in ((args[6], None), (None, args[7])):
        with pytest.raises(ValueError):
            F.layer_norm_gru_layer(*args[:6], b_ih, b_hh)
        with pytest.raises(ValueError):
            F.layer_norm_gru_layer(*args[:6], b_ih=b_ih, b_hh=b_hh)


def test_empty_batch():
    """A batch of 0, as torch.nn.GRU accepts: empty outputs of the right shapes."""
    m = fusedrnn.LayerNormGRU(3, 5, num_layers=2)
    out, h_n = m(torch.randn(4, 0, 3))
    assert out.shape == (4, 0, 5) and h_n.shape == (2, 0, 5)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_no_grad_forward_equals_grad_forward(backend):
    _skip_unless(backend)
    d = ln_gru_inputs(6, 5, 4, 9, dtype=torch.float32, seed=9)
    args = _args(d, torch.float32, True)
    with fusedrnn.backend(backend):
        y, h = F.layer_norm_gru_layer(*args)
        assert y.requires_grad and h.requires_grad
        with torch.no_grad():
            y0, h0 = F.layer_norm_gru_layer(*args)
        assert not y0.requires_grad
        with torch.inference_mode():
            y1, h1 = F.layer_norm_gru_layer(*args)
        # Frozen weights and a plain x: nothing requires grad either.
        y2, h2 = F.layer_norm_gru_layer(*_args(d, torch.float32, False))
    for got in ((y0, h0), (y1, h1), (y2, h2)):
        for a, b in zip(got, (y, h)):
            torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_in_place_change_of_the_output_keeps_gradients_right(backend):
    _skip_unless(backend)
    d = ln_gru_inputs(5, 4, 3, 6, seed=5)
    args = _args(d, torch.float64, True)
    ref = _ref(args)
    with fusedrnn.backend(backend):
        y, h_n = F.layer_norm_gru_layer(*args)
        y.mul_(2)
        h_n.add_(1)
        (y.sum() + (h_n * h_n).sum()).backward()
    yr, hr = reference.layer_norm_gru_layer(*ref)
    ((yr * 2).sum() + ((hr + 1) * (hr + 1)).sum()).backward()
    _compare_grads(args, ref, torch.float64)


# ------------------------------------------------------------------ the ops

def _ops_case(backend, packed, seed=8, H=7, B=5, bias=True):
    """(device, batch_sizes, fp64 leaves x, h0, w_ih, w_hh, g_ih, g_hh, b_ih, b_hh)."""
    dev = device_of(backend)
    d = ln_gru_inputs(4, B, 4, H, bias=bias, seed=seed)
    batch_sizes = None
    if packed:
        batch_sizes = _batch_sizes([4, 4, 3, 2, 1][:B])
        g = torch.Generator().manual_seed(seed + 1)
        d["x"] = torch.rand(int(batch_sizes.sum()), 4, generator=g, dtype=torch.float64) * 2 - 1
    return dev, batch_sizes, _args(d, torch.float64, True)


@pytest.mark.parametrize("backend", ["cpu", "simt", "cuda"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_ops_against_reference(backend, packed, reverse, bias):
    """ln_gru_forward's y, h_n and saved gates (r, z, n), gh (= h_{t-1} W_hh^T) and stats (mean
    and rstd of gh's row), and ln_gru_backward's dxp, dh0, dw_hh, dg_hh, db_hh (dxp carried back
    through the input side to x, w_ih, g_ih and b_ih), against the reference in fp64."""
    _skip_unless(backend)
    dev, batch_sizes, leaves = _ops_case(backend, packed, bias=bias)
    ref = _ref(leaves)
    x, h0, w_ih, w_hh, g_ih, g_hh, b_ih, b_hh = [a.detach().clone().requires_grad_()
                                                 if a is not None else None for a in ref]
    xp = _xp(x, w_ih, g_ih, b_ih)
    H = h0.shape[1]
    on = lambda t: None if t is None else t.detach().to(dev)  # noqa: E731
    y, h_n, gates, gh, stats = ops.ln_gru_forward(on(xp), on(h0), on(w_hh), on(g_hh), on(b_hh),
                                                  reverse, backend, batch_sizes, True)
    yr, hr = reference.layer_norm_gru_layer(*ref, reverse=reverse, batch_sizes=batch_sizes)
    assert y.device.type == dev
    assert_close(y, yr, torch.float64)
    assert_close(h_n, hr, torch.float64)
    lead = tuple(y.shape[:-1])
    assert y.shape == lead + (H,) and h_n.shape == (h0.shape[0], H)
    assert gates.shape == lead + (3 * H,) and gh.shape == lead + (3 * H,)
    assert stats.shape == lead + (2,)
    assert all(t.dtype == torch.float64 for t in (y, h_n, gates, gh, stats))
    # The saved tensors against their definitions.
    with torch.no_grad():
        hprev = _prev_states(yr, h0, reverse, batch_sizes)
        want_gh = hprev @ w_hh.t()
        assert_close(gh, want_gh, torch.float64, msg="gh = h_{t-1} W_hh^T")
        mh, rh = _row_stats(want_gh)
        assert_close(stats[..., 0], mh, torch.float64, msg="mean of gh's row")
        assert_close(stats[..., 1], rh, torch.float64, msg="rstd of gh's row")
        hh = g_hh * (want_gh - mh[..., None]) * rh[..., None]
        if b_hh is not None:
            hh = hh + b_hh
        r = torch.sigmoid(xp[..., :H] + hh[..., :H])
        z = torch.sigmoid(xp[..., H:2 * H] + hh[..., H:2 * H])
        n = torch.tanh(xp[..., 2 * H:] + r * hh[..., 2 * H:])
        for k, (name, want) in enumerate((("r", r), ("z", z), ("n", n))):
            assert_close(gates[..., k * H:(k + 1) * H], want, torch.float64, msg=name)
        assert_close(yr, (1 - z) * n + z * hprev, torch.float64, msg="h' from the gates")

    ws = _weights(y.shape, h_n.shape, seed=3)
    dy, dh_n = ws
    grads = ops.ln_gru_backward(dy.to(dev), dh_n.to(dev), on(h0), on(w_hh), on(g_hh), on(b_hh),
                                y, gates, gh, stats, reverse, backend, batch_sizes)
    dxp, dh0, dw_hh, dg_hh, db_hh = grads
    assert dxp.shape == xp.shape and dh0.shape == h0.shape and dw_hh.shape == w_hh.shape
    assert dg_hh.shape == g_hh.shape and db_hh.shape == (3 * H,)  # [3H] also without b_hh
    assert all(t.dtype == torch.float64 and t.device.type == dev for t in grads)
    _loss((yr, hr), ws).backward()
    for name, got, leaf in (("dh0", dh0, 1), ("dw_hh", dw_hh, 3), ("dg_hh", dg_hh, 5),
                            ("db_hh", db_hh, 7)):
        if ref[leaf] is not None:
            assert_close(got, ref[leaf].grad, torch.float64, msg=name)
    leaves_in = [t for t in (x, w_ih, g_ih, b_ih) if t is not None]
    names_in = ["x", "w_ih", "g_ih", "b_ih"][:len(leaves_in)]
    for name, got, leaf in zip(names_in, torch.autograd.grad(xp, leaves_in, dxp.cpu()),
                               (0, 2, 4, 6)):
        assert_close(got, ref[leaf].grad, torch.float64, msg=f"d{name} through dxp")


@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("reverse", [False, True])
def test_ops_db_hh_without_b_hh(backend, reverse):
    """db_hh is [3H] also without b_hh: the gradient b_hh = 0 would get (the op's contract)."""
    _skip_unless(backend)
    _, _, leaves = _ops_case(backend, False, seed=13, bias=False)
    x, h0, w_ih, w_hh, g_ih, g_hh, _, _ = [a.detach() if a is not None else None
                                           for a in leaves]
    H = h0.shape[1]
    xp = _xp(x, w_ih, g_ih, None)
    zero = torch.zeros(3 * H, dtype=torch.float64, requires_grad=True)
    y, h_n, gates, gh, stats = ops.ln_gru_forward(xp, h0, w_hh, g_hh, None, reverse, backend,
                                                  None, True)
    ws = _weights(y.shape, h_n.shape, seed=14)
    db_hh = ops.ln_gru_backward(*ws, h0, w_hh, g_hh, None, y, gates, gh, stats, reverse,
                                backend, None)[4]
    yr, hr = reference.layer_norm_gru_layer(x, h0, w_ih, w_hh, g_ih, g_hh, None, zero,
                                            reverse=reverse)
    assert_close(db_hh, torch.autograd.grad(_loss((yr, hr), ws), zero)[0], torch.float64)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_saved_dtypes_and_half_types(backend, dtype):
    """gates in the input's dtype; gh and stats in the accumulation type (fp64 for fp64, else
    fp32), consistent with each other and with y; the backward takes them and returns the
    input's dtype."""
    _skip_unless(backend)
    _, _, leaves = _ops_case(backend, False, seed=15)
    x, h0, w_ih, w_hh, g_ih, g_hh, b_ih, b_hh = [a.detach() for a in leaves]
    xp = _xp(x, w_ih, g_ih, b_ih)
    low = [t.to(dtype) for t in (xp, h0, w_hh, g_hh, b_hh)]
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    y, h_n, gates, gh, stats = ops.ln_gru_forward(*low, False, backend, None, True)
    assert y.dtype == h_n.dtype == gates.dtype == dtype
    assert gh.dtype == acc and stats.dtype == acc
    tol = torch.float16 if dtype == torch.bfloat16 else dtype  # gh: products of rounded h
    hprev = _prev_states(y.double(), low[1].double(), False, None)
    assert_close(gh, hprev @ low[2].double().t(), dtype)
    mh, rh = _row_stats(gh.double())
    assert_close(stats[..., 0], mh, tol)
    assert_close(stats[..., 1], rh, tol, scale=4)
    torch.testing.assert_close(h_n, y[-1], rtol=0, atol=0)
    dy, dh_n = [w.to(dtype) for w in _weights(y.shape, h_n.shape, seed=16)]
    g = ops.ln_gru_backward(dy, dh_n, *low[1:], y, gates, gh, stats, False, backend, None)
    assert all(t.dtype == dtype for t in g)
    assert all(bool(torch.isfinite(t).all()) for t in g)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_ops_save_false(backend, packed, dtype):
    """save=False: gates, gh and stats come back empty (in their dtypes: gates the input's, gh
    and stats the accumulation type), y and h_n as with save=True."""
    _skip_unless(backend)
    dev, batch_sizes, leaves = _ops_case(backend, packed, seed=12)
    x, h0, w_ih, w_hh, g_ih, g_hh, b_ih, b_hh = [a.detach() for a in leaves]
    low = [t.to(dtype) for t in (_xp(x, w_ih, g_ih, b_ih), h0, w_hh, g_hh, b_hh)]
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    for reverse in (False, True):
        a = (*low, reverse, backend, batch_sizes)
        y, h, *saved = ops.ln_gru_forward(*a, False)
        assert [t.numel() for t in saved] == [0, 0, 0]
        assert [t.dtype for t in saved] == [dtype, acc, acc]
        y1, h1, *saved1 = ops.ln_gru_forward(*a, True)
        assert all(t.numel() > 0 for t in saved1)
        assert y.shape == y1.shape and h.shape == h1.shape
        torch.testing.assert_close(y, y1, rtol=0, atol=0)
        torch.testing.assert_close(h, h1, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_ops_non_contiguous_inputs(backend):
    """Non-contiguous inputs: the same results as contiguous ones."""
    _skip_unless(backend)
    _, _, leaves = _ops_case(backend, False, seed=16)
    x, h0, w_ih, w_hh, g_ih, g_hh, b_ih, b_hh = [a.detach() for a in leaves]
    xp = _xp(x, w_ih, g_ih, b_ih)
    args = (xp, h0, w_hh, g_hh, b_hh)

    def strided(t):  # same values, every other element of a buffer twice the size
        big = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
        big[..., ::2] = t
        return big[..., ::2]
    nc = [strided(t) for t in args]
    nc[2] = w_hh.t().contiguous().t()  # transposed layout
    assert not any(t.is_contiguous() for t in nc)
    want = ops.ln_gru_forward(*args, False, backend, None, True)
    got = ops.ln_gru_forward(*nc, False, backend, None, True)
    for p, q in zip(got, want):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
    dy, dh = _weights(want[0].shape, want[1].shape, seed=17)
    gw = ops.ln_gru_backward(dy, dh, h0, w_hh, g_hh, b_hh, want[0], *want[2:], False, backend,
                             None)
    gn = ops.ln_gru_backward(strided(dy), strided(dh), nc[1], nc[2], nc[3], nc[4],
                             strided(want[0]), *[strided(t) for t in want[2:]], False, backend,
                             None)
    for p, q in zip(gn, gw):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


def _opcheck_cases(dtype):
    for packed in (False, True):
        _, batch_sizes, leaves = _ops_case("cpu", packed, seed=2, H=5, B=3)
        x, h0, w_ih, w_hh, g_ih, g_hh, b_ih, b_hh = [a.detach() for a in leaves]
        low = [t.to(dtype) for t in (_xp(x, w_ih, g_ih, b_ih), h0, w_hh, g_hh, b_hh)]
        for reverse in (False, True):
            yield low, reverse, batch_sizes


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_opcheck(dtype):
    """torch.library.opcheck of both ops on the CPU (the fake kernels' shapes and dtypes, the
    accumulation dtype of gh and stats included), dense and packed, with and without b_hh."""
    for low, reverse, batch_sizes in _opcheck_cases(dtype):
        a = (*low, reverse, "cpu", batch_sizes)
        y, hn, gates, gh, stats = ops.ln_gru_forward(*a)
        torch.library.opcheck(ops.ln_gru_forward, a)
        torch.library.opcheck(ops.ln_gru_forward, (*low[:4], None, reverse, "cpu", batch_sizes))
        for b_hh in (low[4], None):
            torch.library.opcheck(ops.ln_gru_backward,
                                  (torch.randn_like(y), torch.randn_like(hn), *low[1:4], b_hh, y,
                                   gates, gh, stats, reverse, "cpu", batch_sizes))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_opcheck_save_false(dtype):
    """opcheck of ln_gru_forward(save=False): among others, the three empty outputs must be
    distinct tensors (the schema declares no aliasing between outputs)."""
    for low, reverse, batch_sizes in _opcheck_cases(dtype):
        torch.library.opcheck(ops.ln_gru_forward, (*low, reverse, "cpu", batch_sizes, False))


# ------------------------------------------------------------------ the modules

_PARAM_ORDER = ("weight_ih", "weight_hh", "gain_ih", "gain_hh", "bias_ih", "bias_hh")


def _params(m, layer, sfx):
    p = dict(m.named_parameters())
    return tuple(p.get(f"{n}_l{layer}{sfx}") for n in _PARAM_ORDER)


def _randomise(m, seed=0):
    """Gains in [0.5, 1.5] and biases in [-0.5, 0.5]: away from their init (1, uniform(k))."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.startswith("gain"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) + 0.5)
            elif n.startswith("bias"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) - 0.5)
    return m


def _stack_reference(m, x, h0):
    """The module's stack from reference layers: x [T,B,I] time-major, h0 [L*D,B,H]."""
    D = 2 if m.bidirectional else 1
    inp, hs = x, []
    for layer in range(m.num_layers):
        ys = []
        for d, sfx in enumerate(("", "_reverse")[:D]):
            y, h = reference.layer_norm_gru_layer(inp, h0[layer * D + d], *_params(m, layer, sfx),
                                                  reverse=d == 1)
            ys.append(y)
            hs.append(h)
        inp = torch.cat(ys, -1)
    return inp, torch.stack(hs)


CONFIGS = [(1, False), (1, True), (2, False), (2, True)]  # (num_layers, bidirectional)


@pytest.mark.parametrize("layers,bidir", CONFIGS)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_module_matches_reference(layers, bidir, batch_first, bias):
    torch.manual_seed(layers * 10 + bidir)
    H, I = 7, 5
    D = 2 if bidir else 1
    m = _randomise(fusedrnn.LayerNormGRU(I, H, num_layers=layers, bias=bias,
                                         batch_first=batch_first,
                                         bidirectional=bidir).double(), seed=layers)
    T, B = 6, 5
    x = (torch.rand(B, T, I) if batch_first else torch.rand(T, B, I)).double()
    x = (x * 2 - 1).requires_grad_()
    h0 = (torch.rand(layers * D, B, H, dtype=torch.float64) - 0.5).requires_grad_()
    out, h_n = m(x, h0)
    assert out.shape == ((B, T, D * H) if batch_first else (T, B, D * H))
    assert h_n.shape == (layers * D, B, H)
    xt = x.transpose(0, 1) if batch_first else x
    want, want_h = _stack_reference(m, xt, h0)
    assert_close(out, want.transpose(0, 1) if batch_first else want, torch.float64)
    assert_close(h_n, want_h, torch.float64)
    ws = _weights(out.shape, h_n.shape, seed=0)
    leaves = [x, h0, *m.parameters()]
    got = torch.autograd.grad(_loss((out, h_n), ws), leaves)
    wy = ws[0].transpose(0, 1) if batch_first else ws[0]
    exp = torch.autograd.grad(_loss((want, want_h), (wy, ws[1])), leaves)
    names = ["x", "h0"] + [n for n, _ in m.named_parameters()]
    for n, a, b in zip(names, got, exp):
        assert_close(a, b, torch.float64, msg=f"d{n}")
    # hx=None is zeros.
    out0, h0_n = m(x)
    want0, want0_h = _stack_reference(m, xt, torch.zeros_like(h0))
    assert_close(out0, want0.transpose(0, 1) if batch_first else want0, torch.float64)
    assert_close(h0_n, want0_h, torch.float64)


def test_module_fp32_and_unbatched_input():
    torch.manual_seed(1)
    H, I = 6, 4
    m = _randomise(fusedrnn.LayerNormGRU(I, H, num_layers=2), seed=2)
    x = torch.rand(5, 3, I) * 2 - 1
    h0 = torch.rand(2, 3, H) - 0.5
    out, h_n = m(x, h0)
    assert out.dtype == h_n.dtype == torch.float32
    want, want_h = _stack_reference(copy.deepcopy(m).double(), x.double(), h0.double())
    assert_close(out, want, torch.float32)
    assert_close(h_n, want_h, torch.float32)
    # Unbatched: 2-D input [T, I] and hx [L*D, H], as a batch of one.
    o1, hn1 = m(x[:, 1], h0[:, 1])
    assert o1.shape == (5, H) and hn1.shape == (2, H)
    assert_close(o1, out[:, 1], torch.float32)
    assert_close(hn1, h_n[:, 1], torch.float32)
    o2, hn2 = m(x[:, 1])
    assert hn2.shape == (2, H)
    assert_close(o2, m(x[:, 1:2])[0][:, 0], torch.float32)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_packed_unsorted_module_against_reference_per_sequence(backend):
    """The module, 2 layers, bidirectional, over a PackedSequence of unsorted lengths, against
    the same module's weights run through the reference layer by layer on each sequence alone
    (and the gradients of x, hx and every parameter)."""
    _skip_unless(backend)
    torch.manual_seed(3)
    H, I, layers, D = 7, 5, 2, 2
    m = _randomise(fusedrnn.LayerNormGRU(I, H, num_layers=layers, bidirectional=True).double(),
                   seed=3)
    lengths = [4, 6, 2, 5]
    xs = [(torch.rand(L, I, dtype=torch.float64) * 2 - 1).requires_grad_() for L in lengths]
    packed = pack_sequence(xs, enforce_sorted=False)
    # hx in the user's batch order (the module reorders it to the packed order and back).
    hx = (torch.rand(layers * D, len(lengths), H, dtype=torch.float64) - 0.5).requires_grad_()
    leaves = xs + [hx] + list(m.parameters())
    with fusedrnn.backend(backend):
        out, h_n = m(packed, hx)
        ys, out_lengths = pad_packed_sequence(out)
        assert out_lengths.tolist() == lengths
        assert h_n.shape == (layers * D, len(lengths), H)
        loss = sum((ys[:L, b] * (b + 1)).sum() for b, L in enumerate(lengths)) + h_n.pow(2).sum()
        got = torch.autograd.grad(loss, leaves)
    ref_loss = 0
    for b, x in enumerate(xs):  # each sequence alone, through the reference
        want, want_h = _stack_reference(m, x[:, None], hx[:, b:b + 1])
        assert_close(ys[:lengths[b], b], want[:, 0], torch.float64)
        assert_close(h_n[:, b], want_h[:, 0], torch.float64)
        ref_loss = ref_loss + (want * (b + 1)).sum() + want_h.pow(2).sum()
    exp = torch.autograd.grad(ref_loss, leaves)
    names = [f"x{b}" for b in range(len(xs))] + ["hx"] + [n for n, _ in m.named_parameters()]
    for n, a, e in zip(names, got, exp):
        assert_close(a, e, torch.float64, msg=f"d{n}")


@pytest.mark.parametrize("layers,bidir", CONFIGS)
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_keys_shapes_and_init(layers, bidir, bias):
    H, I = 33, 10
    D = 2 if bidir else 1
    torch.manual_seed(0)
    m = fusedrnn.LayerNormGRU(I, H, num_layers=layers, bias=bias, bidirectional=bidir)
    want = {}
    for layer in range(layers):
        for sfx in ("", "_reverse")[:D]:
            want[f"weight_ih_l{layer}{sfx}"] = (3 * H, I if layer == 0 else D * H)
            want[f"weight_hh_l{layer}{sfx}"] = (3 * H, H)
            want[f"gain_ih_l{layer}{sfx}"] = (3 * H,)
            want[f"gain_hh_l{layer}{sfx}"] = (3 * H,)
            if bias:
                want[f"bias_ih_l{layer}{sfx}"] = (3 * H,)
                want[f"bias_hh_l{layer}{sfx}"] = (3 * H,)
    sd = m.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == want
    assert {n: tuple(p.shape) for n, p in m.named_parameters()} == want
    k = H ** -0.5
    for n, p in m.named_parameters():
        assert p.dtype == torch.float32 and p.requires_grad, n
        if n.startswith("gain"):
            assert bool((p == 1).all()), n
        else:  # weight_ih, weight_hh, bias_ih, bias_hh: uniform(-k, k) as torch.nn
            assert p.abs().max() <= k, n
            assert 0.4 * k < p.abs().mean() < 0.6 * k, n  # mean |p| = k/2
            assert p.max() > 0.9 * k and p.min() < -0.9 * k, n  # both signs, to the ends
    # Distinct draws per parameter (not one tensor copied around).
    flat = [p for n, p in m.named_parameters() if n.startswith("bias")]
    for i in range(len(flat)):
        for j in range(i):
            assert not torch.equal(flat[i], flat[j])
    # reset_parameters restores the init.
    _randomise(m)
    m.reset_parameters()
    assert all(bool((p == 1).all()) for n, p in m.named_parameters() if n.startswith("gain"))
    assert all(p.abs().max() <= k for n, p in m.named_parameters() if n.startswith("bias"))
    # Load into a fresh module: identical outputs.
    _randomise(m, seed=1)
    m2 = fusedrnn.LayerNormGRU(I, H, num_layers=layers, bias=bias, bidirectional=bidir)
    m2.load_state_dict(m.state_dict())
    x = torch.rand(3, 2, I) * 2 - 1
    torch.testing.assert_close(m2(x)[0], m(x)[0], rtol=0, atol=0)
    # device / dtype arguments.
    m3 = fusedrnn.LayerNormGRU(I, H, num_layers=layers, bias=bias, bidirectional=bidir,
                               dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in m3.parameters())
    r = repr(m)
    assert r.startswith(f"LayerNormGRU({I}, {H}")
    assert ("num_layers=2" in r) == (layers == 2) and ("bidirectional=True" in r) == bidir
    assert ("bias=False" in r) == (not bias)


def test_dropout_only_in_training():
    torch.manual_seed(4)
    H, I = 6, 4
    m = _randomise(fusedrnn.LayerNormGRU(I, H, num_layers=2, dropout=0.5).double(), seed=4)
    x = torch.rand(5, 3, I, dtype=torch.float64) * 2 - 1
    z = x.new_zeros(2, 3, H)
    m.eval()
    a, ha = m(x)
    b, _ = m(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    want, want_h = _stack_reference(m, x, z)
    assert_close(a, want, torch.float64)
    assert_close(ha, want_h, torch.float64)
    m.train()
    torch.manual_seed(123)
    c, hc = m(x)
    assert not torch.allclose(a, c)
    # torch.nn's dropout on the first layer's output, with the same RNG draws.
    torch.manual_seed(123)
    p = [_params(m, layer, "") for layer in range(2)]
    y0, h0n = reference.layer_norm_gru_layer(x, z[0], *p[0])
    y0 = torch.nn.functional.dropout(y0, 0.5, training=True)
    y1, h1n = reference.layer_norm_gru_layer(y0, z[0], *p[1])
    assert_close(c, y1, torch.float64)
    assert_close(hc, torch.stack([h0n, h1n]), torch.float64)
    # No dropout in training with dropout=0.
    m0 = fusedrnn.LayerNormGRU(I, H, num_layers=2).double()
    m0.load_state_dict(m.state_dict())
    m0.train()
    assert_close(m0(x)[0], a, torch.float64)


def test_module_no_grad_equals_grad_forward():
    torch.manual_seed(5)
    m = _randomise(fusedrnn.LayerNormGRU(3, 8, num_layers=2, bidirectional=True), seed=5)
    x = torch.rand(4, 3, 3) * 2 - 1
    out, h = m(x)
    assert out.requires_grad
    with torch.no_grad():
        out0, h0 = m(x)
    assert not out0.requires_grad
    for p, q in ((out0, out), (h0, h)):
        torch.testing.assert_close(p, q.detach(), rtol=1e-5, atol=1e-6)


def test_module_in_place_change_of_the_output():
    torch.manual_seed(6)
    H = 5
    m = _randomise(fusedrnn.LayerNormGRU(4, H, num_layers=2).double(), seed=6)
    x = (torch.rand(4, 3, 4, dtype=torch.float64) * 2 - 1).requires_grad_()
    out, h_n = m(x)
    out.mul_(3)
    h_n.add_(2)
    leaves = [x, *m.parameters()]
    got = torch.autograd.grad(out.sum() + h_n.pow(2).sum(), leaves)
    want, want_h = _stack_reference(m, x, x.new_zeros(2, 3, H))
    exp = torch.autograd.grad((want * 3).sum() + (want_h + 2).pow(2).sum(), leaves)
    for a, b in zip(got, exp):
        assert_close(a, b, torch.float64)


def test_compiles_without_graph_breaks():
    # The modules share _FusedRNNBase.forward: after the other files' compiled modules, its
    # code object would reach dynamo's recompile limit (a fullgraph error, not a graph break).
    torch._dynamo.reset()
    torch.manual_seed(5)
    m = _randomise(fusedrnn.LayerNormGRU(3, 6, num_layers=2, bidirectional=True), seed=7)
    x = torch.rand(5, 2, 3).mul(2).sub(1).requires_grad_()
    compiled = torch.compile(m, fullgraph=True)
    y, h = compiled(x)
    y2, h2 = m(x)
    for p, q in ((y, y2), (h, h2)):
        assert_close(p, q, torch.float32)
    (y.sum() + h.pow(2).sum()).backward()
    got = [x.grad] + [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    x2 = x.detach().clone().requires_grad_()
    y2, h2 = m(x2)
    (y2.sum() + h2.pow(2).sum()).backward()
    for a, b in zip(got, [x2.grad] + [p.grad for p in m.parameters()]):
        assert_close(a, b, torch.float32)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's
def test_onnx_export_refuses_clearly():
    import io
    for m, x in ((fusedrnn.LayerNormGRU(3, 4), torch.randn(5, 2, 3)),
                 (fusedrnn.LayerNormGRUCell(3, 4), torch.randn(2, 3))):
        with pytest.raises(NotImplementedError, match="ONNX"):
            torch.onnx.export(m, (x,), io.BytesIO(), dynamo=False)


# ------------------------------------------------------------------ the cell

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_cell_matches_reference(bias, backend):
    _skip_unless(backend)
    torch.manual_seed(7)
    H, I = 8, 5
    c = fusedrnn.LayerNormGRUCell(I, H, bias=bias).double()
    shapes = {"weight_ih": (3 * H, I), "weight_hh": (3 * H, H), "gain_ih": (3 * H,),
              "gain_hh": (3 * H,)}
    if bias:
        shapes.update(bias_ih=(3 * H,), bias_hh=(3 * H,))
    assert {n: tuple(p.shape) for n, p in c.named_parameters()} == shapes
    assert {k: tuple(v.shape) for k, v in c.state_dict().items()} == shapes
    k = H ** -0.5
    p = dict(c.named_parameters())
    for n in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if bias else ()):
        assert p[n].abs().max() <= k and p[n].abs().max() > 0.5 * k, n
    assert bool((p["gain_ih"] == 1).all()) and bool((p["gain_hh"] == 1).all())
    _randomise(c, seed=8)
    w = [p.get(n) for n in _PARAM_ORDER]
    x = (torch.rand(3, I, dtype=torch.float64) * 2 - 1).requires_grad_()
    h = (torch.rand(3, H, dtype=torch.float64) - 0.5).requires_grad_()
    with fusedrnn.backend(backend):
        got = c(x, h)
        got_1 = c(x[0], h[0])  # unbatched
        got_0 = c(x)  # hx=None: zeros
    want = reference.layer_norm_gru_cell(x, h, *w)
    assert got.shape == (3, H) and got.dtype == torch.float64
    assert_close(got, want, torch.float64)
    assert got_1.shape == (H,)
    assert_close(got_1, want[0], torch.float64)
    assert_close(got_0, reference.layer_norm_gru_cell(x, torch.zeros_like(h), *w), torch.float64)
    leaves = [x, h, *c.parameters()]
    wt = _weights((3, H), seed=9)
    for a, b in zip(torch.autograd.grad(_loss((got,), wt), leaves),
                    torch.autograd.grad(_loss((want,), wt), leaves)):
        assert_close(a, b, torch.float64)
    r = repr(c)
    assert r.startswith(f"LayerNormGRUCell({I}, {H}") and ("bias=False" in r) == (not bias)


def test_cell_is_one_step_of_the_module():
    """The cell with a one-layer module's parameters (names without _l0) is one step of it."""
    torch.manual_seed(8)
    m = _randomise(fusedrnn.LayerNormGRU(4, 6), seed=9)
    c = fusedrnn.LayerNormGRUCell(4, 6)
    c.load_state_dict({k[:-3]: v for k, v in m.state_dict().items()})
    x = torch.rand(3, 2, 4) * 2 - 1
    y, _ = m(x)
    h = None
    for t in range(3):
        h = c(x[t], h)
        assert_close(h, y[t], torch.float32)


# ------------------------------------------------------------------ bad inputs

def test_module_bad_inputs():
    m = fusedrnn.LayerNormGRU(4, 5, num_layers=2)
    x = torch.randn(3, 2, 4)
    good = torch.randn(2, 2, 5)
    for bad in [(1, 2, 5), (2, 3, 5), (2, 2, 6)]:
        with pytest.raises(RuntimeError, match="Expected hidden"):
            m(x, torch.randn(bad))
    with pytest.raises(RuntimeError, match="3-D"):
        m(x, torch.randn(2, 5))  # unbatched hidden state with batched input
    with pytest.raises(RuntimeError):  # batched hidden state with unbatched input
        m(x[:, 0], good)
    for bad in [(good,), (good, good), [good]]:
        with pytest.raises(TypeError, match="tensor"):
            m(x, bad)
    with pytest.raises(RuntimeError, match="input_size"):
        m(torch.randn(3, 2, 6))
    with pytest.raises(ValueError, match="2D or 3D"):
        m(torch.randn(3, 2, 4, 1))
    with pytest.raises((ValueError, RuntimeError), match="type"):
        m(x.double())
    with pytest.raises(TypeError):
        m([x])
    m(x, good)  # fine


def test_constructor_errors():
    for kw in (dict(hidden_size=0), dict(input_size=0), dict(num_layers=0),
               dict(dropout=1.5), dict(dropout=-0.1)):
        args = dict(input_size=4, hidden_size=5)
        args.update(kw)
        with pytest.raises(ValueError):
            fusedrnn.LayerNormGRU(**args)
    with pytest.raises(ValueError):
        fusedrnn.LayerNormGRUCell(4, 0)
    with pytest.raises(ValueError):
        fusedrnn.LayerNormGRUCell(0, 4)


def test_cell_bad_inputs():
    c = fusedrnn.LayerNormGRUCell(4, 5)
    x = torch.randn(3, 4)
    good = torch.randn(3, 5)
    for bad in [(2, 5), (3, 6)]:
        with pytest.raises(RuntimeError):
            c(x, torch.randn(bad))
    with pytest.raises(ValueError):
        c(x, torch.randn(1, 3, 5))
    with pytest.raises(TypeError):
        c(x, (good,))
    with pytest.raises(RuntimeError, match="input_size"):
        c(torch.randn(3, 6))
    with pytest.raises(ValueError):
        c(torch.randn(2, 3, 4))
    c(x, good)  # fine


def test_op_bad_inputs():
    _, _, leaves = _ops_case("cpu", False, seed=2)
    x, h0, w_ih, w_hh, g_ih, g_hh, b_ih, b_hh = [a.detach() for a in leaves]
    xp = _xp(x, w_ih, g_ih, b_ih)
    good = dict(xp=xp, h0=h0, w_hh=w_hh, g_hh=g_hh, b_hh=b_hh)
    H = h0.shape[1]
    bads = [("g_hh", g_hh[:-1]), ("b_hh", b_hh[:-1]), ("g_hh", g_hh[:H]),
            ("xp", xp[..., :-1]), ("xp", xp[0]), ("h0", h0[:-1]), ("h0", h0[:, :-1]),
            ("w_hh", w_hh[:-1]), ("w_hh", w_hh[:, :-1]), ("g_hh", g_hh.float()),
            ("b_hh", b_hh.float()), ("h0", h0.float()), ("w_hh", w_hh.float()),
            ("g_hh", g_hh[None].expand(2, 3 * H)), ("xp", xp.int())]
    for name, t in bads:
        a = dict(good, **{name: t})
        with pytest.raises(RuntimeError, match=r"\bxp?\b" if name == "xp" else name):
            ops.ln_gru_forward(*a.values(), False, "cpu")
    with pytest.raises(RuntimeError):  # packed: batch_sizes must fit xp's rows
        ops.ln_gru_forward(xp[0], h0, w_hh, g_hh, b_hh, False, "cpu", torch.tensor([5, 1]))
    with pytest.raises(RuntimeError):  # the CUDA backend with CPU tensors
        ops.ln_gru_forward(*good.values(), False, "cuda")
    y, h_n, gates, gh, stats = ops.ln_gru_forward(*good.values(), False, "cpu")
    grads = (torch.ones_like(y), torch.ones_like(h_n))
    rest = (h0, w_hh, g_hh, b_hh, y)
    ops.ln_gru_backward(*grads, *rest, gates, gh, stats)  # fine
    for saved in ((gates[..., :-1], gh, stats), (gates, gh[..., :-1], stats),
                  (gates, gh, stats[..., :1]), (gates[:1], gh, stats),
                  (gates.float(), gh, stats), (gates, gh, stats.float()),
                  (torch.empty(0, dtype=gates.dtype), gh, stats)):
        with pytest.raises(RuntimeError, match="ln_gru_backward"):
            ops.ln_gru_backward(*grads, *rest, *saved)
    with pytest.raises(RuntimeError):
        ops.ln_gru_backward(grads[0], grads[1][:1], *rest, gates, gh, stats)
    with pytest.raises(RuntimeError):
        ops.ln_gru_backward(grads[0][:-1], grads[1], *rest, gates, gh, stats)
