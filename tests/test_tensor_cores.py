"""The recurrent product on tensor cores (csrc/cuda/tile_mma.cuh), run through the SIMT layer's
mma.sync/ldmatrix emulation: which precision each dtype gets (bf16/fp16 mma in the forward, TF32
in their backward; fp32 on TF32 exactly when torch allows TF32 for cuDNN RNNs; fp64 never),
odd sizes around the mma tiles (16 rows, 8 columns, k-steps of 16/8), packed input and the LSTM
projection, against the fp64 reference. The per-dtype layer tests are in test_kernels.py."""
import contextlib

import pytest
import torch

import fusedrnn
from fusedrnn import _C

from conftest import TOL, backend_available, layer_inputs, tf32_rnns
from test_kernels import _bwd, _close, _fwd, _reference

pytestmark = pytest.mark.skipif(not backend_available("simt")[0], reason="SIMT layer not built")
ops = torch.ops.fusedrnn
G = {"lstm": 4, "gru": 3, "rnn_tanh": 1}


def _simt_count(counter, fn):
    """How many of `counter` (simt_stats()) running fn() took."""
    _C.simt_reset_stats()
    fn()
    return _C.simt_stats()[counter]


def _warp_ops(fn):
    return _simt_count("warp_ops", fn)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_which_kernels_use_tensor_cores(kind):
    # The FFMA product has no warp-level instruction; the tensor-core one is nothing but (mma.sync
    # and ldmatrix are warp collectives in the SIMT layer), so the counter tells them apart.
    base = kind.split("_")[0]
    used = {}
    for name, dtype, tf32 in [("fp64", torch.float64, False), ("fp32", torch.float32, False),
                              ("tf32", torch.float32, True), ("bf16", torch.bfloat16, False),
                              ("fp16", torch.float16, False)]:
        d = layer_inputs(base, 3, 5, 6, 9, dtype=dtype)
        grads = dict(y=torch.rand(3, 5, 9).to(dtype), h_n=torch.rand(5, 9).to(dtype))
        if base == "lstm":
            grads["c_n"] = torch.rand(5, 9).to(dtype)
        with (tf32_rnns() if tf32 else contextlib.nullcontext()):
            out = []
            fwd = _warp_ops(lambda: out.append(_fwd(kind, d, False, "simt")))
            bwd = _warp_ops(lambda: _bwd(kind, d, out[0], grads, False, "simt"))
        used[name] = (fwd > 0, bwd > 0)
    assert used == {"fp64": (False, False), "fp32": (False, False), "tf32": (True, True),
                    "bf16": (True, True), "fp16": (True, True)}


def test_tf32_follows_torchs_switches():
    d = layer_inputs("lstm", 4, 6, 10, 24, dtype=torch.float32)
    run = lambda: _fwd("lstm", d, False, "simt")[0]  # noqa: E731
    ieee = run()
    with tf32_rnns():
        tf32 = run()
    assert not torch.equal(ieee, tf32)  # inputs rounded to 10 mantissa bits: some output moves
    torch.testing.assert_close(tf32, ieee, **TOL[torch.float16])
    # The new per-operator switch decides as well (left as the fixture set it afterwards).
    try:
        torch.backends.cudnn.rnn.fp32_precision = "tf32"
        assert torch.equal(run(), tf32)
        torch.backends.cudnn.rnn.fp32_precision = "ieee"
        assert torch.equal(run(), ieee)
    finally:
        torch.backends.cudnn.allow_tf32 = False


# B around the 16-row tiles (1, 15, 17, 35), H around the 8/16-column tiles and k-steps.
SIZES = [(1, 5), (15, 16), (17, 24), (35, 13)]


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("prec", ["bf16", "fp16", "tf32"])
@pytest.mark.parametrize("B,H", SIZES)
def test_odd_sizes(kind, prec, B, H):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32}[prec]
    tol_dtype = torch.float16 if prec == "tf32" else dtype
    base = kind.split("_")[0]
    T, I = 3, 7
    d = layer_inputs(base, T, B, I, H, dtype=dtype, seed=B * 31 + H)
    gen = torch.Generator().manual_seed(B + H)
    rnd = lambda *s: (torch.rand(*s, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype)  # noqa: E731
    grads = dict(y=rnd(T, B, H), h_n=rnd(B, H))
    if base == "lstm":
        grads["c_n"] = rnd(B, H)
    ref_out, ref_grad = _reference(kind, d, grads, False, G[kind], H)
    with (tf32_rnns() if prec == "tf32" else contextlib.nullcontext()):
        out = _fwd(kind, d, False, "simt")
        res = _bwd(kind, d, out, grads, False, "simt")
    _close(out[0], ref_out["y"], dtype, "y", tol_dtype=tol_dtype)
    _close(out[1], ref_out["h_n"], dtype, "h_n", tol_dtype=tol_dtype)
    _close(res[0], ref_grad["x"], dtype, "dx", 2.0, tol_dtype)
    _close(res[1], ref_grad["h0"], dtype, "dh0", 2.0, tol_dtype)
    dw_hh = res[4] if base == "lstm" else res[3]
    _close(dw_hh, ref_grad["w_hh"], dtype, "dw_hh", 2.0, tol_dtype)


@pytest.mark.parametrize("prec", ["bf16", "tf32"])
@pytest.mark.parametrize("proj", [0, 5])
def test_packed_and_projection(prec, proj):
    # Module level, against torch.nn in fp64 on the same rounded weights: packed sequences of
    # different lengths (steps of 7, 6, 3 live rows) and the projection (W_hh is [4H, P]).
    dtype = torch.bfloat16 if prec == "bf16" else torch.float32
    torch.manual_seed(3)
    ref = torch.nn.LSTM(6, 18, num_layers=2, bidirectional=True, proj_size=proj).double()
    for p in ref.parameters():
        p.data = p.data.to(dtype).double()
    m = fusedrnn.LSTM(6, 18, num_layers=2, bidirectional=True, proj_size=proj)
    m.load_state_dict(ref.state_dict())
    m = m.to(dtype)
    lengths = [5, 4, 4, 2, 2, 2, 1]
    xs = [torch.randn(n, 6).to(dtype) for n in lengths]
    pack = lambda xs_: torch.nn.utils.rnn.pack_sequence(xs_, enforce_sorted=True)  # noqa: E731
    xd = [x.double().requires_grad_() for x in xs]
    y_ref, _ = ref(pack(xd))
    xf = [x.clone().requires_grad_() for x in xs]
    with fusedrnn.backend("simt"), (tf32_rnns() if prec == "tf32" else
                                    contextlib.nullcontext()):
        y, _ = m(pack(xf))
        w = torch.rand_like(y_ref.data)  # fixed weights of the loss, shared by both
        (y.data.double() * w).sum().backward()
    (y_ref.data * w).sum().backward()
    tol = TOL[torch.float16 if prec == "tf32" else dtype]
    torch.testing.assert_close(y.data.double(), y_ref.data, atol=2 * tol["atol"], rtol=2 * tol["rtol"])
    for a, b in zip(xf, xd):
        torch.testing.assert_close(a.grad.double(), b.grad, atol=4 * tol["atol"], rtol=4 * tol["rtol"])


def _async_copies(fn):
    return _simt_count("async_copies", fn)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_staging_by_cp_async(kind):
    """The tensor-core products, forward and backward, stage their chunks by cp.async (16-byte
    copies, two stages) when H keeps every row on 16-byte boundaries (a multiple of 8 halves or
    4 floats); otherwise, and in the FFMA kernels, through registers. Both paths are checked against the reference by
    test_odd_sizes (H = 16, 24 take cp.async, H = 5, 13 the registers; one chunk each) and by
    the next test (several chunks through both stages)."""
    base = kind.split("_")[0]
    copies = {}
    for name, dtype, tf32, H in [("bf16", torch.bfloat16, False, 16), ("fp16", torch.float16, False, 24),
                                 ("tf32", torch.float32, True, 12), ("bf16 odd", torch.bfloat16, False, 12),
                                 ("tf32 odd", torch.float32, True, 13), ("fp32", torch.float32, False, 16),
                                 ("fp64", torch.float64, False, 16)]:
        d = layer_inputs(base, 3, 5, 8, H, dtype=dtype)
        grads = dict(y=torch.rand(3, 5, H).to(dtype), h_n=torch.rand(5, H).to(dtype))
        if base == "lstm":
            grads["c_n"] = torch.rand(5, H).to(dtype)
        with (tf32_rnns() if tf32 else contextlib.nullcontext()):
            out = []
            fwd = _async_copies(lambda: out.append(_fwd(kind, d, False, "simt")))
            bwd = _async_copies(lambda: _bwd(kind, d, out[0], grads, False, "simt"))
        copies[name] = (fwd > 0, bwd > 0)
    assert copies == {"bf16": (True, True), "fp16": (True, True), "tf32": (True, True),
                      "bf16 odd": (False, False), "tf32 odd": (False, False),
                      "fp32": (False, False), "fp64": (False, False)}


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("prec", ["bf16", "tf32"])
def test_cp_async_pipeline_over_several_chunks(kind, prec):
    """H = 136 walks K in 3 chunks of 64 (LSTM, GRU) or 2 of 128 (RNN) forward and in 2-5 chunks
    of 128 backward (K = G*H) through the two cp.async stages, so a copy landing in the wrong
    stage or read before its wait shows up."""
    dtype = torch.bfloat16 if prec == "bf16" else torch.float32
    tol_dtype = torch.float16 if prec == "tf32" else dtype
    base = kind.split("_")[0]
    T, B, I, H = 3, 5, 7, 136
    d = layer_inputs(base, T, B, I, H, dtype=dtype, seed=11)
    out = []
    with (tf32_rnns() if prec == "tf32" else contextlib.nullcontext()):
        copies = _async_copies(lambda: out.append(_fwd(kind, d, False, "simt")))
    assert copies > 0
    gen = torch.Generator().manual_seed(5)
    grads = dict(y=torch.rand(T, B, H, generator=gen).to(dtype),
                 h_n=torch.rand(B, H, generator=gen).to(dtype))
    if base == "lstm":
        grads["c_n"] = torch.rand(B, H, generator=gen).to(dtype)
    with (tf32_rnns() if prec == "tf32" else contextlib.nullcontext()):
        res = []
        assert _async_copies(lambda: res.append(_bwd(kind, d, out[0], grads, False, "simt"))) > 0
    res = res[0]
    ref_out, ref_grad = _reference(kind, d, grads, False, G[kind], H)
    _close(out[0][0], ref_out["y"], dtype, "y", tol_dtype=tol_dtype)
    _close(out[0][1], ref_out["h_n"], dtype, "h_n", tol_dtype=tol_dtype)
    _close(res[0], ref_grad["x"], dtype, "dx", 2.0, tol_dtype)
    _close(res[1], ref_grad["h0"], dtype, "dh0", 2.0, tol_dtype)
    _close(res[4] if base == "lstm" else res[3], ref_grad["w_hh"], dtype, "dw_hh", 2.0, tol_dtype)
