"""The stepwise CUDA kernels (csrc/cuda), run through the SIMT layer on CPU tensors (backend "simt")
and, on a machine with a GPU, on CUDA tensors (backend "cuda"; skipped cleanly otherwise).

Every op is called directly (torch.ops.fusedrnn.*): the forward outputs and final states against
fusedrnn.reference evaluated in fp64 on the same (rounded) inputs, and every gradient of the
backward op against torch.autograd through that reference. Odd sizes straddle the kernels' tiles
(forward BT=32 rows x HT=8/16 units, backward 16 x 16), T = 0 and 1, reverse, no bias,
non-contiguous inputs, and two SIMT schedule seeds (a missing __syncthreads fails for some seed).
"""
import pytest
import torch

import fusedrnn
from fusedrnn import reference

from conftest import TOL, layer_inputs, tf32_rnns

ops = torch.ops.fusedrnn

KINDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]

# (T, B, I, H, reverse, bias, contiguous)
CASES = [
    (9, 3, 5, 7, False, True, True),
    (1, 1, 4, 1, True, False, True),
    (9, 17, 20, 33, True, True, False),
    (3, 33, 8, 9, False, True, True),  # two row tiles of the forward kernels
    (4, 17, 13, 100, False, False, False),
    (0, 3, 5, 7, False, True, True),
]
# Half types: fewer cases (the per-dtype code path is the same; rounding is what is tested).
HALF_CASES = [CASES[0], CASES[2], CASES[5]]


def _params():
    out = []
    for kind in KINDS:
        for dtype in DTYPES + ["tf32"]:  # "tf32": fp32 with TF32 allowed, compared like fp16
            cases = CASES if dtype in (torch.float32, torch.float64) else HALF_CASES
            for c in cases:
                name = dtype if dtype == "tf32" else str(dtype)[6:]
                out.append(pytest.param(kind, dtype, c, id=f"{kind}-{name}-"
                                        f"T{c[0]}B{c[1]}I{c[2]}H{c[3]}"
                                        f"{'-rev' if c[4] else ''}{'' if c[5] else '-nobias'}"
                                        f"{'' if c[6] else '-noncontig'}"))
    return out


@pytest.fixture(params=[None, 1, 7], ids=["inorder", "seed1", "seed7"])
def schedule(request, kernel_backend):
    """The SIMT schedule: threads resume in order, or in a seeded random order after barriers."""
    if kernel_backend != "simt":
        if request.param is not None:
            pytest.skip("schedule seeds only apply to the SIMT layer")
        yield None
        return
    set_seed = getattr(fusedrnn._C, "simt_set_seed", None)
    if set_seed is None:
        if request.param is not None:
            pytest.skip("fusedrnn._C.simt_set_seed not available")
        yield None
        return
    set_seed(request.param)
    try:
        yield request.param
    finally:
        set_seed(None)


def _noncontig(t):
    """The same values in a non-contiguous layout (last stride 2)."""
    return torch.stack([t, t], -1)[..., 0]


def _close(actual, expected, dtype, what, scale=1.0, tol_dtype=None):
    tol = TOL[tol_dtype or dtype]
    expected = expected.double().cpu()
    mag = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {dtype}"
    assert actual.is_contiguous(), f"{what}: output must be contiguous"
    torch.testing.assert_close(actual.double().cpu(), expected, atol=tol["atol"] * scale * mag,
                               rtol=tol["rtol"] * scale, msg=lambda m: f"{what}: {m}")


def _close_norm(actual, expected, dtype, what, tol):
    """Relative error in the Frobenius norm: for gradients through relu in half precision, where a
    pre-activation within rounding of 0 legitimately flips relu' between 0 and 1 elementwise."""
    assert actual.dtype == dtype and actual.is_contiguous(), what
    e = expected.double().cpu()
    err = (actual.double().cpu() - e).norm().item()
    assert err <= tol * max(e.norm().item(), 1e-3), f"{what}: relative error {err / e.norm():.3g}"


def _fwd(kind, d, reverse, backend):
    if kind == "lstm":
        return ops.lstm_forward(d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"], d["b_ih"],
                                d["b_hh"], reverse, backend)
    if kind == "gru":
        return ops.gru_forward(d["x"], d["h0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"],
                               reverse, backend)
    return ops.rnn_forward(d["x"], d["h0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"],
                           kind[4:], reverse, backend)


def _bwd(kind, d, out, grads, reverse, backend):
    if kind == "lstm":
        y, _, _, gates, cells = out
        return ops.lstm_backward(grads["y"], grads["h_n"], grads["c_n"], d["x"], d["h0"], d["c0"],
                                 d["w_ih"], d["w_hh"], y, gates, cells, reverse, backend)
    if kind == "gru":
        y, _, gates, ghn = out
        return ops.gru_backward(grads["y"], grads["h_n"], d["x"], d["h0"], d["w_ih"], d["w_hh"], y,
                                gates, ghn, reverse, backend)
    y = out[0]
    return ops.rnn_backward(grads["y"], grads["h_n"], d["x"], d["h0"], d["w_ih"], d["w_hh"], y,
                            kind[4:], reverse, backend)


def _reference(kind, d, grads, reverse, G, H):
    """fp64 reference outputs and gradients (w.r.t. x, h0, [c0], w_ih, w_hh, b_ih, b_hh) from the
    same rounded inputs. Without bias the biases are zeros, whose gradient is what db means."""
    r = {k: (v.detach().double().cpu() if v is not None else
             torch.zeros(G * H, dtype=torch.float64)).requires_grad_()
         for k, v in d.items()}
    if kind == "lstm":
        y, h_n, c_n = reference.lstm_layer(r["x"], r["h0"], r["c0"], r["w_ih"], r["w_hh"],
                                           r["b_ih"], r["b_hh"], reverse=reverse)
        outs = dict(y=y, h_n=h_n, c_n=c_n)
    elif kind == "gru":
        y, h_n = reference.gru_layer(r["x"], r["h0"], r["w_ih"], r["w_hh"], r["b_ih"], r["b_hh"],
                                     reverse=reverse)
        outs = dict(y=y, h_n=h_n)
    else:
        y, h_n = reference.rnn_layer(r["x"], r["h0"], r["w_ih"], r["w_hh"], r["b_ih"], r["b_hh"],
                                     nonlinearity=kind[4:], reverse=reverse)
        outs = dict(y=y, h_n=h_n)
    loss = sum((outs[k] * grads[k].double().cpu()).sum() for k in outs)
    names = [k for k in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh") if k in r]
    g = torch.autograd.grad(loss, [r[k] for k in names], allow_unused=True)
    dgrads = {k: (gi if gi is not None else torch.zeros_like(r[k])) for k, gi in zip(names, g)}
    return {k: v.detach() for k, v in outs.items()}, dgrads


@pytest.mark.parametrize("kind,dtype,case", _params())
def test_layer(kind, dtype, case, kernel_backend, schedule):
    if dtype == "tf32":  # fp32 on TF32 tensor cores: inputs rounded to 10 bits, like fp16's
        with tf32_rnns():
            _check_layer(kind, torch.float32, case, kernel_backend, tol_dtype=torch.float16)
    else:
        _check_layer(kind, dtype, case, kernel_backend)


def _check_layer(kind, dtype, case, kernel_backend, tol_dtype=None):
    T, B, I, H, reverse, bias, contiguous = case
    base = "lstm" if kind == "lstm" else ("gru" if kind == "gru" else "rnn")
    G = {"lstm": 4, "gru": 3, "rnn": 1}[base]
    device = "cuda" if kernel_backend == "cuda" else "cpu"
    d = layer_inputs(base, T, B, I, H, dtype=dtype, bias=bias, device=device,
                     seed=T * 1000 + B * 100 + H)
    gen = torch.Generator().manual_seed(H + 17 * B)
    rnd = lambda *s: (torch.rand(*s, generator=gen, dtype=torch.float64) * 2 - 1).to(device, dtype)
    grads = dict(y=rnd(T, B, H), h_n=rnd(B, H))
    if base == "lstm":
        grads["c_n"] = rnd(B, H)
    if not contiguous:
        d = {k: (_noncontig(v) if v is not None else None) for k, v in d.items()}
        grads = {k: _noncontig(v) for k, v in grads.items()}
        assert not d["x"].is_contiguous() and not d["w_hh"].is_contiguous()

    ref_out, ref_grad = _reference(kind, d, grads, reverse, G, H)
    out = _fwd(kind, d, reverse, kernel_backend)

    # Forward: outputs and final states.
    _close(out[0], ref_out["y"], dtype, "y", tol_dtype=tol_dtype)
    _close(out[1], ref_out["h_n"], dtype, "h_n", tol_dtype=tol_dtype)
    if base == "lstm":
        _close(out[2], ref_out["c_n"], dtype, "c_n", tol_dtype=tol_dtype)
        y, h_n, c_n, gates, cells = out
        # Values of the saved tensors: test_saved_activations, and the gradients below.
        assert gates.shape == (T, B, 4 * H) and cells.shape == (T, B, H)
    if T > 0:
        # Final states are fresh tensors, not views of y.
        assert out[1].data_ptr() != out[0].data_ptr()

    # Backward: every gradient.
    res = _bwd(kind, d, out, grads, reverse, kernel_backend)
    scale = 2.0 if (tol_dtype or dtype) in (torch.float16, torch.bfloat16) else 1.0
    close = lambda a, e, dt, what, scale=1.0: _close(a, e, dt, what, scale, tol_dtype)  # noqa: E731
    if kind == "rnn_relu" and (tol_dtype or dtype) in (torch.float16, torch.bfloat16):
        rtol = TOL[tol_dtype or dtype]["rtol"]
        close = lambda a, e, dt, what, scale=1.0: _close_norm(a, e, dt, what, 10 * rtol)  # noqa: E731
    close(res[0], ref_grad["x"], dtype, "dx", scale)
    close(res[1], ref_grad["h0"], dtype, "dh0", scale)
    if base == "lstm":
        _, _, dc0, dw_ih, dw_hh, db, dw_hr = res
        assert dw_hr.numel() == 0  # no projection
        close(dc0, ref_grad["c0"], dtype, "dc0", scale)
        close(db, ref_grad["b_ih"], dtype, "db", scale)
        close(db, ref_grad["b_hh"], dtype, "db (b_hh)", scale)
    elif base == "gru":
        _, _, dw_ih, dw_hh, db_ih, db_hh = res
        close(db_ih, ref_grad["b_ih"], dtype, "db_ih", scale)
        close(db_hh, ref_grad["b_hh"], dtype, "db_hh", scale)
    else:
        _, _, dw_ih, dw_hh, db = res
        close(db, ref_grad["b_ih"], dtype, "db", scale)
    close(dw_ih, ref_grad["w_ih"], dtype, "dw_ih", scale)
    close(dw_hh, ref_grad["w_hh"], dtype, "dw_hh", scale)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_saved_activations(kind, kernel_backend):
    """The saved tensors of the forward op are what backward expects: gate activations (LSTM
    i,f,g,o; GRU r,z,n), LSTM cell states, GRU ghn = W_hn h_{t-1} + b_hn."""
    T, B, I, H = 3, 5, 6, 11
    device = "cuda" if kernel_backend == "cuda" else "cpu"
    d = layer_inputs(kind, T, B, I, H, dtype=torch.float64, device=device, seed=3)
    r = {k: v.cpu() for k, v in d.items()}
    if kind == "lstm":
        y, h_n, c_n, gates, cells = ops.lstm_forward(d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"],
                                                     d["b_ih"], d["b_hh"], False, kernel_backend)
        h, c = r["h0"], r["c0"]
        for t in range(T):
            a = r["x"][t] @ r["w_ih"].t() + r["b_ih"] + h @ r["w_hh"].t() + r["b_hh"]
            ai, af, ag, ao = a.chunk(4, -1)
            act = torch.cat([ai.sigmoid(), af.sigmoid(), ag.tanh(), ao.sigmoid()], -1)
            h, c = reference.lstm_cell(r["x"][t], h, c, r["w_ih"], r["w_hh"], r["b_ih"], r["b_hh"])
            _close(gates[t], act, torch.float64, f"gates[{t}]")
            _close(cells[t], c, torch.float64, f"cells[{t}]")
    elif kind == "gru":
        y, h_n, gates, ghn = ops.gru_forward(d["x"], d["h0"], d["w_ih"], d["w_hh"], d["b_ih"],
                                             d["b_hh"], False, kernel_backend)
        h = r["h0"]
        for t in range(T):
            xr, xz, xn = (r["x"][t] @ r["w_ih"].t() + r["b_ih"]).chunk(3, -1)
            hr, hz, hn = (h @ r["w_hh"].t() + r["b_hh"]).chunk(3, -1)
            rr, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
            n = (xn + rr * hn).tanh()
            _close(gates[t], torch.cat([rr, z, n], -1), torch.float64, f"gates[{t}]")
            _close(ghn[t], hn, torch.float64, f"ghn[{t}]")
            h = (1 - z) * n + z * h
    else:
        y, h_n = ops.rnn_forward(d["x"], d["h0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"],
                                 "tanh", False, kernel_backend)
        ref_y, _ = reference.rnn_layer(r["x"], r["h0"], r["w_ih"], r["w_hh"], r["b_ih"], r["b_hh"])
        _close(y, ref_y, torch.float64, "y")


def test_unsupported_dtype_is_rejected(kernel_backend):
    device = "cuda" if kernel_backend == "cuda" else "cpu"
    d = layer_inputs("rnn", 2, 2, 3, 4, dtype=torch.float64, device=device)
    d = {k: v.to(torch.complex128) if v is not None else None for k, v in d.items()}
    with pytest.raises(RuntimeError):
        ops.rnn_forward(d["x"], d["h0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"], "tanh", False,
                        kernel_backend)


@pytest.mark.skipif(not (fusedrnn.build_info()["cuda"] and torch.cuda.is_available()),
                    reason="needs a CUDA device and a CUDA build")
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_matches_torch_nn(kind, dtype):
    """On a GPU: the CUDA kernels against torch.nn (cuDNN) with the same weights."""
    T, B, I, H = 7, 9, 24, 40
    torch.manual_seed(0)
    if kind == "lstm":
        m = torch.nn.LSTM(I, H)
    elif kind == "gru":
        m = torch.nn.GRU(I, H)
    else:
        m = torch.nn.RNN(I, H, nonlinearity=kind[4:])
    m = m.to("cuda", dtype)
    x = torch.randn(T, B, I, device="cuda", dtype=dtype)
    h0 = torch.randn(1, B, H, device="cuda", dtype=dtype)
    w = [m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0]
    with torch.no_grad():
        if kind == "lstm":
            c0 = torch.randn(1, B, H, device="cuda", dtype=dtype)
            ref_y, (ref_h, ref_c) = m(x, (h0, c0))
            y, h_n, c_n, _, _ = ops.lstm_forward(x, h0[0], c0[0], *w, False, "cuda")
            _close(c_n, ref_c[0], dtype, "c_n", 2.0)
        else:
            ref_y, ref_h = m(x, h0)
            if kind == "gru":
                y, h_n, _, _ = ops.gru_forward(x, h0[0], *w, False, "cuda")
            else:
                y, h_n = ops.rnn_forward(x, h0[0], *w, kind[4:], False, "cuda")
    _close(y, ref_y, dtype, "y", 2.0)
    _close(h_n, ref_h[0], dtype, "h_n", 2.0)
