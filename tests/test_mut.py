"""The MUT1, MUT2 and MUT3 cells (Jozefowicz et al. 2015): the ops mut_forward/mut_backward,
fusedrnn.functional.mut_layer, the modules fusedrnn.MUT1/2/3 and the cells MUT1Cell/2/3, on every
backend (the CPU backend; the CUDA kernels under SIMT, and on a GPU where there is one), against
fusedrnn.reference.mut_cell/mut_layer (written from the equations, themselves checked against the
equations written out by hand below) in every dtype, dense and packed, both directions, odd
sizes; gradcheck and gradgradcheck in fp64; opcheck; the modules' parameters, state_dict,
initialisation, dropout, PackedSequence and batch_first handling; torch.compile.

Gate order r, z, n everywhere. Parameters (rows of H each): MUT1 w_ih (W_xr, W_xz), w_hh (W_hr,
W_hh); MUT2 w_ih (W_xz, W_xh), w_hh (W_hr, W_hz, W_hh); MUT3 w_ih (W_xr, W_xz, W_xh), w_hh (W_hr,
W_hz, W_hh); bias (b_r, b_z, b_h) or None. MUT1 and MUT2 need input_size == hidden_size."""
import copy

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

import fusedrnn
from fusedrnn import functional as F
from fusedrnn import reference
from conftest import (skip_unless as _skip_unless,
                      batch_sizes as _batch_sizes,
                      prev_states as _prev_states)
from conftest import TOL, assert_close, device_of

ops = torch.ops.fusedrnn
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
VARIANTS = [1, 2, 3]
ROWS = {1: (2, 2), 2: (2, 3), 3: (3, 3)}  # rows of w_ih, w_hh in units of H


def _module(variant):
    return getattr(fusedrnn, f"MUT{variant}")


def _cell(variant):
    return getattr(fusedrnn, f"MUT{variant}Cell")


def mut_inputs(variant, T, B, I, H, dtype=torch.float64, bias=True, seed=0):
    """Fresh random inputs of one MUT layer (never zeros); weights scaled like torch.nn's init.
    MUT1 and MUT2 take I == H (their input feeds the hidden units directly)."""
    if variant in (1, 2):
        assert I == H, "MUT1 and MUT2 need input_size == hidden_size"
    g = torch.Generator().manual_seed(seed)
    k = H ** -0.5
    gi, gh = ROWS[variant]

    def rnd(*shape, scale=1.0):
        return ((torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale).to(dtype)

    return dict(x=rnd(T, B, I), h0=rnd(B, H, scale=0.8), w_ih=rnd(gi * H, I, scale=k),
                w_hh=rnd(gh * H, H, scale=k), bias=rnd(3 * H, scale=k) if bias else None)


def _args(d, dtype, grad, device="cpu"):
    out = []
    for k in ("x", "h0", "w_ih", "w_hh", "bias"):
        t = d[k]
        out.append(None if t is None else t.to(device=device, dtype=dtype).requires_grad_(grad))
    return out


def _ref(args):
    """The same (rounded) inputs in fp64 on the CPU, as leaves for the reference."""
    return [None if a is None else a.detach().double().cpu().requires_grad_() for a in args]


def _xp(x, w_ih, bias, variant):
    """The input side of the pre-activations (columns r, z, n, biases included) that
    mut_forward takes: MUT1 (W_xr x, W_xz x, tanh x), MUT2 (x, W_xz x, W_xh x), MUT3 W_ih x."""
    if variant == 1:
        w_r, w_z = w_ih.chunk(2)
        xp = torch.cat([x @ w_r.t(), x @ w_z.t(), torch.tanh(x)], -1)
    elif variant == 2:
        w_z, w_h = w_ih.chunk(2)
        xp = torch.cat([x, x @ w_z.t(), x @ w_h.t()], -1)
    else:
        xp = x @ w_ih.t()
    return xp if bias is None else xp + bias


def _compare_grads(args, ref, dtype, scale=4.0):
    for name, a, r in zip(("x", "h0", "w_ih", "w_hh", "bias"), args, ref):
        if a is not None:
            assert a.grad is not None, f"no gradient for {name}"
            assert_close(a.grad, r.grad, dtype, scale=scale, msg=f"d{name}")


# ------------------------------------------------------------------ the reference itself

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("bias", [True, False])
def test_reference_equations_of_one_step(variant, bias):
    """reference.mut_cell against the paper's equations written out by hand, one per variant."""
    H = 5
    I = H if variant < 3 else 4
    d = mut_inputs(variant, 1, 3, I, H, bias=bias, seed=variant)
    x, h, w_ih, w_hh = d["x"][0], d["h0"], d["w_ih"], d["w_hh"]
    W = lambda w, k: w[k * H:(k + 1) * H].T  # noqa: E731  (the k-th block, transposed)
    b = (lambda k: d["bias"][k * H:(k + 1) * H]) if bias else (lambda k: 0.0)
    sig, tanh = torch.sigmoid, torch.tanh
    if variant == 1:
        z = sig(x @ W(w_ih, 1) + b(1))
        r = sig(x @ W(w_ih, 0) + h @ W(w_hh, 0) + b(0))
        n = tanh((r * h) @ W(w_hh, 1) + tanh(x) + b(2))
    elif variant == 2:
        z = sig(x @ W(w_ih, 0) + h @ W(w_hh, 1) + b(1))
        r = sig(x + h @ W(w_hh, 0) + b(0))
        n = tanh((r * h) @ W(w_hh, 2) + x @ W(w_ih, 1) + b(2))
    else:
        z = sig(x @ W(w_ih, 1) + tanh(h) @ W(w_hh, 1) + b(1))
        r = sig(x @ W(w_ih, 0) + h @ W(w_hh, 0) + b(0))
        n = tanh((r * h) @ W(w_hh, 2) + x @ W(w_ih, 2) + b(2))
    want = n * z + h * (1 - z)
    got = reference.mut_cell(x, h, w_ih, w_hh, d["bias"], variant)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # The z / (1 - z) roles are not symmetric here: swapping them changes the result well
    # beyond the loosest tolerance, so a kernel computing the swapped cell cannot pass.
    swapped = n * (1 - z) + h * z
    assert (swapped - want).abs().max() > 10 * TOL[torch.float16]["atol"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("reverse", [False, True])
def test_reference_layer_is_its_cell_step_by_step(variant, reverse):
    H = 4
    d = mut_inputs(variant, 5, 3, H if variant < 3 else 6, H, seed=11)
    y, h_n = reference.mut_layer(d["x"], d["h0"], d["w_ih"], d["w_hh"], d["bias"], variant,
                                 reverse)
    h = d["h0"]
    for t in (range(4, -1, -1) if reverse else range(5)):
        h = reference.mut_cell(d["x"][t], h, d["w_ih"], d["w_hh"], d["bias"], variant)
        torch.testing.assert_close(y[t], h, rtol=0, atol=0)
    torch.testing.assert_close(h_n, h, rtol=0, atol=0)


@pytest.mark.parametrize("variant", [0, 4, "1", None])
def test_reference_rejects_unknown_variant(variant):
    d = mut_inputs(3, 2, 2, 3, 3)
    with pytest.raises(ValueError):
        reference.mut_cell(d["x"][0], d["h0"], d["w_ih"], d["w_hh"], d["bias"], variant)
    with pytest.raises(ValueError):
        reference.mut_layer(d["x"], d["h0"], d["w_ih"], d["w_hh"], d["bias"], variant)


# ------------------------------------------------------------------ the layer, CPU backend

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,B,H,I3", [(5, 1, 7, 3), (4, 19, 13, 10), (3, 5, 33, 17)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_against_reference(variant, dtype, T, B, H, I3, reverse, bias):
    I = I3 if variant == 3 else H
    d = mut_inputs(variant, T, B, I, H, bias=bias, seed=T * 100 + B + variant)
    args = _args(d, dtype, True)
    ref = _ref(args)
    with fusedrnn.backend("cpu"):
        y, h_n = F.mut_layer(*args, variant=variant, reverse=reverse)
    assert y.dtype == dtype and y.shape == (T, B, H) and h_n.shape == (B, H)
    yr, hr = reference.mut_layer(*ref, variant=variant, reverse=reverse)
    assert_close(y, yr, dtype)
    assert_close(h_n, hr, dtype)
    g = torch.Generator().manual_seed(1)
    wy, wh = torch.randn(y.shape, generator=g), torch.randn(h_n.shape, generator=g)
    ((y.double() * wy).sum() + (h_n.double() * wh).sum()).backward()
    ((yr * wy).sum() + (hr * wh).sum()).backward()
    _compare_grads(args, ref, dtype)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_packed_against_reference(variant, reverse, bias, backend):
    _skip_unless(backend)
    lengths = [6, 6, 4, 3, 1]
    batch_sizes = _batch_sizes(lengths)
    N, H = int(batch_sizes.sum()), 6
    I = H if variant < 3 else 4
    d = mut_inputs(variant, 1, len(lengths), I, H, bias=bias, seed=3)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(N, I, generator=g, dtype=torch.float64).mul(2).sub(1).requires_grad_()
    args = [x] + _args(d, torch.float64, True)[1:]
    ref = _ref(args)
    with fusedrnn.backend(backend):
        y, h_n = F.mut_layer(*args, variant=variant, reverse=reverse, batch_sizes=batch_sizes)
    assert y.shape == (N, H)
    yr, hr = reference.mut_layer(*ref, variant=variant, reverse=reverse,
                                 batch_sizes=batch_sizes)
    assert_close(y, yr, torch.float64)
    assert_close(h_n, hr, torch.float64)
    (y.sum() + (h_n * 2).sum()).backward()
    (yr.sum() + (hr * 2).sum()).backward()
    _compare_grads(args, ref, torch.float64, scale=1)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck(variant, backend, reverse):
    _skip_unless(backend)
    H = 3
    d = mut_inputs(variant, 3, 2, H if variant < 3 else 2, H, seed=7 + variant)
    args = tuple(_args(d, torch.float64, True))

    def fn(*a):
        with fusedrnn.backend(backend):
            return F.mut_layer(*a, variant=variant, reverse=reverse)
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_create_graph_matches_reference(variant, backend):
    """create_graph=True (the backward recomputed with plain ops, see fusedrnn.functional):
    first-order gradients and those of a gradient penalty against the reference's. gradcheck
    and gradgradcheck alone cannot tell a wrong recomputation (it is differentiated
    consistently with itself)."""
    _skip_unless(backend)
    H = 4
    for reverse in (False, True):
        d = mut_inputs(variant, 3, 3, H if variant < 3 else 3, H, seed=21 + reverse)
        args = _args(d, torch.float64, True)
        ref = _ref(args)
        g = torch.Generator().manual_seed(4)
        wy = torch.randn(3, 3, H, generator=g, dtype=torch.float64)
        wh = torch.randn(3, H, generator=g, dtype=torch.float64)
        grads = []
        for fn, a in ((F.mut_layer, args), (reference.mut_layer, ref)):
            with fusedrnn.backend(backend):
                y, h = fn(*a, variant=variant, reverse=reverse)
            first = torch.autograd.grad((y * wy).sum() + (h * wh).sum(), a, create_graph=True)
            penalty = sum((f * f).sum() for f in first)
            grads.append((first, torch.autograd.grad(penalty, a)))
        for order in (0, 1):
            for name, got, want in zip(("x", "h0", "w_ih", "w_hh", "bias"), grads[0][order],
                                       grads[1][order]):
                assert_close(got, want, torch.float64, msg=f"order {order + 1}: d{name}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_empty_batch(variant):
    """A batch of 0, as torch.nn accepts: empty outputs of the right shapes."""
    H = 5
    m = _module(variant)(H if variant < 3 else 3, H, num_layers=2)
    out, h_n = m(torch.randn(4, 0, m.input_size))
    assert out.shape == (4, 0, H) and h_n.shape == (2, 0, H)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradcheck_packed_without_bias(variant):
    lengths = [3, 1, 2]
    batch_sizes = _batch_sizes(lengths)
    H = 3
    I = H if variant < 3 else 2
    d = mut_inputs(variant, 1, 3, I, H, bias=False, seed=5)
    g = torch.Generator().manual_seed(6)
    x = torch.rand(int(batch_sizes.sum()), I, generator=g, dtype=torch.float64) * 2 - 1
    x.requires_grad_()
    args = (x, *_args(d, torch.float64, True)[1:4])
    for reverse in (False, True):
        def fn(*a):
            return F.mut_layer(*a, variant=variant, reverse=reverse, batch_sizes=batch_sizes)
        assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_grad_forward_equals_grad_forward(variant):
    H = 9
    d = mut_inputs(variant, 6, 5, H if variant < 3 else 4, H, dtype=torch.float32, seed=9)
    args = _args(d, torch.float32, True)
    y, h = F.mut_layer(*args, variant=variant)
    assert y.requires_grad
    with torch.no_grad():
        y0, h0 = F.mut_layer(*args, variant=variant)
    assert not y0.requires_grad
    with torch.inference_mode():
        y1, h1 = F.mut_layer(*args, variant=variant)
    for a in (y0, y1):
        torch.testing.assert_close(a, y.detach(), rtol=1e-5, atol=1e-6)
    for a in (h0, h1):
        torch.testing.assert_close(a, h.detach(), rtol=1e-5, atol=1e-6)
    # Frozen weights and a plain x: nothing requires grad either.
    y2, _ = F.mut_layer(*_args(d, torch.float32, False), variant=variant)
    torch.testing.assert_close(y2, y.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_in_place_change_of_the_output_keeps_gradients_right(variant, backend):
    _skip_unless(backend)
    H = 6
    d = mut_inputs(variant, 5, 4, H if variant < 3 else 3, H, seed=5)
    args = _args(d, torch.float64, True)
    ref = _ref(args)
    with fusedrnn.backend(backend):
        y, h_n = F.mut_layer(*args, variant=variant)
        y.mul_(2)
        h_n.add_(1)
        (y.sum() + (h_n * h_n).sum()).backward()
    yr, hr = reference.mut_layer(*ref, variant=variant)
    ((yr * 2).sum() + ((hr + 1) * (hr + 1)).sum()).backward()
    _compare_grads(args, ref, torch.float64, scale=1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_functional_rejects_unknown_variant(variant):
    d = mut_inputs(variant, 2, 2, 3, 3)
    with pytest.raises(ValueError):
        F.mut_layer(*_args(d, torch.float64, False), variant=variant + 3)


# ------------------------------------------------------------------ the CUDA kernels

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,B,H,I3", [(3, 1, 7, 3), (2, 19, 13, 9)])
@pytest.mark.parametrize("reverse", [False, True])
def test_kernels_against_reference(kernel_backend, variant, dtype, T, B, H, I3, reverse, tf32):
    """The kernels under SIMT here and on CUDA where there is a GPU: H not a multiple of the
    tiles, batches of one and of several rows, the half types and TF32 (tolerance as fp16's)."""
    if tf32 and dtype != torch.float32:
        pytest.skip("TF32 applies to fp32 only")
    dev = device_of(kernel_backend)
    I = I3 if variant == 3 else H
    d = mut_inputs(variant, T, B, I, H, seed=T * 10 + B + variant)
    args = _args(d, dtype, True, dev)
    ref = _ref(args)
    with fusedrnn.backend(kernel_backend):
        y, h_n = F.mut_layer(*args, variant=variant, reverse=reverse)
    assert y.device.type == dev and y.dtype == dtype
    yr, hr = reference.mut_layer(*ref, variant=variant, reverse=reverse)
    tol = torch.float16 if tf32 and dtype == torch.float32 else dtype
    assert_close(y, yr, tol)
    assert_close(h_n, hr, tol)
    g = torch.Generator().manual_seed(2)
    wy, wh = torch.randn(y.shape, generator=g), torch.randn(h_n.shape, generator=g)
    ((y.double() * wy.to(dev)).sum() + (h_n.double() * wh.to(dev)).sum()).backward()
    ((yr * wy).sum() + (hr * wh).sum()).backward()
    _compare_grads(args, ref, tol)


# ------------------------------------------------------------------ the ops

def _ops_case(variant, backend, packed, seed=8, H=7, B=5):
    dev = device_of(backend)
    I = H if variant < 3 else 4
    d = mut_inputs(variant, 4, B, I, H, seed=seed)
    batch_sizes = None
    x = d["x"]
    if packed:
        batch_sizes = _batch_sizes([4, 4, 3, 2, 1][:B])
        g = torch.Generator().manual_seed(seed + 1)
        x = torch.rand(int(batch_sizes.sum()), I, generator=g, dtype=torch.float64) * 2 - 1
    return dev, batch_sizes, [x, d["h0"], d["w_ih"], d["w_hh"], d["bias"]]


def _gates_from_equations(xp, hprev, w_hh, variant):
    """r, z, n of every step from its xp row and h_{t-1} (the equations, recurrent side)."""
    H = hprev.shape[-1]
    xr, xz, xn = xp.split(H, -1)
    if variant == 1:
        w_r, w_h = w_hh.chunk(2)
        z = torch.sigmoid(xz)
    else:
        w_r, w_z, w_h = w_hh.chunk(3)
        hz = hprev if variant == 2 else torch.tanh(hprev)
        z = torch.sigmoid(xz + hz @ w_z.t())
    r = torch.sigmoid(xr + hprev @ w_r.t())
    n = torch.tanh(xn + (r * hprev) @ w_h.t())
    return r, z, n


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("backend", ["cpu", "simt", "cuda"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("reverse", [False, True])
def test_ops_against_reference(variant, backend, packed, reverse):
    """mut_forward's y, h_n and saved gates (r, z, n) and r * h_{t-1}, and mut_backward's dxp,
    dh0, dw_hh (dxp carried back through the input projection to x, w_ih, bias), against the
    reference in fp64."""
    _skip_unless(backend)
    dev, batch_sizes, args = _ops_case(variant, backend, packed)
    ref = _ref(args)
    x, h0, w_ih, w_hh, bias = [a.detach().clone().requires_grad_() for a in ref]
    xp = _xp(x, w_ih, bias, variant)
    H = h0.shape[1]
    y, h_n, gates, rh = ops.mut_forward(xp.detach().to(dev), h0.detach().to(dev),
                                        w_hh.detach().to(dev), variant, reverse, backend,
                                        batch_sizes, True)
    yr, hr = reference.mut_layer(*ref, variant=variant, reverse=reverse,
                                 batch_sizes=batch_sizes)
    assert_close(y, yr, torch.float64)
    assert_close(h_n, hr, torch.float64)
    assert gates.shape == (*y.shape[:-1], 3 * H) and rh.shape == y.shape
    hprev = _prev_states(yr.detach(), h0.detach(), reverse, batch_sizes)
    r, z, n = _gates_from_equations(xp.detach(), hprev, w_hh.detach(), variant)
    assert_close(gates[..., :H], r, torch.float64, msg="r")
    assert_close(gates[..., H:2 * H], z, torch.float64, msg="z")
    assert_close(gates[..., 2 * H:], n, torch.float64, msg="n")
    assert_close(rh, r * hprev, torch.float64, msg="r * h")

    g = torch.Generator().manual_seed(3)
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    dh_n = torch.randn(h_n.shape, generator=g, dtype=torch.float64)
    dxp, dh0, dw_hh = ops.mut_backward(dy.to(dev), dh_n.to(dev), h0.detach().to(dev),
                                       w_hh.detach().to(dev), y, gates, rh, variant, reverse,
                                       backend, batch_sizes)
    assert dxp.shape == xp.shape and dh0.shape == h0.shape and dw_hh.shape == w_hh.shape
    ((yr * dy).sum() + (hr * dh_n).sum()).backward()
    assert_close(dh0, ref[1].grad, torch.float64, msg="dh0")
    assert_close(dw_hh, ref[3].grad, torch.float64, msg="dw_hh")
    gx, gw_ih, gb = torch.autograd.grad(xp, [x, w_ih, bias], dxp.cpu())
    assert_close(gx, ref[0].grad, torch.float64, msg="dx through dxp")
    assert_close(gw_ih, ref[2].grad, torch.float64, msg="dw_ih through dxp")
    assert_close(gb, ref[4].grad, torch.float64, msg="dbias through dxp")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("backend", ["cpu", "simt"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_ops_save_false(variant, backend, packed):
    """save=False: gates and r * h come back empty, y and h_n as with save=True."""
    _skip_unless(backend)
    dev, batch_sizes, (x, h0, w_ih, w_hh, bias) = _ops_case(variant, backend, packed, seed=12)
    xp = _xp(x, w_ih, bias, variant).float()
    for reverse in (False, True):
        a = (xp, h0.float(), w_hh.float(), variant, reverse, backend, batch_sizes)
        y, h, gates, rh = ops.mut_forward(*a, False)
        assert gates.numel() == 0 and rh.numel() == 0
        y1, h1, gates1, rh1 = ops.mut_forward(*a, True)
        assert gates1.numel() == 3 * y1.numel() and rh1.numel() == y1.numel()
        torch.testing.assert_close(y, y1, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(h, h1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_opcheck(variant):
    for packed in (False, True):
        _, batch_sizes, (x, h0, w_ih, w_hh, bias) = _ops_case(variant, "cpu", packed, seed=2,
                                                               H=5, B=3)
        xp = _xp(x, w_ih, bias, variant)
        for reverse in (False, True):
            y, hn, gates, rh = ops.mut_forward(xp, h0, w_hh, variant, reverse, "cpu",
                                               batch_sizes)
            torch.library.opcheck(ops.mut_forward,
                                  (xp, h0, w_hh, variant, reverse, "cpu", batch_sizes))
            torch.library.opcheck(ops.mut_forward,
                                  (xp, h0, w_hh, variant, reverse, "cpu", batch_sizes, False))
            torch.library.opcheck(ops.mut_backward,
                                  (torch.randn_like(y), torch.randn_like(hn), h0, w_hh, y, gates,
                                   rh, variant, reverse, "cpu", batch_sizes))


# ------------------------------------------------------------------ the modules

def _params(m, layer, sfx):
    p = dict(m.named_parameters())
    return (p[f"weight_ih_l{layer}{sfx}"], p[f"weight_hh_l{layer}{sfx}"],
            p.get(f"bias_l{layer}{sfx}"))


def _stack_reference(m, variant, x, h0):
    """The module's stack from reference layers: x [T,B,I] time-major, h0 [L*D,B,H]."""
    D = 2 if m.bidirectional else 1
    inp, hs = x, []
    for layer in range(m.num_layers):
        ys = []
        for d, sfx in enumerate(("", "_reverse")[:D]):
            y, h = reference.mut_layer(inp, h0[layer * D + d], *_params(m, layer, sfx),
                                       variant=variant, reverse=d == 1)
            ys.append(y)
            hs.append(h)
        inp = torch.cat(ys, -1)
    return inp, torch.stack(hs)


CONFIGS = [(1, 2, False), (1, 1, True), (2, 2, False), (2, 1, True), (3, 2, True),
           (3, 2, False)]  # (variant, num_layers, bidirectional)


@pytest.mark.parametrize("variant,layers,bidir", CONFIGS)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_module_matches_reference(variant, layers, bidir, batch_first, bias):
    torch.manual_seed(variant * 10 + layers)
    H = 7
    I = H if variant < 3 else 5
    D = 2 if bidir else 1
    m = _module(variant)(I, H, num_layers=layers, bias=bias, batch_first=batch_first,
                         bidirectional=bidir).double()
    T, B = 6, 5
    x = (torch.rand(B, T, I) if batch_first else torch.rand(T, B, I)).double()
    x = (x * 2 - 1).requires_grad_()
    h0 = (torch.rand(layers * D, B, H, dtype=torch.float64) - 0.5).requires_grad_()
    out, h_n = m(x, h0)
    assert out.shape == ((B, T, D * H) if batch_first else (T, B, D * H))
    assert h_n.shape == (layers * D, B, H)
    want, want_h = _stack_reference(m, variant, x.transpose(0, 1) if batch_first else x, h0)
    assert_close(out, want.transpose(0, 1) if batch_first else want, torch.float64)
    assert_close(h_n, want_h, torch.float64)
    g = torch.Generator().manual_seed(0)
    wy = torch.randn(out.shape, generator=g, dtype=torch.float64)
    wh = torch.randn(h_n.shape, generator=g, dtype=torch.float64)
    leaves = [x, h0, *m.parameters()]
    got = torch.autograd.grad((out * wy).sum() + (h_n * wh).sum(), leaves)
    wy_t = wy.transpose(0, 1) if batch_first else wy
    exp = torch.autograd.grad((want * wy_t).sum() + (want_h * wh).sum(), leaves)
    names = ["x", "h0"] + [n for n, _ in m.named_parameters()]
    for n, a, b in zip(names, got, exp):
        assert_close(a, b, torch.float64, msg=f"d{n}")
    # hx=None is zeros.
    out0, h0_n = m(x)
    want0, want0_h = _stack_reference(m, variant, x.transpose(0, 1) if batch_first else x,
                                      torch.zeros_like(h0))
    assert_close(out0, want0.transpose(0, 1) if batch_first else want0, torch.float64)
    assert_close(h0_n, want0_h, torch.float64)


@pytest.mark.parametrize("variant", VARIANTS)
def test_module_fp32_and_unbatched_input(variant):
    torch.manual_seed(variant)
    H = 6
    I = H if variant < 3 else 4
    m = _module(variant)(I, H, num_layers=2)
    x = torch.rand(5, 3, I) * 2 - 1
    h0 = torch.rand(2, 3, H) - 0.5
    out, h_n = m(x, h0)
    assert out.dtype == torch.float32
    want, want_h = _stack_reference(copy.deepcopy(m).double(), variant, x.double(),
                                    h0.double())
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


@pytest.mark.parametrize("variant,layers,bidir", [c for c in CONFIGS if c[1] > 1 or c[2]])
@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_packed_unsorted_module_against_reference_per_sequence(variant, layers, bidir,
                                                               backend):
    """The module over a PackedSequence of unsorted lengths, against the same module's weights
    run through the reference layer by layer on each sequence alone (and the gradients)."""
    _skip_unless(backend)
    torch.manual_seed(3 + variant)
    H = 7
    I = H if variant < 3 else 5
    D = 2 if bidir else 1
    m = _module(variant)(I, H, num_layers=layers, bidirectional=bidir).double()
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
        want, want_h = _stack_reference(m, variant, x[:, None], hx[:, b:b + 1])
        assert_close(ys[:lengths[b], b], want[:, 0], torch.float64)
        assert_close(h_n[:, b], want_h[:, 0], torch.float64)
        ref_loss = ref_loss + (want * (b + 1)).sum() + want_h.pow(2).sum()
    exp = torch.autograd.grad(ref_loss, leaves)
    for a, e in zip(got, exp):
        assert_close(a, e, torch.float64)


@pytest.mark.parametrize("variant,layers,bidir", CONFIGS)
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_keys_shapes_and_init(variant, layers, bidir, bias):
    H = 33
    I = H if variant < 3 else 10
    D = 2 if bidir else 1
    gi, gh = ROWS[variant]
    torch.manual_seed(0)
    m = _module(variant)(I, H, num_layers=layers, bias=bias, bidirectional=bidir)
    want = {}
    for layer in range(layers):
        for sfx in ("", "_reverse")[:D]:
            want[f"weight_ih_l{layer}{sfx}"] = (gi * H, I if layer == 0 else D * H)
            want[f"weight_hh_l{layer}{sfx}"] = (gh * H, H)
            if bias:
                want[f"bias_l{layer}{sfx}"] = (3 * H,)
    sd = m.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == want
    assert {n: tuple(p.shape) for n, p in m.named_parameters()} == want
    k = H ** -0.5
    for n, p in m.named_parameters():
        assert p.dtype == torch.float32
        assert p.abs().max() <= k, n
        if p.numel() >= 99:  # uniform(-k, k): mean |p| = k/2
            assert 0.4 * k < p.abs().mean() < 0.6 * k, n
        if p.numel() >= 300:  # both signs, up to the ends
            assert p.max() > 0.9 * k and p.min() < -0.9 * k, n
    # Load into a fresh module: identical outputs.
    m2 = _module(variant)(I, H, num_layers=layers, bias=bias, bidirectional=bidir)
    m2.load_state_dict(sd)
    x = torch.rand(3, 2, I) * 2 - 1
    torch.testing.assert_close(m2(x)[0], m(x)[0], rtol=0, atol=0)
    # device / dtype arguments.
    m3 = _module(variant)(I, H, num_layers=layers, bias=bias, bidirectional=bidir,
                          dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in m3.parameters())


@pytest.mark.parametrize("variant", VARIANTS)
def test_dropout_only_in_training(variant):
    torch.manual_seed(variant)
    H = 6
    I = H if variant < 3 else 4
    m = _module(variant)(I, H, num_layers=2, dropout=0.5).double()
    x = torch.rand(5, 3, I, dtype=torch.float64) * 2 - 1
    m.eval()
    a, ha = m(x)
    b, _ = m(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    want, _ = _stack_reference(m, variant, x, x.new_zeros(2, 3, H))
    assert_close(a, want, torch.float64)
    m.train()
    torch.manual_seed(123)
    c, hc = m(x)
    assert not torch.allclose(a, c)
    # torch.nn's dropout on the first layer's output, with the same RNG draws.
    torch.manual_seed(123)
    p = [_params(m, layer, "") for layer in range(2)]
    y0, h0n = reference.mut_layer(x, x.new_zeros(3, H), *p[0], variant=variant)
    y0 = torch.nn.functional.dropout(y0, 0.5, training=True)
    y1, h1n = reference.mut_layer(y0, x.new_zeros(3, H), *p[1], variant=variant)
    assert_close(c, y1, torch.float64)
    assert_close(hc, torch.stack([h0n, h1n]), torch.float64)
    # No dropout in training with dropout=0.
    m0 = _module(variant)(I, H, num_layers=2).double()
    m0.load_state_dict(m.state_dict())
    m0.train()
    assert_close(m0(x)[0], a, torch.float64)


@pytest.mark.parametrize("variant", VARIANTS)
def test_module_no_grad_equals_grad_forward(variant):
    torch.manual_seed(variant)
    H = 8
    I = H if variant < 3 else 3
    m = _module(variant)(I, H, num_layers=2)
    x = torch.rand(4, 3, I) * 2 - 1
    out, h = m(x)
    assert out.requires_grad
    with torch.no_grad():
        out0, h0 = m(x)
    torch.testing.assert_close(out0, out.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h0, h.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_module_in_place_change_of_the_output(variant):
    torch.manual_seed(variant + 20)
    H = 5
    I = H if variant < 3 else 4
    m = _module(variant)(I, H, num_layers=2).double()
    x = (torch.rand(4, 3, I, dtype=torch.float64) * 2 - 1).requires_grad_()
    out, h_n = m(x)
    out.mul_(3)
    got = torch.autograd.grad(out.sum() + h_n.sum(), [x, *m.parameters()])
    want, want_h = _stack_reference(m, variant, x, x.new_zeros(2, 3, H))
    exp = torch.autograd.grad((want * 3).sum() + want_h.sum(), [x, *m.parameters()])
    for a, b in zip(got, exp):
        assert_close(a, b, torch.float64)


def test_value_errors():
    for v in (1, 2):
        with pytest.raises(ValueError):
            _module(v)(5, 7)
        with pytest.raises(ValueError):
            _module(v)(7, 7, num_layers=2, bidirectional=True)
        with pytest.raises(ValueError):
            _cell(v)(5, 7)
        _module(v)(7, 7, num_layers=2)  # fine
        _module(v)(7, 7, bidirectional=True)  # fine: one layer
        _cell(v)(7, 7)
    _module(3)(5, 7, num_layers=2, bidirectional=True)  # MUT3 takes any input_size
    _cell(3)(5, 7)


@pytest.mark.parametrize("variant", VARIANTS)
def test_compiles_without_graph_breaks(variant):
    # The modules share _FusedRNNBase.forward: after the other files' compiled modules, its
    # code object would reach dynamo's recompile limit (a fullgraph error, not a graph break).
    torch._dynamo.reset()
    torch.manual_seed(5)
    H = 6
    m = _module(variant)(H if variant < 3 else 3, H)
    x = torch.rand(5, 2, m.input_size).mul(2).sub(1).requires_grad_()
    compiled = torch.compile(m, fullgraph=True)
    y = compiled(x)[0]
    assert_close(y, m(x)[0], torch.float32)
    y.sum().backward()
    got = [x.grad] + [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    x2 = x.detach().clone().requires_grad_()
    m(x2)[0].sum().backward()
    for a, b in zip(got, [x2.grad] + [p.grad for p in m.parameters()]):
        assert_close(a, b, torch.float32)


# ------------------------------------------------------------------ the cells

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_cell_matches_reference(variant, bias, backend):
    _skip_unless(backend)
    torch.manual_seed(variant)
    H = 8
    I = H if variant < 3 else 5
    gi, gh = ROWS[variant]
    c = _cell(variant)(I, H, bias=bias).double()
    shapes = {"weight_ih": (gi * H, I), "weight_hh": (gh * H, H)}
    if bias:
        shapes["bias"] = (3 * H,)
    assert {n: tuple(p.shape) for n, p in c.named_parameters()} == shapes
    k = H ** -0.5
    assert all(p.abs().max() <= k for p in c.parameters())
    p = dict(c.named_parameters())
    x = (torch.rand(3, I, dtype=torch.float64) * 2 - 1).requires_grad_()
    h = (torch.rand(3, H, dtype=torch.float64) - 0.5).requires_grad_()
    with fusedrnn.backend(backend):
        got = c(x, h)
        got_1 = c(x[0], h[0])  # unbatched
        got_0 = c(x)  # hx=None: zeros
    want = reference.mut_cell(x, h, p["weight_ih"], p["weight_hh"], p.get("bias"), variant)
    assert_close(got, want, torch.float64)
    assert got_1.shape == (H,)
    assert_close(got_1, want[0], torch.float64)
    assert_close(got_0, reference.mut_cell(x, torch.zeros_like(h), p["weight_ih"],
                                           p["weight_hh"], p.get("bias"), variant),
                 torch.float64)
    leaves = [x, h, *c.parameters()]
    wt = torch.randn(want.shape, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad((got * wt).sum(), leaves),
                    torch.autograd.grad((want * wt).sum(), leaves)):
        assert_close(a, b, torch.float64)
