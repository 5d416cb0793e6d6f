"""The layer-normalised LSTM (Ba, Kiros and Hinton 2016): the ops ln_lstm_forward and
ln_lstm_backward, fusedrnn.functional.layer_norm_lstm_layer, the module fusedrnn.LayerNormLSTM
and the cell LayerNormLSTMCell, on every backend (the CPU backend; the CUDA kernels under SIMT,
and on a GPU where there is one), against fusedrnn.reference.layer_norm_lstm_cell/_layer
(written from the equations, itself checked against the equations written out by hand below
with torch.nn.functional.layer_norm) in every dtype, dense and packed, both directions, with and
without the biases, odd sizes, TF32 on and off; gradcheck and gradgradcheck in fp64, and a
gradient penalty (create_graph=True) against the reference's; opcheck; the saved tensors against
their definitions; the module's parameters, state_dict, initialisation, dropout, PackedSequence
and batch_first handling; torch.compile; bad inputs.

Gate order i, f, g, o; LN over a row (biased variance, eps 1e-5):
  a = g_ih * LN(x W_ih^T) + g_hh * LN(h W_hh^T) + bias
  c' = s(a_f) c + s(a_i) tanh(a_g)          h' = s(a_o) tanh(g_c * LN(c') + b_c)
The gains and biases are random and away from their initialisation (ones, zeros) wherever they
are inputs, so that a kernel ignoring one of them cannot pass. In fp16 and bf16 the reference
also sees the input side g_ih * LN(x W_ih^T) + bias rounded to the dtype, as the layer forms it
(see _reference); the recurrence, the fused part, is compared with the exact one."""
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
NAMES = ("x", "h0", "c0", "w_ih", "w_hh", "g_ih", "g_hh", "g_c", "bias", "b_c")


def ln_inputs(T, B, I, H, dtype=torch.float64, bias=True, seed=0):
    """Fresh random inputs of one layer (never zeros); weights and bias scaled like torch.nn's
    init, gains in [0.5, 1.5] (never their init, 1), b_c in [-0.5, 0.5] (never 0)."""
    g = torch.Generator().manual_seed(seed)
    k = H ** -0.5

    def rnd(*shape, scale=1.0, centre=0.0):
        return ((torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale
                + centre).to(dtype)

    return dict(x=rnd(T, B, I), h0=rnd(B, H, scale=0.8), c0=rnd(B, H),
                w_ih=rnd(4 * H, I, scale=k), w_hh=rnd(4 * H, H, scale=k),
                g_ih=rnd(4 * H, scale=0.5, centre=1.0), g_hh=rnd(4 * H, scale=0.5, centre=1.0),
                g_c=rnd(H, scale=0.5, centre=1.0),
                bias=rnd(4 * H, scale=k) if bias else None,
                b_c=rnd(H, scale=0.5) if bias else None)


def _args(d, dtype, grad, device="cpu"):
    out = []
    for k in NAMES:
        t = d[k]
        out.append(None if t is None else t.to(device=device, dtype=dtype).requires_grad_(grad))
    return out


def _ref(args):
    """The same (rounded) inputs in fp64 on the CPU, as leaves for the reference."""
    return [None if a is None else a.detach().double().cpu().requires_grad_() for a in args]


def _xp(x, w_ih, g_ih, bias):
    """The input side g_ih * LN(x W_ih^T) + bias that ln_lstm_forward takes."""
    xp = reference._layer_norm(x @ w_ih.t(), g_ih)
    return xp if bias is None else xp + bias


def _recurrence(xp, h0, c0, w_hh, g_hh, g_c, b_c, reverse=False, batch_sizes=None):
    """The reference's recurrence from its input side xp = g_ih * LN(x W_ih^T) + bias (the
    equations, as reference.layer_norm_lstm_cell after its input product)."""
    H = w_hh.shape[1]

    def cell(xt, h, c):
        a = xt + reference._layer_norm(h @ w_hh.t(), g_hh)
        ai, af, ag, ao = a.chunk(4, dim=-1)
        c_new = torch.sigmoid(af) * c + torch.sigmoid(ai) * torch.tanh(ag)
        return torch.sigmoid(ao) * torch.tanh(reference._layer_norm(c_new, g_c, b_c)), c_new
    return reference._scan(cell, xp, (h0, c0), reverse, batch_sizes, H)


def _reference(ref, dtype, reverse=False, batch_sizes=None):
    """The fp64 reference on the leaves ref. In fp16 and bf16 it also sees the input side
    rounded to the dtype, as the layer forms it (torch's ops in the dtype; its value enters the
    recurrence, its gradient is the fp64 one at that value): the layer's gradients are
    sensitive to that rounding beyond the half types' tolerances (LN over 4H products of rstd up
    to 11 here: on the (5, 1, 3, 7) bf16 case below, rounding the input side alone moves dx by
    0.32 where its largest element is 2.1), an effect of the dtype, not of the kernels. The
    recurrence itself, the fused op's part, stays exact."""
    if dtype not in HALF:
        return reference.layer_norm_lstm_layer(*ref, reverse=reverse, batch_sizes=batch_sizes)
    x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, bias, b_c = ref
    xp = _xp(x, w_ih, g_ih, bias)
    low = [None if t is None else t.detach().to(dtype) for t in (x, w_ih, g_ih, bias)]
    rounded = torch.nn.functional.layer_norm(low[0] @ low[1].t(), (xp.shape[-1],), low[2],
                                             low[3], EPS).double()
    xp = xp + (rounded - xp).detach()
    return _recurrence(xp, h0, c0, w_hh, g_hh, g_c, b_c, reverse, batch_sizes)


def _compare_grads(args, ref, dtype, names=NAMES):
    for name, a, r in zip(names, args, ref):
        if a is not None:
            assert a.grad is not None, f"no gradient for {name}"
            assert_close(a.grad, r.grad, dtype, scale=4, msg=f"d{name}")


def _loss(outs, ws):
    return sum((o.double() * w.double()).sum() for o, w in zip(outs, ws))


# ------------------------------------------------------------------ the reference itself

@pytest.mark.parametrize("bias", [True, False])
def test_reference_equations_of_one_step(bias):
    """reference.layer_norm_lstm_cell against the paper's equations written out by hand with
    torch.nn.functional.layer_norm (an independent layer norm)."""
    H, I = 5, 4
    d = ln_inputs(1, 3, I, H, bias=bias, seed=1)
    x, h, c = d["x"][0], d["h0"], d["c0"]
    ln = torch.nn.functional.layer_norm
    b = d["bias"] if bias else 0.0
    a = (ln(x @ d["w_ih"].T, (4 * H,), d["g_ih"], None, EPS)
         + ln(h @ d["w_hh"].T, (4 * H,), d["g_hh"], None, EPS) + b)
    i, f = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H:2 * H])
    g, o = torch.tanh(a[:, 2 * H:3 * H]), torch.sigmoid(a[:, 3 * H:])
    c_new = f * c + i * g
    h_new = o * torch.tanh(ln(c_new, (H,), d["g_c"], d["b_c"], EPS))
    got_h, got_c = reference.layer_norm_lstm_cell(x, h, c, d["w_ih"], d["w_hh"], d["g_ih"],
                                                  d["g_hh"], d["g_c"], d["bias"], d["b_c"])
    torch.testing.assert_close(got_h, h_new, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_c, c_new, rtol=1e-12, atol=1e-12)
    # The normalisations, the gains and b_c each change the result well beyond the loosest
    # tolerance on these inputs: a kernel leaving one out cannot pass the comparisons below.
    plain_h, plain_c = reference.lstm_cell(x, h, c, d["w_ih"], d["w_hh"], d["bias"], None)
    unit = torch.ones(4 * H, dtype=torch.float64)
    variants = [
        reference.layer_norm_lstm_cell(x, h, c, d["w_ih"], d["w_hh"], unit, d["g_hh"],
                                       d["g_c"], d["bias"], d["b_c"]),
        reference.layer_norm_lstm_cell(x, h, c, d["w_ih"], d["w_hh"], d["g_ih"], unit,
                                       d["g_c"], d["bias"], d["b_c"]),
        reference.layer_norm_lstm_cell(x, h, c, d["w_ih"], d["w_hh"], d["g_ih"], d["g_hh"],
                                       unit[:H], d["bias"], d["b_c"]),
    ]
    if bias:
        variants.append(reference.layer_norm_lstm_cell(x, h, c, d["w_ih"], d["w_hh"], d["g_ih"],
                                                       d["g_hh"], d["g_c"], d["bias"], None))
    variants.append((plain_h, plain_c))
    for vh, _ in variants:
        assert (vh - h_new).abs().max() > 10 * TOL[torch.float16]["atol"]


@pytest.mark.parametrize("reverse", [False, True])
def test_reference_layer_is_its_cell_step_by_step(reverse):
    H = 4
    d = ln_inputs(5, 3, 6, H, seed=11)
    args = _args(d, torch.float64, False)
    y, h_n, c_n = reference.layer_norm_lstm_layer(*args, reverse=reverse)
    h, c = d["h0"], d["c0"]
    for t in (range(4, -1, -1) if reverse else range(5)):
        h, c = reference.layer_norm_lstm_cell(d["x"][t], h, c, *args[3:])
        torch.testing.assert_close(y[t], h, rtol=0, atol=0)
    torch.testing.assert_close(h_n, h, rtol=0, atol=0)
    torch.testing.assert_close(c_n, c, rtol=0, atol=0)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_recurrence_from_the_input_side_is_the_reference(reverse, packed):
    """The tests' split of the reference (the input side, then the recurrence over it, as the
    layer computes it) is the reference itself; in fp64, _reference is the reference."""
    d = ln_inputs(4, 3, 5, 6, seed=12)
    args = _args(d, torch.float64, False)
    bs = None
    if packed:
        bs = _batch_sizes([4, 2, 1])
        args[0] = torch.rand(int(bs.sum()), 5, dtype=torch.float64) * 2 - 1
    want = reference.layer_norm_lstm_layer(*args, reverse=reverse, batch_sizes=bs)
    xp = _xp(args[0], args[3], args[5], args[8])
    got = _recurrence(xp, *args[1:3], args[4], *args[6:8], args[9], reverse, bs)
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
    d = ln_inputs(T, B, I, H, bias=bias, seed=T * 100 + B)
    args = _args(d, dtype, True)
    ref = _ref(args)
    with fusedrnn.backend("cpu"):
        y, h_n, c_n = F.layer_norm_lstm_layer(*args, reverse=reverse)
    assert y.dtype == dtype and y.shape == (T, B, H)
    assert h_n.shape == (B, H) and c_n.shape == (B, H) and c_n.dtype == dtype
    yr, hr, cr = _reference(ref, dtype, reverse)
    assert_close(y, yr, dtype)
    assert_close(h_n, hr, dtype)
    assert_close(c_n, cr, dtype)
    ws = _weights(y.shape, h_n.shape, c_n.shape)
    _loss((y, h_n, c_n), ws).backward()
    _loss((yr, hr, cr), ws).backward()
    _compare_grads(args, ref, dtype)


# ------------------------------------------------------------------ the CUDA kernels

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,B,I,H,bias", [(3, 1, 3, 7, True), (2, 19, 9, 13, False),
                                          (2, 5, 5, 33, True)])
@pytest.mark.parametrize("reverse", [False, True])
def test_kernels_against_reference(kernel_backend, dtype, T, B, I, H, bias, reverse, tf32):
    """The product and row kernels, under SIMT here and on CUDA where there is a GPU: H not a
    multiple of the 16-unit tiles, 4H over and under a row block's 256 threads, batches of one
    and of several row tiles, the half types and TF32 (tolerance as fp16's)."""
    if tf32 and dtype != torch.float32:
        pytest.skip("TF32 applies to fp32 only")
    dev = device_of(kernel_backend)
    d = ln_inputs(T, B, I, H, bias=bias, seed=T * 10 + B)
    args = _args(d, dtype, True, dev)
    ref = _ref(args)
    with fusedrnn.backend(kernel_backend):
        y, h_n, c_n = F.layer_norm_lstm_layer(*args, reverse=reverse)
    assert y.device.type == dev and y.dtype == dtype and c_n.dtype == dtype
    yr, hr, cr = _reference(ref, dtype, reverse)
    tol = torch.float16 if tf32 and dtype == torch.float32 else dtype
    assert_close(y, yr, tol)
    assert_close(h_n, hr, tol)
    assert_close(c_n, cr, tol)
    ws = _weights(y.shape, h_n.shape, c_n.shape, seed=2)
    with fusedrnn.backend(kernel_backend):
        _loss((y, h_n, c_n), [w.to(dev) for w in ws]).backward()
    _loss((yr, hr, cr), ws).backward()
    _compare_grads(args, ref, tol)


def test_tf32_changes_the_simt_results():
    """Sanity of the tf32 cases above: TF32 does reach these kernels (the fp32 results differ
    with it on), so the ieee cases check IEEE fp32 and the tf32 cases the tensor-core path."""
    _skip_unless("simt")
    d = ln_inputs(3, 5, 5, 13, seed=3)
    args = _args(d, torch.float32, False)
    with fusedrnn.backend("simt"):
        a = F.layer_norm_lstm_layer(*args)[0]
        with tf32_rnns():
            b = F.layer_norm_lstm_layer(*args)[0]
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
    d = ln_inputs(1, len(lengths), I, H, bias=bias, seed=3)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(N, I, generator=g, dtype=torch.float64).mul(2).sub(1).requires_grad_()
    args = [x] + _args(d, torch.float64, True)[1:]
    ref = _ref(args)
    with fusedrnn.backend(backend):
        y, h_n, c_n = F.layer_norm_lstm_layer(*args, reverse=reverse, batch_sizes=batch_sizes)
    assert y.shape == (N, H) and h_n.shape == (5, H) and c_n.shape == (5, H)
    yr, hr, cr = reference.layer_norm_lstm_layer(*ref, reverse=reverse,
                                                 batch_sizes=batch_sizes)
    assert_close(y, yr, torch.float64)
    assert_close(h_n, hr, torch.float64)
    assert_close(c_n, cr, torch.float64)
    ws = _weights(y.shape, h_n.shape, c_n.shape, seed=5)
    with fusedrnn.backend(backend):
        _loss((y, h_n, c_n), ws).backward()
    _loss((yr, hr, cr), ws).backward()
    _compare_grads(args, ref, torch.float64)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck(backend, reverse):
    """First and second derivatives by finite differences, every input (x, h0, c0, the two
    weights, the three gains, both biases); H = 3 (LN over 2 cells would be degenerate)."""
    _skip_unless(backend)
    d = ln_inputs(3, 2, 2, 3, seed=7 + reverse)
    args = tuple(_args(d, torch.float64, True))

    def fn(*a):
        with fusedrnn.backend(backend):
            return F.layer_norm_lstm_layer(*a, reverse=reverse)
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


def test_gradcheck_packed_without_bias():
    lengths = [3, 1, 2]
    batch_sizes = _batch_sizes(lengths)
    H = 3
    d = ln_inputs(1, 3, 2, H, bias=False, seed=5)
    g = torch.Generator().manual_seed(6)
    x = torch.rand(int(batch_sizes.sum()), 2, generator=g, dtype=torch.float64) * 2 - 1
    x.requires_grad_()
    args = (x, *_args(d, torch.float64, True)[1:8])
    for reverse in (False, True):
        def fn(*a):
            return F.layer_norm_lstm_layer(*a, reverse=reverse, batch_sizes=batch_sizes)
        assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_create_graph_matches_reference(backend):
    """create_graph=True (the backward recomputed with plain ops, functional._ln_lstm_step):
    first-order gradients and those of a gradient penalty against the reference's, dense and
    packed. gradcheck and gradgradcheck alone cannot tell a wrong recomputation (it is
    differentiated consistently with itself)."""
    _skip_unless(backend)
    H = 4
    lengths = [3, 2, 2]
    batch_sizes = _batch_sizes(lengths)
    for reverse, packed, bias in ((False, False, True), (True, False, False),
                                  (False, True, False), (True, True, True)):
        d = ln_inputs(3, 3, 3, H, bias=bias, seed=21 + reverse)
        args = _args(d, torch.float64, True)
        if packed:
            g = torch.Generator().manual_seed(22)
            args[0] = (torch.rand(int(batch_sizes.sum()), 3, generator=g, dtype=torch.float64)
                       * 2 - 1).requires_grad_()
        ref = _ref(args)
        bs = batch_sizes if packed else None
        names = [n for n, t in zip(NAMES, args) if t is not None]
        grads = []
        for fn, a in ((F.layer_norm_lstm_layer, args), (reference.layer_norm_lstm_layer, ref)):
            leaves = [t for t in a if t is not None]
            with fusedrnn.backend(backend):
                out = fn(*a, reverse=reverse, batch_sizes=bs)
                ws = _weights(*(o.shape for o in out), seed=4)
                first = torch.autograd.grad(_loss(out, ws), leaves, create_graph=True)
                penalty = sum((f * f).sum() for f in first)
                grads.append((first, torch.autograd.grad(penalty, leaves)))
        for order in (0, 1):
            for name, got, want in zip(names, grads[0][order], grads[1][order]):
                assert_close(got, want, torch.float64,
                              msg=f"order {order + 1}, reverse={reverse}, packed={packed}: "
                                  f"d{name}")


def test_empty_batch():
    """A batch of 0, as torch.nn.LSTM accepts: empty outputs of the right shapes."""
    m = fusedrnn.LayerNormLSTM(3, 5, num_layers=2)
    out, (h_n, c_n) = m(torch.randn(4, 0, 3))
    assert out.shape == (4, 0, 5) and h_n.shape == (2, 0, 5) and c_n.shape == (2, 0, 5)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_no_grad_forward_equals_grad_forward(backend):
    _skip_unless(backend)
    d = ln_inputs(6, 5, 4, 9, dtype=torch.float32, seed=9)
    args = _args(d, torch.float32, True)
    with fusedrnn.backend(backend):
        y, h, c = F.layer_norm_lstm_layer(*args)
        assert y.requires_grad and c.requires_grad
        with torch.no_grad():
            y0, h0, c0 = F.layer_norm_lstm_layer(*args)
        assert not y0.requires_grad
        with torch.inference_mode():
            y1, h1, c1 = F.layer_norm_lstm_layer(*args)
        # Frozen weights and a plain x: nothing requires grad either.
        y2, h2, c2 = F.layer_norm_lstm_layer(*_args(d, torch.float32, False))
    for got in ((y0, h0, c0), (y1, h1, c1), (y2, h2, c2)):
        for a, b in zip(got, (y, h, c)):
            torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_in_place_change_of_the_output_keeps_gradients_right(backend):
    _skip_unless(backend)
    d = ln_inputs(5, 4, 3, 6, seed=5)
    args = _args(d, torch.float64, True)
    ref = _ref(args)
    with fusedrnn.backend(backend):
        y, h_n, c_n = F.layer_norm_lstm_layer(*args)
        y.mul_(2)
        h_n.add_(1)
        c_n.mul_(-1)
        (y.sum() + (h_n * h_n).sum() + (c_n * c_n * c_n).sum()).backward()
    yr, hr, cr = reference.layer_norm_lstm_layer(*ref)
    ((yr * 2).sum() + ((hr + 1) * (hr + 1)).sum() - (cr * cr * cr).sum()).backward()
    _compare_grads(args, ref, torch.float64)


# ------------------------------------------------------------------ the ops

def _ops_case(backend, packed, seed=8, H=7, B=5, bias=True):
    """(device, batch_sizes, fp64 leaves x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, bias, b_c)."""
    dev = device_of(backend)
    d = ln_inputs(4, B, 4, H, bias=bias, seed=seed)
    batch_sizes = None
    if packed:
        batch_sizes = _batch_sizes([4, 4, 3, 2, 1][:B])
        g = torch.Generator().manual_seed(seed + 1)
        d["x"] = torch.rand(int(batch_sizes.sum()), 4, generator=g, dtype=torch.float64) * 2 - 1
    return dev, batch_sizes, _args(d, torch.float64, True)


def _cells_of_reference(leaves, reverse, batch_sizes):
    """c_t of every step (in the layout of y), from the reference layer run with c as output."""
    x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, bias, b_c = leaves

    def cell(xt, h, c):
        h2, c2 = reference.layer_norm_lstm_cell(xt, h, c, w_ih, w_hh, g_ih, g_hh, g_c, bias, b_c)
        return c2, h2  # the first state is the output: c
    return reference._scan(lambda xt, c, h: cell(xt, h, c), x, (c0, h0), reverse, batch_sizes,
                           w_hh.shape[1])[0]


@pytest.mark.parametrize("backend", ["cpu", "simt", "cuda"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_ops_against_reference(backend, packed, reverse, bias):
    """ln_lstm_forward's y, h_n, c_n and saved gates (i, f, g, o), gh (= h_{t-1} W_hh^T), cells
    (c_t) and stats (mean and rstd of gh's row and of c_t's), and ln_lstm_backward's dxp, dh0,
    dc0, dw_hh, dg_hh, dg_c, db_c (dxp carried back through the input side to x, w_ih, g_ih and
    bias), against the reference in fp64."""
    _skip_unless(backend)
    dev, batch_sizes, leaves = _ops_case(backend, packed, bias=bias)
    ref = _ref(leaves)
    x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, b, b_c = [a.detach().clone().requires_grad_()
                                                      if a is not None else None for a in ref]
    xp = _xp(x, w_ih, g_ih, b)
    H = h0.shape[1]
    on = lambda t: None if t is None else t.detach().to(dev)  # noqa: E731
    y, h_n, c_n, gates, gh, cells, stats = ops.ln_lstm_forward(
        on(xp), on(h0), on(c0), on(w_hh), on(g_hh), on(g_c), on(b_c), reverse, backend,
        batch_sizes, True)
    yr, hr, cr = reference.layer_norm_lstm_layer(*ref, reverse=reverse, batch_sizes=batch_sizes)
    assert_close(y, yr, torch.float64)
    assert_close(h_n, hr, torch.float64)
    assert_close(c_n, cr, torch.float64)
    lead = tuple(y.shape[:-1])
    assert gates.shape == lead + (4 * H,) and gh.shape == lead + (4 * H,)
    assert cells.shape == lead + (H,) and stats.shape == lead + (4,)
    assert all(t.dtype == torch.float64 for t in (gates, gh, cells, stats))
    # The saved tensors against their definitions.
    with torch.no_grad():
        hprev = _prev_states(yr, h0, reverse, batch_sizes)
        want_gh = hprev @ w_hh.t()
        assert_close(gh, want_gh, torch.float64, msg="gh = h_{t-1} W_hh^T")
        mh, rh = _row_stats(want_gh)
        assert_close(stats[..., 0], mh, torch.float64, msg="mean of gh's row")
        assert_close(stats[..., 1], rh, torch.float64, msg="rstd of gh's row")
        a = xp + g_hh * (want_gh - mh[..., None]) * rh[..., None]
        want = [torch.sigmoid(a[..., :H]), torch.sigmoid(a[..., H:2 * H]),
                torch.tanh(a[..., 2 * H:3 * H]), torch.sigmoid(a[..., 3 * H:])]
        for k, name in enumerate("ifgo"):
            assert_close(gates[..., k * H:(k + 1) * H], want[k], torch.float64, msg=name)
        want_c = _cells_of_reference(ref, reverse, batch_sizes)
        assert_close(cells, want_c, torch.float64, msg="cells")
        mc, rc = _row_stats(want_c)
        assert_close(stats[..., 2], mc, torch.float64, msg="mean of c's row")
        assert_close(stats[..., 3], rc, torch.float64, msg="rstd of c's row")

    ws = _weights(y.shape, h_n.shape, c_n.shape, seed=3)
    dy, dh_n, dc_n = ws
    grads = ops.ln_lstm_backward(dy.to(dev), dh_n.to(dev), dc_n.to(dev), on(h0), on(c0),
                                 on(w_hh), on(g_hh), on(g_c), on(b_c), y, gates, gh, cells,
                                 stats, reverse, backend, batch_sizes)
    dxp, dh0, dc0, dw_hh, dg_hh, dg_c, db_c = grads
    assert dxp.shape == xp.shape and dh0.shape == h0.shape and dc0.shape == c0.shape
    assert dw_hh.shape == w_hh.shape and dg_hh.shape == g_hh.shape
    assert dg_c.shape == g_c.shape and db_c.shape == (H,)  # [H] also without b_c
    _loss((yr, hr, cr), ws).backward()
    for name, got, leaf in (("dh0", dh0, 1), ("dc0", dc0, 2), ("dw_hh", dw_hh, 4),
                            ("dg_hh", dg_hh, 6), ("dg_c", dg_c, 7), ("db_c", db_c, 9)):
        if ref[leaf] is not None:
            assert_close(got, ref[leaf].grad, torch.float64, msg=name)
    leaves_in = [t for t in (x, w_ih, g_ih, b) if t is not None]
    names_in = ["x", "w_ih", "g_ih", "bias"][:len(leaves_in)]
    for name, got, leaf in zip(names_in, torch.autograd.grad(xp, leaves_in, dxp.cpu()),
                               (0, 3, 5, 8)):
        assert_close(got, ref[leaf].grad, torch.float64, msg=f"d{name} through dxp")


@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("reverse", [False, True])
def test_ops_db_c_without_b_c(backend, reverse):
    """db_c is [H] also without b_c: the gradient b_c = 0 would get (the op's contract)."""
    _skip_unless(backend)
    _, _, leaves = _ops_case(backend, False, seed=13, bias=False)
    x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, _, _ = [a.detach() if a is not None else None
                                                    for a in leaves]
    H = h0.shape[1]
    xp = _xp(x, w_ih, g_ih, None)
    zero = torch.zeros(H, dtype=torch.float64, requires_grad=True)
    out = ops.ln_lstm_forward(xp, h0, c0, w_hh, g_hh, g_c, None, reverse, backend, None, True)
    ws = _weights(*(o.shape for o in out[:3]), seed=14)
    db_c = ops.ln_lstm_backward(*ws, h0, c0, w_hh, g_hh, g_c, None, *out[:1], *out[3:], reverse,
                                backend, None)[6]
    yr, hr, cr = reference.layer_norm_lstm_layer(x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, None,
                                                 zero, reverse=reverse)
    assert_close(db_c, torch.autograd.grad(_loss((yr, hr, cr), ws), zero)[0], torch.float64)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_saved_dtypes_and_half_types(backend, dtype):
    """gates and cells in the input's dtype; gh and stats in the accumulation type (fp64 for
    fp64, else fp32), consistent with the saved gates and cells; the backward takes them."""
    _skip_unless(backend)
    _, _, leaves = _ops_case(backend, False, seed=15)
    x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, b, b_c = [a.detach() for a in leaves]
    xp = _xp(x, w_ih, g_ih, b)
    low = [t.to(dtype) for t in (xp, h0, c0, w_hh, g_hh, g_c, b_c)]
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    y, h_n, c_n, gates, gh, cells, stats = ops.ln_lstm_forward(*low, False, backend, None, True)
    assert y.dtype == h_n.dtype == c_n.dtype == gates.dtype == cells.dtype == dtype
    assert gh.dtype == acc and stats.dtype == acc
    tol = torch.float16 if dtype == torch.bfloat16 else dtype  # gh: products of rounded h
    hprev = _prev_states(y.double(), low[1].double(), False, None)
    assert_close(gh, hprev @ low[3].double().t(), dtype)
    mh, rh = _row_stats(gh.double())
    assert_close(stats[..., 0], mh, tol)
    assert_close(stats[..., 1], rh, tol, scale=4)
    # cells are rounded to the dtype; their stats are those of the unrounded cells.
    mc, rc = _row_stats(cells.double())
    assert_close(stats[..., 2], mc, dtype)
    assert_close(stats[..., 3], rc, dtype, scale=8)
    dy, dh_n, dc_n = [w.to(dtype) for w in _weights(y.shape, h_n.shape, c_n.shape, seed=16)]
    g = ops.ln_lstm_backward(dy, dh_n, dc_n, *low[1:], y, gates, gh, cells, stats, False, backend,
                             None)
    assert all(t.dtype == dtype for t in g)
    assert all(bool(torch.isfinite(t).all()) for t in g)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_ops_save_false(backend, packed, dtype):
    """save=False: gates, gh, cells and stats come back empty, y, h_n, c_n as with save=True."""
    _skip_unless(backend)
    _, batch_sizes, leaves = _ops_case(backend, packed, seed=12)
    x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, b, b_c = [a.detach() for a in leaves]
    low = [t.to(dtype) for t in (_xp(x, w_ih, g_ih, b), h0, c0, w_hh, g_hh, g_c, b_c)]
    for reverse in (False, True):
        a = (*low, reverse, backend, batch_sizes)
        y, h, c, *saved = ops.ln_lstm_forward(*a, False)
        assert [t.numel() for t in saved] == [0, 0, 0, 0]
        y1, h1, c1, *saved1 = ops.ln_lstm_forward(*a, True)
        assert all(t.numel() > 0 for t in saved1)
        for p, q in ((y, y1), (h, h1), (c, c1)):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_ops_non_contiguous_inputs(backend):
    """The contract allows non-contiguous inputs: the same results as contiguous ones."""
    _skip_unless(backend)
    _, _, leaves = _ops_case(backend, False, seed=16)
    x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, b, b_c = [a.detach() for a in leaves]
    xp = _xp(x, w_ih, g_ih, b)
    args = (xp, h0, c0, w_hh, g_hh, g_c, b_c)

    def strided(t):  # same values, every other element of a buffer twice the size
        big = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
        big[..., ::2] = t
        return big[..., ::2]
    nc = [strided(t) for t in args]
    nc[3] = w_hh.t().contiguous().t()  # transposed layout
    assert not any(t.is_contiguous() for t in nc)
    want = ops.ln_lstm_forward(*args, False, backend, None, True)
    got = ops.ln_lstm_forward(*nc, False, backend, None, True)
    for p, q in zip(got, want):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
    dy, dh, dc = _weights(want[0].shape, want[1].shape, want[2].shape, seed=17)
    gw = ops.ln_lstm_backward(dy, dh, dc, h0, c0, w_hh, g_hh, g_c, b_c, want[0], *want[3:],
                              False, backend, None)
    gn = ops.ln_lstm_backward(strided(dy), strided(dh), strided(dc), nc[1], nc[2], nc[3], nc[4],
                              nc[5], nc[6], strided(want[0]), *[strided(t) for t in want[3:]],
                              False, backend, None)
    for p, q in zip(gn, gw):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


def _opcheck_cases(backend, dtype):
    _skip_unless(backend)
    for packed in (False, True):
        _, batch_sizes, leaves = _ops_case(backend, packed, seed=2, H=5, B=3)
        x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, b, b_c = [a.detach() for a in leaves]
        low = [t.to(dtype) for t in (_xp(x, w_ih, g_ih, b), h0, c0, w_hh, g_hh, g_c, b_c)]
        for reverse in (False, True):
            yield low, reverse, batch_sizes


@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_opcheck(backend, dtype):
    """torch.library.opcheck of both ops (the fake kernels' shapes and dtypes, the accumulation
    dtype of gh and stats included), dense and packed, with and without b_c."""
    for low, reverse, batch_sizes in _opcheck_cases(backend, dtype):
        a = (*low, reverse, backend, batch_sizes)
        y, hn, cn, gates, gh, cells, stats = ops.ln_lstm_forward(*a)
        torch.library.opcheck(ops.ln_lstm_forward, a)
        torch.library.opcheck(ops.ln_lstm_forward, (*low[:6], None, reverse, backend,
                                                    batch_sizes))
        torch.library.opcheck(ops.ln_lstm_backward,
                              (torch.randn_like(y), torch.randn_like(hn), torch.randn_like(cn),
                               *low[1:], y, gates, gh, cells, stats, reverse, backend,
                               batch_sizes))


@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_opcheck_save_false(backend, dtype):
    """opcheck of ln_lstm_forward(save=False): among others, the four empty outputs must be
    distinct tensors (the schema declares no aliasing between outputs)."""
    for low, reverse, batch_sizes in _opcheck_cases(backend, dtype):
        torch.library.opcheck(ops.ln_lstm_forward, (*low, reverse, backend, batch_sizes, False))


# ------------------------------------------------------------------ the modules

_PARAM_ORDER = ("weight_ih", "weight_hh", "gain_ih", "gain_hh", "gain_cell", "bias", "bias_cell")


def _params(m, layer, sfx):
    p = dict(m.named_parameters())
    return tuple(p.get(f"{n}_l{layer}{sfx}") for n in _PARAM_ORDER)


def _randomise(m, seed=0):
    """Gains in [0.5, 1.5] and bias_cell in [-0.5, 0.5]: away from their init (1, 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.startswith("gain"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) + 0.5)
            elif n.startswith("bias_cell"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) - 0.5)
    return m


def _stack_reference(m, x, h0, c0):
    """The module's stack from reference layers: x [T,B,I] time-major, h0, c0 [L*D,B,H]."""
    D = 2 if m.bidirectional else 1
    inp, hs, cs = x, [], []
    for layer in range(m.num_layers):
        ys = []
        for d, sfx in enumerate(("", "_reverse")[:D]):
            y, h, c = reference.layer_norm_lstm_layer(inp, h0[layer * D + d], c0[layer * D + d],
                                                      *_params(m, layer, sfx), reverse=d == 1)
            ys.append(y)
            hs.append(h)
            cs.append(c)
        inp = torch.cat(ys, -1)
    return inp, torch.stack(hs), torch.stack(cs)


CONFIGS = [(1, False), (1, True), (2, False), (2, True)]  # (num_layers, bidirectional)


@pytest.mark.parametrize("layers,bidir", CONFIGS)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_module_matches_reference(layers, bidir, batch_first, bias):
    torch.manual_seed(layers * 10 + bidir)
    H, I = 7, 5
    D = 2 if bidir else 1
    m = _randomise(fusedrnn.LayerNormLSTM(I, H, num_layers=layers, bias=bias,
                                          batch_first=batch_first,
                                          bidirectional=bidir).double(), seed=layers)
    T, B = 6, 5
    x = (torch.rand(B, T, I) if batch_first else torch.rand(T, B, I)).double()
    x = (x * 2 - 1).requires_grad_()
    h0 = (torch.rand(layers * D, B, H, dtype=torch.float64) - 0.5).requires_grad_()
    c0 = (torch.rand(layers * D, B, H, dtype=torch.float64) * 2 - 1).requires_grad_()
    out, (h_n, c_n) = m(x, (h0, c0))
    assert out.shape == ((B, T, D * H) if batch_first else (T, B, D * H))
    assert h_n.shape == c_n.shape == (layers * D, B, H)
    xt = x.transpose(0, 1) if batch_first else x
    want, want_h, want_c = _stack_reference(m, xt, h0, c0)
    assert_close(out, want.transpose(0, 1) if batch_first else want, torch.float64)
    assert_close(h_n, want_h, torch.float64)
    assert_close(c_n, want_c, torch.float64)
    ws = _weights(out.shape, h_n.shape, c_n.shape, seed=0)
    leaves = [x, h0, c0, *m.parameters()]
    got = torch.autograd.grad(_loss((out, h_n, c_n), ws), leaves)
    wy = ws[0].transpose(0, 1) if batch_first else ws[0]
    exp = torch.autograd.grad(_loss((want, want_h, want_c), (wy, *ws[1:])), leaves)
    names = ["x", "h0", "c0"] + [n for n, _ in m.named_parameters()]
    for n, a, b in zip(names, got, exp):
        assert_close(a, b, torch.float64, msg=f"d{n}")
    # hx=None is zeros.
    out0, (h0_n, c0_n) = m(x)
    z = torch.zeros_like(h0)
    want0, want0_h, want0_c = _stack_reference(m, xt, z, z)
    assert_close(out0, want0.transpose(0, 1) if batch_first else want0, torch.float64)
    assert_close(h0_n, want0_h, torch.float64)
    assert_close(c0_n, want0_c, torch.float64)


def test_module_fp32_and_unbatched_input():
    torch.manual_seed(1)
    H, I = 6, 4
    m = _randomise(fusedrnn.LayerNormLSTM(I, H, num_layers=2), seed=2)
    x = torch.rand(5, 3, I) * 2 - 1
    h0, c0 = torch.rand(2, 3, H) - 0.5, torch.rand(2, 3, H) * 2 - 1
    out, (h_n, c_n) = m(x, (h0, c0))
    assert out.dtype == h_n.dtype == c_n.dtype == torch.float32
    want, want_h, want_c = _stack_reference(copy.deepcopy(m).double(), x.double(), h0.double(),
                                            c0.double())
    assert_close(out, want, torch.float32)
    assert_close(h_n, want_h, torch.float32)
    assert_close(c_n, want_c, torch.float32)
    # Unbatched: 2-D input [T, I] and hx [L*D, H] each, as a batch of one.
    o1, (hn1, cn1) = m(x[:, 1], (h0[:, 1], c0[:, 1]))
    assert o1.shape == (5, H) and hn1.shape == cn1.shape == (2, H)
    assert_close(o1, out[:, 1], torch.float32)
    assert_close(hn1, h_n[:, 1], torch.float32)
    assert_close(cn1, c_n[:, 1], torch.float32)
    o2, (hn2, cn2) = m(x[:, 1])
    assert hn2.shape == cn2.shape == (2, H)
    assert_close(o2, m(x[:, 1:2])[0][:, 0], torch.float32)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_packed_unsorted_module_against_reference_per_sequence(backend):
    """The module, 2 layers, bidirectional, over a PackedSequence of unsorted lengths, against
    the same module's weights run through the reference layer by layer on each sequence alone
    (and the gradients of x, hx and every parameter)."""
    _skip_unless(backend)
    torch.manual_seed(3)
    H, I, layers, D = 7, 5, 2, 2
    m = _randomise(fusedrnn.LayerNormLSTM(I, H, num_layers=layers, bidirectional=True).double(),
                   seed=3)
    lengths = [4, 6, 2, 5]
    xs = [(torch.rand(L, I, dtype=torch.float64) * 2 - 1).requires_grad_() for L in lengths]
    packed = pack_sequence(xs, enforce_sorted=False)
    # hx in the user's batch order (the module reorders it to the packed order and back).
    h0 = (torch.rand(layers * D, len(lengths), H, dtype=torch.float64) - 0.5).requires_grad_()
    c0 = (torch.rand(layers * D, len(lengths), H, dtype=torch.float64) * 2 - 1).requires_grad_()
    leaves = xs + [h0, c0] + list(m.parameters())
    with fusedrnn.backend(backend):
        out, (h_n, c_n) = m(packed, (h0, c0))
        ys, out_lengths = pad_packed_sequence(out)
        assert out_lengths.tolist() == lengths
        assert h_n.shape == c_n.shape == (layers * D, len(lengths), H)
        loss = (sum((ys[:L, b] * (b + 1)).sum() for b, L in enumerate(lengths))
                + h_n.pow(2).sum() + (c_n * 3).sum())
        got = torch.autograd.grad(loss, leaves)
    ref_loss = 0
    for b, x in enumerate(xs):  # each sequence alone, through the reference
        want, want_h, want_c = _stack_reference(m, x[:, None], h0[:, b:b + 1], c0[:, b:b + 1])
        assert_close(ys[:lengths[b], b], want[:, 0], torch.float64)
        assert_close(h_n[:, b], want_h[:, 0], torch.float64)
        assert_close(c_n[:, b], want_c[:, 0], torch.float64)
        ref_loss = ref_loss + (want * (b + 1)).sum() + want_h.pow(2).sum() + (want_c * 3).sum()
    exp = torch.autograd.grad(ref_loss, leaves)
    names = [f"x{b}" for b in range(len(xs))] + ["h0", "c0"] + [n for n, _ in
                                                                  m.named_parameters()]
    for n, a, e in zip(names, got, exp):
        assert_close(a, e, torch.float64, msg=f"d{n}")


@pytest.mark.parametrize("layers,bidir", CONFIGS)
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_keys_shapes_and_init(layers, bidir, bias):
    H, I = 33, 10
    D = 2 if bidir else 1
    torch.manual_seed(0)
    m = fusedrnn.LayerNormLSTM(I, H, num_layers=layers, bias=bias, bidirectional=bidir)
    want = {}
    for layer in range(layers):
        for sfx in ("", "_reverse")[:D]:
            want[f"weight_ih_l{layer}{sfx}"] = (4 * H, I if layer == 0 else D * H)
            want[f"weight_hh_l{layer}{sfx}"] = (4 * H, H)
            want[f"gain_ih_l{layer}{sfx}"] = (4 * H,)
            want[f"gain_hh_l{layer}{sfx}"] = (4 * H,)
            want[f"gain_cell_l{layer}{sfx}"] = (H,)
            if bias:
                want[f"bias_l{layer}{sfx}"] = (4 * H,)
                want[f"bias_cell_l{layer}{sfx}"] = (H,)
    sd = m.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == want
    assert {n: tuple(p.shape) for n, p in m.named_parameters()} == want
    k = H ** -0.5
    for n, p in m.named_parameters():
        assert p.dtype == torch.float32 and p.requires_grad, n
        if n.startswith("gain"):
            assert bool((p == 1).all()), n
        elif n.startswith("bias_cell"):
            assert bool((p == 0).all()), n
        else:  # weight_ih, weight_hh, bias: uniform(-k, k) as torch.nn
            assert p.abs().max() <= k, n
            assert 0.4 * k < p.abs().mean() < 0.6 * k, n  # mean |p| = k/2
            assert p.max() > 0.9 * k and p.min() < -0.9 * k, n  # both signs, to the ends
    # reset_parameters restores the init.
    _randomise(m)
    m.reset_parameters()
    assert all(bool((p == 1).all()) for n, p in m.named_parameters() if n.startswith("gain"))
    # Load into a fresh module: identical outputs.
    _randomise(m, seed=1)
    m2 = fusedrnn.LayerNormLSTM(I, H, num_layers=layers, bias=bias, bidirectional=bidir)
    m2.load_state_dict(m.state_dict())
    x = torch.rand(3, 2, I) * 2 - 1
    torch.testing.assert_close(m2(x)[0], m(x)[0], rtol=0, atol=0)
    # device / dtype arguments.
    m3 = fusedrnn.LayerNormLSTM(I, H, num_layers=layers, bias=bias, bidirectional=bidir,
                                dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in m3.parameters())
    r = repr(m)
    assert r.startswith(f"LayerNormLSTM({I}, {H}")
    assert ("num_layers=2" in r) == (layers == 2) and ("bidirectional=True" in r) == bidir
    assert ("bias=False" in r) == (not bias)


def test_dropout_only_in_training():
    torch.manual_seed(4)
    H, I = 6, 4
    m = _randomise(fusedrnn.LayerNormLSTM(I, H, num_layers=2, dropout=0.5).double(), seed=4)
    x = torch.rand(5, 3, I, dtype=torch.float64) * 2 - 1
    z = x.new_zeros(2, 3, H)
    m.eval()
    a, (ha, ca) = m(x)
    b, _ = m(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    want, _, _ = _stack_reference(m, x, z, z)
    assert_close(a, want, torch.float64)
    m.train()
    torch.manual_seed(123)
    c, (hc, cc) = m(x)
    assert not torch.allclose(a, c)
    # torch.nn's dropout on the first layer's output, with the same RNG draws.
    torch.manual_seed(123)
    p = [_params(m, layer, "") for layer in range(2)]
    y0, h0n, c0n = reference.layer_norm_lstm_layer(x, z[0], z[0], *p[0])
    y0 = torch.nn.functional.dropout(y0, 0.5, training=True)
    y1, h1n, c1n = reference.layer_norm_lstm_layer(y0, z[0], z[0], *p[1])
    assert_close(c, y1, torch.float64)
    assert_close(hc, torch.stack([h0n, h1n]), torch.float64)
    assert_close(cc, torch.stack([c0n, c1n]), torch.float64)
    # No dropout in training with dropout=0.
    m0 = fusedrnn.LayerNormLSTM(I, H, num_layers=2).double()
    m0.load_state_dict(m.state_dict())
    m0.train()
    assert_close(m0(x)[0], a, torch.float64)


def test_module_no_grad_equals_grad_forward():
    torch.manual_seed(5)
    m = _randomise(fusedrnn.LayerNormLSTM(3, 8, num_layers=2, bidirectional=True), seed=5)
    x = torch.rand(4, 3, 3) * 2 - 1
    out, (h, c) = m(x)
    assert out.requires_grad
    with torch.no_grad():
        out0, (h0, c0) = m(x)
    assert not out0.requires_grad
    for p, q in ((out0, out), (h0, h), (c0, c)):
        torch.testing.assert_close(p, q.detach(), rtol=1e-5, atol=1e-6)


def test_module_in_place_change_of_the_output():
    torch.manual_seed(6)
    H = 5
    m = _randomise(fusedrnn.LayerNormLSTM(4, H, num_layers=2).double(), seed=6)
    x = (torch.rand(4, 3, 4, dtype=torch.float64) * 2 - 1).requires_grad_()
    out, (h_n, c_n) = m(x)
    out.mul_(3)
    c_n.add_(2)
    leaves = [x, *m.parameters()]
    got = torch.autograd.grad(out.sum() + h_n.sum() + c_n.pow(2).sum(), leaves)
    z = x.new_zeros(2, 3, H)
    want, want_h, want_c = _stack_reference(m, x, z, z)
    exp = torch.autograd.grad((want * 3).sum() + want_h.sum() + (want_c + 2).pow(2).sum(), leaves)
    for a, b in zip(got, exp):
        assert_close(a, b, torch.float64)


def test_compiles_without_graph_breaks():
    """torch.compile(fullgraph=True): forward and backward as the eager module's."""
    # The modules share _FusedRNNBase.forward: after the other files' compiled modules, its
    # code object would reach dynamo's recompile limit (a fullgraph error, not a graph break).
    torch._dynamo.reset()
    torch.manual_seed(5)
    m = _randomise(fusedrnn.LayerNormLSTM(3, 6, num_layers=2, bidirectional=True), seed=7)
    x = torch.rand(5, 2, 3).mul(2).sub(1).requires_grad_()
    compiled = torch.compile(m, fullgraph=True)
    y, (h, c) = compiled(x)
    y2, (h2, c2) = m(x)
    for p, q in ((y, y2), (h, h2), (c, c2)):
        assert_close(p, q, torch.float32)
    (y.sum() + c.sum()).backward()
    got = [x.grad] + [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    x2 = x.detach().clone().requires_grad_()
    y2, (_, c2) = m(x2)
    (y2.sum() + c2.sum()).backward()
    for a, b in zip(got, [x2.grad] + [p.grad for p in m.parameters()]):
        assert_close(a, b, torch.float32)


@pytest.mark.parametrize("what", ["module", "cell"])
def test_onnx_export_refuses_clearly(what):
    import io
    m, x = ((fusedrnn.LayerNormLSTM(3, 4), torch.randn(5, 2, 3)) if what == "module" else
            (fusedrnn.LayerNormLSTMCell(3, 4), torch.randn(2, 3)))
    with pytest.raises(NotImplementedError, match="ONNX"):
        torch.onnx.export(m, (x,), io.BytesIO(), dynamo=False)


# ------------------------------------------------------------------ the cell

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_cell_matches_reference(bias, backend):
    _skip_unless(backend)
    torch.manual_seed(7)
    H, I = 8, 5
    c = fusedrnn.LayerNormLSTMCell(I, H, bias=bias).double()
    shapes = {"weight_ih": (4 * H, I), "weight_hh": (4 * H, H), "gain_ih": (4 * H,),
              "gain_hh": (4 * H,), "gain_cell": (H,)}
    if bias:
        shapes.update(bias=(4 * H,), bias_cell=(H,))
    assert {n: tuple(p.shape) for n, p in c.named_parameters()} == shapes
    k = H ** -0.5
    p = dict(c.named_parameters())
    assert p["weight_ih"].abs().max() <= k and p["weight_hh"].abs().max() <= k
    assert bool((p["gain_cell"] == 1).all()) and bool((p["gain_ih"] == 1).all())
    if bias:
        assert p["bias"].abs().max() <= k and bool((p["bias_cell"] == 0).all())
    _randomise(c, seed=8)
    w = [p.get(n) for n in _PARAM_ORDER]
    x = (torch.rand(3, I, dtype=torch.float64) * 2 - 1).requires_grad_()
    h = (torch.rand(3, H, dtype=torch.float64) - 0.5).requires_grad_()
    cc = (torch.rand(3, H, dtype=torch.float64) * 2 - 1).requires_grad_()
    with fusedrnn.backend(backend):
        got = c(x, (h, cc))
        got_1 = c(x[0], (h[0], cc[0]))  # unbatched
        got_0 = c(x)  # hx=None: zeros
    want = reference.layer_norm_lstm_cell(x, h, cc, *w)
    for a, b in zip(got, want):
        assert_close(a, b, torch.float64)
    assert got_1[0].shape == got_1[1].shape == (H,)
    for a, b in zip(got_1, want):
        assert_close(a, b[0], torch.float64)
    z = torch.zeros_like(h)
    for a, b in zip(got_0, reference.layer_norm_lstm_cell(x, z, z, *w)):
        assert_close(a, b, torch.float64)
    leaves = [x, h, cc, *c.parameters()]
    ws = _weights((3, H), (3, H), seed=9)
    for a, b in zip(torch.autograd.grad(_loss(got, ws), leaves),
                    torch.autograd.grad(_loss(want, ws), leaves)):
        assert_close(a, b, torch.float64)
    r = repr(c)
    assert r.startswith(f"LayerNormLSTMCell({I}, {H}") and ("bias=False" in r) == (not bias)


# ------------------------------------------------------------------ bad inputs

def test_module_bad_inputs():
    m = fusedrnn.LayerNormLSTM(4, 5, num_layers=2)
    x = torch.randn(3, 2, 4)
    good = torch.randn(2, 2, 5)
    for bad in [(1, 2, 5), (2, 3, 5), (2, 2, 6)]:
        with pytest.raises(RuntimeError, match="Expected hidden"):
            m(x, (torch.randn(bad), good))
        with pytest.raises(RuntimeError, match="Expected cell"):
            m(x, (good, torch.randn(bad)))
    h = torch.randn(2, 5)  # unbatched hidden state with batched input
    with pytest.raises(RuntimeError, match="3-D"):
        m(x, (h, h))
    with pytest.raises(RuntimeError):  # batched hidden state with unbatched input
        m(x[:, 0], (good, good))
    for bad in [good, (good,), (good, good, good), (good, None)]:
        with pytest.raises(TypeError, match="tuple"):
            m(x, bad)
    with pytest.raises(RuntimeError, match="input_size"):
        m(torch.randn(3, 2, 6))
    with pytest.raises(ValueError, match="2D or 3D"):
        m(torch.randn(3, 2, 4, 1))
    with pytest.raises((ValueError, RuntimeError), match="type"):
        m(x.double())
    m(x, (good, good))  # fine


def test_constructor_errors():
    for kw in (dict(hidden_size=0), dict(input_size=0), dict(num_layers=0),
               dict(dropout=1.5), dict(dropout=-0.1)):
        args = dict(input_size=4, hidden_size=5)
        args.update(kw)
        with pytest.raises(ValueError):
            fusedrnn.LayerNormLSTM(**args)
    with pytest.raises(ValueError):
        fusedrnn.LayerNormLSTMCell(4, 0)


def test_cell_bad_inputs():
    c = fusedrnn.LayerNormLSTMCell(4, 5)
    x = torch.randn(3, 4)
    good = torch.randn(3, 5)
    for bad in [(2, 5), (3, 6)]:
        with pytest.raises(RuntimeError):
            c(x, (torch.randn(bad), good))
        with pytest.raises(RuntimeError):
            c(x, (good, torch.randn(bad)))
    with pytest.raises(ValueError):
        c(x, (torch.randn(1, 3, 5), good))
    with pytest.raises(TypeError):
        c(x, good)
    with pytest.raises(RuntimeError, match="input_size"):
        c(torch.randn(3, 6))
    with pytest.raises(ValueError):
        c(torch.randn(2, 3, 4))
    c(x, (good, good))  # fine


def test_op_bad_inputs():
    _, _, leaves = _ops_case("cpu", False, seed=2)
    x, h0, c0, w_ih, w_hh, g_ih, g_hh, g_c, b, b_c = [a.detach() for a in leaves]
    xp = _xp(x, w_ih, g_ih, b)
    good = dict(xp=xp, h0=h0, c0=c0, w_hh=w_hh, g_hh=g_hh, g_c=g_c, b_c=b_c)
    H = h0.shape[1]
    bads = [("g_hh", g_hh[:-1]), ("g_c", g_c[:-1]), ("b_c", b_c[:-1]), ("g_c", g_hh),
            ("xp", xp[..., :-1]), ("h0", h0[:-1]), ("c0", c0[:, :-1]), ("w_hh", w_hh[:-1]),
            ("g_hh", g_hh.float()), ("b_c", b_c.float()), ("c0", c0.float()),
            ("g_c", g_c[None].expand(2, H))]
    for name, t in bads:
        a = dict(good, **{name: t})
        with pytest.raises(RuntimeError):
            ops.ln_lstm_forward(*a.values(), False, "cpu")
    y, h_n, c_n, gates, gh, cells, stats = ops.ln_lstm_forward(*good.values(), False, "cpu")
    grads = (torch.ones_like(y), torch.ones_like(h_n), torch.ones_like(c_n))
    rest = (h0, c0, w_hh, g_hh, g_c, b_c, y)
    ops.ln_lstm_backward(*grads, *rest, gates, gh, cells, stats)  # fine
    for saved in ((gates[..., :-1], gh, cells, stats), (gates, gh.float(), cells, stats),
                  (gates, gh, cells, stats[..., :3]), (gates, gh, cells[:1], stats)):
        with pytest.raises(RuntimeError):
            ops.ln_lstm_backward(*grads, *rest, *saved)
    with pytest.raises(RuntimeError):
        ops.ln_lstm_backward(grads[0], grads[1], grads[2][:1], *rest, gates, gh, cells, stats)
