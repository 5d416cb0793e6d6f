"""The fused layer ops (through fusedrnn.functional) against fusedrnn.reference, on every backend:
outputs, final states and every gradient, odd sizes, all dtypes the backend supports."""
import pytest
import torch

from conftest import TOL, assert_close, device_of, layer_inputs
from fusedrnn import functional as F
from fusedrnn import reference

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
# (T, B, I, H, reverse, bias): T = 1 and 0, B = 1, H = 1 and 33, I != H.
SIZES = [
    (1, 1, 1, 1, False, True),
    (9, 3, 5, 7, True, True),
    (4, 1, 6, 33, False, False),
    (3, 17, 2, 10, True, False),
    (5, 2, 33, 3, False, True),
    (0, 2, 3, 4, True, True),
]
KINDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def run(mod, kind, d):
    """Calls mod's layer function of this kind; returns the tuple of outputs."""
    base = kind.split("_")[0]
    w = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    if base == "lstm":
        return mod.lstm_layer(d["x"], d["h0"], d["c0"], *w, reverse=d["reverse"])
    if base == "gru":
        return mod.gru_layer(d["x"], d["h0"], *w, reverse=d["reverse"])
    return mod.rnn_layer(d["x"], d["h0"], *w, nonlinearity=kind[4:], reverse=d["reverse"])


def check_against_reference(kind, dtype, T, B, I, H, reverse, bias, device, transform=None):
    d = layer_inputs(kind.split("_")[0], T, B, I, H, dtype=dtype, bias=bias, device=device)
    names = [k for k, v in d.items() if v is not None]
    ref = {k: (v.detach().double().cpu().requires_grad_() if v is not None else None)
           for k, v in d.items()}
    ours = {k: (v.detach().clone().requires_grad_() if v is not None else None)
            for k, v in d.items()}
    ref["reverse"] = ours["reverse"] = reverse
    call = dict(ours)
    if transform:
        call.update({k: transform(v) for k, v in ours.items() if k != "reverse" and v is not None})
    out = run(F, kind, call)
    exp = run(reference, kind, ref)
    for name, a, b in zip(("y", "h_n", "c_n"), out, exp):
        assert a.dtype == dtype and a.device.type == device
        assert a.shape == b.shape, name
        assert_close(a, b, dtype, msg=name)
    # Random upstream gradients for every output.
    g = torch.Generator().manual_seed(7)
    grads = [torch.randn(b.shape, generator=g, dtype=torch.float64) for b in exp]
    loss_ours = sum((a * gr.to(dtype=dtype, device=device)).sum() for a, gr in zip(out, grads))
    loss_ref = sum((b * gr).sum() for b, gr in zip(exp, grads))
    g_ours = torch.autograd.grad(loss_ours, [ours[n] for n in names])
    g_ref = torch.autograd.grad(loss_ref, [ref[n] for n in names], allow_unused=True)
    # Weight gradients sum over T*B products: allow for that accumulation in the half types.
    scale = 1.0 if dtype in (torch.float64, torch.float32) else 2.0
    for n, a, b in zip(names, g_ours, g_ref):
        b = torch.zeros_like(ref[n]) if b is None else b
        assert a.shape == b.shape, n
        assert_close(a, b, dtype, scale=scale * (max(T, 1) ** 0.5), msg=f"grad {n}")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "T{}B{}I{}H{}{}{}".format(
    *s[:4], "_rev" if s[4] else "", "" if s[5] else "_nobias"))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_layer_matches_reference(backend, kind, dtype, size):
    check_against_reference(kind, dtype, *size, device=device_of(backend))


@pytest.mark.parametrize("hoist", ["0", "1"], ids=["per_step", "hoisted"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_cpu_input_projection_both_ways(kind, dtype, hoist, monkeypatch):
    """The CPU backend computes the input projection over all steps at once or step by step,
    depending on the sizes (the sizes above are small, so they mostly run hoisted): both ways,
    forced by FUSEDRNN_CPU_HOIST, against the reference, in both directions."""
    import fusedrnn

    monkeypatch.setenv("FUSEDRNN_CPU_HOIST", hoist)
    with fusedrnn.backend("cpu"):
        for size in [(5, 9, 13, 67, False, True), (4, 33, 7, 20, True, True),
                     (3, 5, 4, 17, True, False)]:
            check_against_reference(kind, dtype, *size, device="cpu")


@pytest.mark.parametrize("kind", KINDS)
def test_non_contiguous_inputs(backend, kind):
    """Every input given as a strided view (transposed storage) gives the same result."""
    def strided(t):
        if t.dim() == 3:  # [T,B,I] stored as [B,T,I]
            return t.transpose(0, 1).contiguous().transpose(0, 1)
        if t.dim() == 2:
            return t.t().contiguous().t()
        return torch.stack([t, t], 1)[:, 0]
    check_against_reference(kind, torch.float64, 6, 3, 5, 7, True, True, device_of(backend),
                            transform=strided)


def test_output_is_contiguous_and_fresh(backend):
    d = layer_inputs("lstm", 3, 2, 4, 5, device=device_of(backend))
    y, h, c = F.lstm_layer(d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    assert y.is_contiguous()
    y.add_(1)  # h_n and c_n must not be views of y or of the saved cell states
    _, h2, c2 = F.lstm_layer(d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    torch.testing.assert_close(h, h2)
    torch.testing.assert_close(c, c2)
    assert h.data_ptr() != y.data_ptr()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_algorithm_persistent_through_the_dispatch(kind, dtype):
    """fusedrnn.algorithm("persistent") reaches the persistent kernels (run through SIMT here,
    on CUDA on a GPU): same results as the reference, forward and every gradient."""
    import fusedrnn
    backend = "cuda" if torch.cuda.is_available() and fusedrnn.build_info()["cuda"] else "simt"
    if backend == "simt" and not fusedrnn.build_info()["simt"]:
        pytest.skip("SIMT layer not built")
    with fusedrnn.backend(backend), fusedrnn.algorithm("persistent"):
        check_against_reference(kind, dtype, 5, 3, 4, 9, True, True, device_of(backend))


def test_algorithm_persistent_error_when_w_hh_does_not_fit():
    import fusedrnn
    if not fusedrnn.build_info()["simt"]:
        pytest.skip("SIMT layer not built")
    d = layer_inputs("lstm", 2, 1, 3, 4096, dtype=torch.float32)
    with fusedrnn.backend("simt"), fusedrnn.algorithm("persistent"):
        with pytest.raises(RuntimeError, match="does not fit"):
            F.lstm_layer(d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    with pytest.raises(ValueError, match="unknown algorithm"):
        with fusedrnn.algorithm("fast"):
            pass
