"""The stepwise CUDA kernels on packed input (batch_sizes) and with the LSTM projection (w_hr),
through the SIMT layer (backend "simt") and, with a GPU, on CUDA tensors (backend "cuda").

The ops are called directly and compared with fusedrnn.reference run in fp64 on each sequence
alone (so each row must stop at its own length, start from h0 at its own end in the reverse
direction, and leave its own last state in h_n / c_n); every gradient against torch.autograd
through that reference. Batches of 35 rows span two row tiles of the forward kernels (32 rows),
so a step whose live rows end inside, or at the edge of, a tile is exercised; fp64 gradcheck on
small sizes. The persistent kernels (algorithm "persistent") take packed input too: the same
checks through them, with W_hh sliced over several blocks and staged in small chunks; they refuse
the projection, naming the argument.
"""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fusedrnn import functional as F
from fusedrnn import reference

import fusedrnn
from conftest import TOL

ops = torch.ops.fusedrnn
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


def _lengths(B, T, seed):
    """Random lengths in [1, T], the longest = T, sorted decreasing (PackedSequence order)."""
    g = torch.Generator().manual_seed(seed)
    L = torch.randint(1, T + 1, (B,), generator=g)
    L[0] = T
    return sorted(L.tolist(), reverse=True)


def _inputs(kind, lengths, I, H, P, dtype, device, seed, bias=True):
    """Packed inputs of one layer (values rounded to dtype), as a dict of tensors."""
    g = torch.Generator().manual_seed(seed)
    T, B, G = max(lengths), len(lengths), GATES[kind]

    def rnd(*shape, scale=1.0):
        return ((torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale).to(
            device=device, dtype=dtype)

    packed = pack_padded_sequence(rnd(T, B, I).cpu(), torch.tensor(lengths))
    k = H ** -0.5
    d = dict(x=packed.data.to(device), batch_sizes=packed.batch_sizes, h0=rnd(B, P, scale=0.8),
             w_ih=rnd(G * H, I, scale=k), w_hh=rnd(G * H, P, scale=k),
             b_ih=rnd(G * H, scale=k) if bias else None, b_hh=rnd(G * H, scale=k) if bias else None)
    if kind == "lstm":
        d["c0"] = rnd(B, H)
        d["w_hr"] = rnd(P, H, scale=k) if P != H else None
    return d


def _run(kind, d, reverse, backend, grads, algorithm="auto"):
    """Forward and backward op; returns (outputs dict, gradients dict)."""
    bs = d["batch_sizes"]
    w = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    if kind == "lstm":
        y, h, c, gates, cells = ops.lstm_forward(d["x"], d["h0"], d["c0"], *w, reverse, backend,
                                                 bs, d["w_hr"], algorithm)
        r = ops.lstm_backward(grads["y"], grads["h_n"], grads["c_n"], d["x"], d["h0"], d["c0"],
                              d["w_ih"], d["w_hh"], y, gates, cells, reverse, backend, bs,
                              d["w_hr"], algorithm)
        g = dict(zip(["x", "h0", "c0", "w_ih", "w_hh", "b_ih"], r))
        if d["w_hr"] is not None:
            g["w_hr"] = r[6]
        else:
            assert r[6].numel() == 0
        return dict(y=y, h_n=h, c_n=c), g
    if kind == "gru":
        y, h, gates, ghn = ops.gru_forward(d["x"], d["h0"], *w, reverse, backend, bs, algorithm)
        r = ops.gru_backward(grads["y"], grads["h_n"], d["x"], d["h0"], d["w_ih"], d["w_hh"], y,
                             gates, ghn, reverse, backend, bs, algorithm)
        return dict(y=y, h_n=h), dict(zip(["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"], r))
    y, h = ops.rnn_forward(d["x"], d["h0"], *w, "tanh", reverse, backend, bs)
    r = ops.rnn_backward(grads["y"], grads["h_n"], d["x"], d["h0"], d["w_ih"], d["w_hh"], y,
                         "tanh", reverse, backend, bs)
    return dict(y=y, h_n=h), dict(zip(["x", "h0", "w_ih", "w_hh", "b_ih"], r))


def _reference(kind, d, lengths, reverse, grads):
    """fp64 reference: each sequence run alone; gradients by autograd through it."""
    r = {k: v.detach().double().cpu().requires_grad_() for k, v in d.items()
         if v is not None and k != "batch_sizes"}
    bs = d["batch_sizes"]
    padded, _ = pad_packed_sequence(torch.nn.utils.rnn.PackedSequence(r["x"], bs))
    w = (r["w_ih"], r["w_hh"], r.get("b_ih"), r.get("b_hh"))
    ys, hs, cs = [], [], []
    for b, L in enumerate(lengths):
        x, h0 = padded[:L, b:b + 1], r["h0"][b:b + 1]
        if kind == "lstm":
            y, h, c = reference.lstm_layer(x, h0, r["c0"][b:b + 1], *w, reverse=reverse,
                                           w_hr=r.get("w_hr"))
            cs.append(c)
        elif kind == "gru":
            y, h = reference.gru_layer(x, h0, *w, reverse=reverse)
        else:
            y, h = reference.rnn_layer(x, h0, *w, reverse=reverse)
        ys.append(y[:, 0])
        hs.append(h)
    y = pack_padded_sequence(torch.nn.utils.rnn.pad_sequence(ys), torch.tensor(lengths)).data
    outs = dict(y=y, h_n=torch.cat(hs))
    if kind == "lstm":
        outs["c_n"] = torch.cat(cs)
    loss = sum((outs[k] * grads[k].double().cpu()).sum() for k in outs)
    names = list(r)
    g = torch.autograd.grad(loss, [r[k] for k in names], allow_unused=True)
    return ({k: v.detach() for k, v in outs.items()},
            {k: (gi if gi is not None else torch.zeros_like(r[k])) for k, gi in zip(names, g)})


def _close(actual, expected, dtype, what, scale=1.0):
    tol = TOL[dtype]
    mag = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    assert actual.dtype == dtype and actual.is_contiguous(), what
    assert actual.shape == expected.shape, f"{what}: {actual.shape} vs {expected.shape}"
    torch.testing.assert_close(actual.double().cpu(), expected, atol=tol["atol"] * scale * mag,
                               rtol=tol["rtol"] * scale, msg=lambda m: f"{what}: {m}")


def _check(kind, d, lengths, reverse, backend, dtype, seed, algorithm="auto"):
    g = torch.Generator().manual_seed(seed + 1)
    dev = d["x"].device
    rnd = lambda *s: (torch.rand(*s, generator=g, dtype=torch.float64) * 2 - 1).to(dev, dtype)
    N, B, P = d["x"].shape[0], len(lengths), d["h0"].shape[1]
    grads = dict(y=rnd(N, P), h_n=rnd(B, P))
    if kind == "lstm":
        grads["c_n"] = rnd(B, d["c0"].shape[1])
    ref_out, ref_grad = _reference(kind, d, lengths, reverse, grads)
    out, res = _run(kind, d, reverse, backend, grads, algorithm)
    for k in ref_out:
        _close(out[k], ref_out[k], dtype, k)
    scale = 2.0 if dtype in (torch.float16, torch.bfloat16) else 1.0
    for k in res:
        _close(res[k], ref_grad[k], dtype, "d" + k, scale)
    if kind == "gru":
        _close(res["b_hh"], ref_grad["b_hh"], dtype, "db_hh", scale)


CASES = [  # (B, T, I, H, seed): tiles straddled at B = 35 (forward rows 32, backward 16)
    (5, 7, 3, 6, 1),
    (35, 6, 4, 9, 2),
]


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_packed(kind, dtype, reverse, kernel_backend):
    cases = CASES if dtype in (torch.float64, torch.float32) else CASES[:1]
    for B, T, I, H, seed in cases:
        lengths = _lengths(B, T, seed)
        d = _inputs(kind, lengths, I, H, H, dtype, "cuda" if kernel_backend == "cuda" else "cpu", seed)
        _check(kind, d, lengths, reverse, kernel_backend, dtype, seed)


@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
def test_lstm_projection(dtype, reverse, packed, kernel_backend):
    """Odd P < H; dense input is the packed case with all lengths equal."""
    cases = [(4, 5, 3, 7, 3, 11)] + ([(35, 4, 5, 9, 5, 12)] if dtype == torch.float64 else [])
    for B, T, I, H, P, seed in cases:
        lengths = _lengths(B, T, seed) if packed else [T] * B
        d = _inputs("lstm", lengths, I, H, P, dtype, "cuda" if kernel_backend == "cuda" else "cpu",
                    seed)
        if not packed:  # the op's dense layout [T,B,K]; the reference is the same computation
            _check_dense_projection(d, T, B, reverse, kernel_backend, dtype, seed, lengths)
        else:
            _check("lstm", d, lengths, reverse, kernel_backend, dtype, seed)


def _check_dense_projection(d, T, B, reverse, backend, dtype, seed, lengths):
    """Dense input: the same rows as the packed layout of equal lengths, viewed as [T,B,K]."""
    dense = dict(d, x=d["x"].view(T, B, -1), batch_sizes=None)
    g = torch.Generator().manual_seed(seed + 1)
    rnd = lambda *s: (torch.rand(*s, generator=g, dtype=torch.float64) * 2 - 1).to(
        d["x"].device, dtype)
    P, H = d["h0"].shape[1], d["c0"].shape[1]
    grads = dict(y=rnd(T, B, P), h_n=rnd(B, P), c_n=rnd(B, H))
    out, res = _run("lstm", dense, reverse, backend, grads)
    ref_out, ref_grad = _reference("lstm", d, lengths, reverse,
                                   dict(grads, y=grads["y"].reshape(T * B, P)))
    scale = 2.0 if dtype in (torch.float16, torch.bfloat16) else 1.0
    _close(out["y"].reshape(T * B, P), ref_out["y"], dtype, "y")
    _close(out["h_n"], ref_out["h_n"], dtype, "h_n")
    _close(out["c_n"], ref_out["c_n"], dtype, "c_n")
    _close(res["x"].reshape(T * B, -1), ref_grad["x"], dtype, "dx", scale)
    for k in ("h0", "c0", "w_ih", "w_hh", "b_ih", "w_hr"):
        _close(res[k], ref_grad[k], dtype, "d" + k, scale)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("kind", ["lstm_proj", "lstm", "gru", "rnn"])
def test_gradcheck_packed(kind, reverse, kernel_backend):
    base = kind.split("_")[0]
    lengths = [4, 3, 1]
    H = 4
    P = 3 if kind == "lstm_proj" else H
    dev = "cuda" if kernel_backend == "cuda" else "cpu"
    d = _inputs(base, lengths, 2, H, P, torch.float64, dev, seed=5)
    bs = d.pop("batch_sizes")
    names = [k for k, v in d.items() if v is not None]
    args = [d[k].clone().requires_grad_() for k in names]

    def f(*a):
        kw = dict(zip(names, a))
        w = (kw["w_ih"], kw["w_hh"], kw["b_ih"], kw["b_hh"])
        with fusedrnn.backend(kernel_backend):
            if base == "lstm":
                return F.lstm_layer(kw["x"], kw["h0"], kw["c0"], *w, reverse=reverse,
                                    batch_sizes=bs, w_hr=kw.get("w_hr"))
            if base == "gru":
                return F.gru_layer(kw["x"], kw["h0"], *w, reverse=reverse, batch_sizes=bs)
            return F.rnn_layer(kw["x"], kw["h0"], *w, reverse=reverse, batch_sizes=bs)

    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.fixture(params=["grid", "flags", "cluster"])
def small_slices(request):
    """Persistent plan knobs (test-only): W_hh over several blocks, and either K staged in chunks
    of 4 (the grid-barrier forward), or h staged whole on the grid (2- and 4-byte types: the
    flag-word exchange, where a reverse packed row becoming live starts from h0; fp64: the
    grid barrier), or at most 4 blocks of several units (the cluster forward, where the device
    has clusters: sm_90, the SIMT layer's default)."""
    tune = torch.ops.fusedrnn_persistent.set_tuning
    if request.param == "grid":
        tune(0, 4, 64)
    elif request.param == "flags":
        tune(0, 0, 64, -1)
    else:
        tune(4, 0, 64, 1)  # the cluster forward whenever it fits (FFMA too)
    fusedrnn._ops._C.simt_reset_stats()
    try:
        yield
        # The SIMT layer counts its cluster barriers; a GPU's are not counted.
        if request.getfixturevalue("kernel_backend") == "simt":
            barriers = fusedrnn._ops._C.simt_stats()["cluster_barriers"]
            assert (barriers > 0) == (request.param == "cluster"), barriers
    finally:
        tune(0, 0, 0)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16],
                         ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_persistent_packed(kind, dtype, reverse, kernel_backend, small_slices):
    for B, T, I, H, seed in [(5, 7, 3, 6, 1), (9, 5, 4, 9, 4)]:
        lengths = _lengths(B, T, seed)
        d = _inputs(kind, lengths, I, H, H, dtype, "cuda" if kernel_backend == "cuda" else "cpu", seed)
        _check(kind, d, lengths, reverse, kernel_backend, dtype, seed, algorithm="persistent")


def test_persistent_refuses_projection(kernel_backend):
    """algorithm 'persistent' cannot take the projection: a clear error naming w_hr; 'auto'
    runs it (stepwise)."""
    d = _inputs("lstm", [2, 2], 3, 4, 2, torch.float64,
                "cuda" if kernel_backend == "cuda" else "cpu", seed=9)
    x = d["x"].view(2, 2, 3)  # dense input
    w = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    args = (x, d["h0"], d["c0"], *w, False, kernel_backend, None, d["w_hr"])
    with pytest.raises(RuntimeError, match="persistent.*w_hr"):
        ops.lstm_forward(*args, "persistent")
    y, h, c, gates, cells = ops.lstm_forward(*args, "auto")
    with pytest.raises(RuntimeError, match="persistent.*w_hr"):
        ops.lstm_backward(torch.ones_like(y), torch.ones_like(h), torch.ones_like(c), x,
                          d["h0"], d["c0"], d["w_ih"], d["w_hh"], y, gates, cells, False,
                          kernel_backend, None, d["w_hr"], "persistent")
