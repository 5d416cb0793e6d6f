"""The GEMMs outside the step kernels (csrc/cuda/hoisted_gemm.h: the input projection, dx, dW,
dh0) in cuDNN's precision: fp32 on TF32 exactly when torch allows TF32 for cuDNN RNNs, the half
types with their fp32 gate gradients rounded to the storage type, as cuDNN keeps them.

Each test isolates those GEMMs from the step kernels' own product: a forward from h0 = 0 (the
recurrent product is then exactly zero in any precision, so the outputs depend on the input
projection alone) and a one-step backward (no product is fed back; every product it does is one
of these GEMMs). The outputs are compared with two fp64 references, one with the operands
rounded as the policy rounds them and one without: they must match the first and not the
second, so a policy applied where it should not be, or not applied, goes red. Runs on simt (the
emulated cuBLAS call, through the same column-major descriptors) and on cuda where there is one.
"""
import contextlib

import pytest
import torch

from fusedrnn import reference

from conftest import backend_available, layer_inputs, tf32_rnns

ops = torch.ops.fusedrnn
BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(not backend_available(b)[0],
                                                     reason=backend_available(b)[1]))
            for b in ("simt", "cuda")]


def tf32(t):
    """t rounded to tf32 (10 explicit mantissa bits, nearest, ties away from zero), computed
    from frexp, independently of the kernels' bit trick."""
    m, e = torch.frexp(t.double())  # t = m 2^e, 0.5 <= |m| < 1: 11 significant bits are m 2^11
    s = m * 2048.0
    r = torch.sign(s) * torch.floor(s.abs() + 0.5)
    return torch.ldexp(r, (e - 11).to(torch.float64)).to(t.dtype)


@contextlib.contextmanager
def matmul_tf32():
    """TF32 allowed for torch's own matmuls (not for cuDNN RNNs): fusedrnn's GEMMs must stay IEEE,
    so on CUDA they cannot just inherit the cuBLAS handle's math mode torch set."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def _forward(kind, d, backend, algorithm):
    if kind == "lstm":
        return ops.lstm_forward(d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"], d["b_ih"],
                                d["b_hh"], False, backend, None, None, algorithm)[0]
    if kind == "gru":
        return ops.gru_forward(d["x"], d["h0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"],
                               False, backend, None, algorithm)[0]
    return ops.rnn_forward(d["x"], d["h0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"], "tanh",
                           False, backend)[0]


def _reference_forward(kind, d, round_operands):
    r = {k: v.double().cpu() for k, v in d.items()}
    if round_operands:
        r["x"], r["w_ih"] = tf32(r["x"]), tf32(r["w_ih"])
    if kind == "lstm":
        return reference.lstm_layer(r["x"], r["h0"], r["c0"], r["w_ih"], r["w_hh"], r["b_ih"],
                                    r["b_hh"])[0]
    if kind == "gru":
        return reference.gru_layer(r["x"], r["h0"], r["w_ih"], r["w_hh"], r["b_ih"],
                                   r["b_hh"])[0]
    return reference.rnn_layer(r["x"], r["h0"], r["w_ih"], r["w_hh"], r["b_ih"], r["b_hh"])[0]


CASES = [("lstm", "stepwise"), ("lstm", "persistent"), ("gru", "stepwise"),
         ("gru", "persistent"), ("rnn_tanh", "stepwise")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,algorithm", CASES)
@pytest.mark.parametrize("tf32_on", [False, True])
def test_input_projection_follows_tf32(backend, kind, algorithm, tf32_on):
    base = kind.split("_")[0]
    dev = "cuda" if backend == "cuda" else "cpu"
    B, I, H = 5, 37, 11
    d = layer_inputs(base, 1, B, I, H, dtype=torch.float32, device=dev, seed=7)
    d["h0"] = torch.zeros_like(d["h0"])  # the recurrent product is then exactly 0
    if base == "lstm":
        d["c0"] = torch.zeros_like(d["c0"])
    with (tf32_rnns() if tf32_on else matmul_tf32()):
        y = _forward(kind, d, backend, algorithm)[0].double().cpu()
    rounded = _reference_forward(base, d, True)[0]
    exact = _reference_forward(base, d, False)[0]
    want, other = (rounded, exact) if tf32_on else (exact, rounded)
    err, err_other = (y - want).abs().max().item(), (y - other).abs().max().item()
    assert err < 2e-6, (err, err_other)
    assert err_other > 2e-5, (err, err_other)  # the two references are far enough apart to tell


DW_IH = {"lstm": 3, "gru": 2, "rnn_tanh": 2}  # dW_ih's place in the backward ops' outputs


def _backward(kind, dtype, backend, x, d, save):
    """The backward op of one step from the saved tensors `save` (a forward's outputs)."""
    g = {k: v for k, v in save.items() if k.startswith("d")}
    if kind == "lstm":
        return ops.lstm_backward(g["dy"], g["dh_n"], g["dc_n"], x, d["h0"], d["c0"], d["w_ih"],
                                 d["w_hh"], save["y"], save["gates"], save["cells"], False, backend)
    if kind == "gru":
        return ops.gru_backward(g["dy"], g["dh_n"], x, d["h0"], d["w_ih"], d["w_hh"], save["y"],
                                save["gates"], save["ghn"], False, backend)
    return ops.rnn_backward(g["dy"], g["dh_n"], x, d["h0"], d["w_ih"], d["w_hh"], save["y"],
                            "tanh", False, backend)


def _one_step(kind, dtype, backend, n):
    """Inputs and a saved forward of one step with n = B = I rows (so x can be the identity)."""
    base = kind.split("_")[0]
    dev = "cuda" if backend == "cuda" else "cpu"
    d = layer_inputs(base, 1, n, n, 13, dtype=dtype, device=dev, seed=n)
    if kind == "lstm":
        y, _, _, gates, cells = ops.lstm_forward(d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"],
                                                 d["b_ih"], d["b_hh"], False, backend)
        save = dict(y=y, gates=gates, cells=cells)
    elif kind == "gru":
        y, _, gates, ghn = ops.gru_forward(d["x"], d["h0"], d["w_ih"], d["w_hh"], d["b_ih"],
                                           d["b_hh"], False, backend)
        save = dict(y=y, gates=gates, ghn=ghn)
    else:
        save = dict(y=ops.rnn_forward(d["x"], d["h0"], d["w_ih"], d["w_hh"], d["b_ih"],
                                      d["b_hh"], "tanh", False, backend)[0])
    gen = torch.Generator().manual_seed(n + 1)
    rnd = lambda *s: (torch.rand(*s, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype).to(dev)  # noqa: E731
    save.update(dy=rnd(1, n, 13), dh_n=rnd(n, 13), dc_n=rnd(n, 13))
    return d, save


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("tf32_on", [False, True])
def test_backward_gemms_follow_tf32(backend, kind, tf32_on):
    n = 29
    d, save = _one_step(kind, torch.float32, backend, n)
    eye = torch.eye(n, dtype=torch.float32, device=d["x"].device).unsqueeze(0)
    # The x-side gate gradients da at full precision: dW_ih = da^T x with x = I, in IEEE fp32.
    da = _backward(kind, torch.float32, backend, eye, d, save)[DW_IH[kind]].t().double().cpu()
    with (tf32_rnns() if tf32_on else matmul_tf32()):
        out = _backward(kind, torch.float32, backend, d["x"], d, save)
    dx, dw_ih = out[0], out[DW_IH[kind]]
    x, w = d["x"][0].double().cpu(), d["w_ih"].double().cpu()
    rnd = tf32 if tf32_on else (lambda t: t)
    other = (lambda t: t) if tf32_on else tf32
    for got, a, b in ((dx[0], da, w), (dw_ih, da.t(), x)):
        got = got.double().cpu()
        err = (got - rnd(a) @ rnd(b)).abs().max().item()
        err_other = (got - other(a) @ other(b)).abs().max().item()
        assert err < 5e-6, (err, err_other)
        assert err_other > 5e-5, (err, err_other)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_backward_gemms_round_half_gate_gradients(backend, kind, dtype):
    """The half types' dx and dW_ih are bf16/fp16 GEMMs: their fp32 gate gradients rounded to the
    storage type, the products exact, fp32 sums, one rounding of the result. The fp32 gate
    gradients come from the same one-step backward in fp32 on the same (widened) inputs."""
    n = 29
    d, save = _one_step(kind, dtype, backend, n)
    wide = lambda t: t.float() if t is not None and t.is_floating_point() else t  # noqa: E731
    d32, save32 = {k: wide(v) for k, v in d.items()}, {k: wide(v) for k, v in save.items()}
    eye = torch.eye(n, dtype=torch.float32, device=d["x"].device).unsqueeze(0)
    da = _backward(kind, torch.float32, backend, eye, d32, save32)[DW_IH[kind]]
    da = da.t().double().cpu()
    out = _backward(kind, dtype, backend, d["x"], d, save)
    dx, dw_ih = out[0], out[DW_IH[kind]]
    x, w = d["x"][0].double().cpu(), d["w_ih"].double().cpu()
    da_half = da.to(dtype).double()
    for got, a_half, a, b in ((dx[0], da_half, da, w), (dw_ih, da_half.t(), da.t(), x)):
        got = got.cpu()
        policy = (a_half @ b).to(dtype)
        unrounded = (a @ b).to(dtype)
        miss = (got != policy).float().mean().item()
        miss_other = (got != unrounded).float().mean().item()
        assert miss < 0.02, (miss, miss_other)  # only where fp32 sums land on a rounding tie
        assert miss_other > 0.05, (miss, miss_other)
