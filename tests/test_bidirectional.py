"""Both directions of a bidirectional LSTM / GRU layer in one op (fusedrnn::lstm_forward_bidir,
gru_forward_bidir, lstm_backward_bidir, gru_backward_bidir; csrc/bidir_ops.h) and, through the
SIMT layer, in one persistent launch: blocks [0, n) run the forward direction and [n, 2n) the
reverse one, on the grid barrier or (forward) as one thread-block cluster each. Oracle: the
single-direction ops run one after the other, which the pair must reproduce exactly where the
two use the same slicing; the modules' training through it against torch.nn."""
import contextlib

import pytest
import torch

import fusedrnn
from conftest import TOL, backend_available, bidir_inputs

pytestmark = pytest.mark.skipif(not fusedrnn.build_info()["simt"], reason="SIMT layer not built")

ops = torch.ops.fusedrnn
P = torch.ops.fusedrnn_persistent
_C = fusedrnn._ops._C


@pytest.fixture(autouse=True)
def _seeded():
    _C.simt_set_seed(7)
    yield
    _C.simt_set_seed(None)
    P.set_tuning(0, 0, 0, 0)


@contextlib.contextmanager
def tuning(max_blocks=0, cluster=0):
    P.set_tuning(max_blocks, 0, 0, cluster)
    try:
        yield
    finally:
        P.set_tuning(0, 0, 0, 0)


inputs = bidir_inputs  # x, batch_sizes, h0, c0, [w, w_r]


def pair(kind, x, bs, h0, c0, w, backend="simt", algorithm="persistent", save=False):
    """The pair op's outputs: y, h_n (c_n), and with save the saved tensors."""
    if kind == "lstm":
        out = ops.lstm_forward_bidir(x, h0, c0, *w[0], *w[1], backend, bs, algorithm, save)
        return out if save else out[:3]
    out = ops.gru_forward_bidir(x, h0, *w[0], *w[1], backend, bs, algorithm, save)
    return out if save else out[:2]


def halves(kind, x, bs, h0, c0, w, backend="simt", algorithm="persistent"):
    outs = []
    for d in range(2):
        if kind == "lstm":
            outs.append(ops.lstm_forward(x, h0[d], c0[d], *w[d], d == 1, backend, bs, None,
                                         algorithm, False)[:3])
        else:
            outs.append(ops.gru_forward(x, h0[d], *w[d], d == 1, backend, bs, algorithm,
                                        False)[:2])
    res = [torch.cat([outs[0][0], outs[1][0]], -1), torch.stack([outs[0][1], outs[1][1]])]
    if kind == "lstm":
        res.append(torch.stack([outs[0][2], outs[1][2]]))
    return res


def halves_saved(kind, x, bs, h0, c0, w, backend="simt", algorithm="persistent"):
    """The single-direction forward ops with save: (outputs as pair(save=True), each direction's
    full tuple)."""
    outs = []
    for d in range(2):
        if kind == "lstm":
            outs.append(ops.lstm_forward(x, h0[d], c0[d], *w[d], d == 1, backend, bs, None,
                                         algorithm, True))
        else:
            outs.append(ops.gru_forward(x, h0[d], *w[d], d == 1, backend, bs, algorithm, True))
    k = 3 if kind == "lstm" else 2  # y, h_n (c_n), then the saved tensors
    res = [torch.cat([outs[0][0], outs[1][0]], -1)]
    res += [torch.stack([outs[0][i], outs[1][i]]) for i in range(1, len(outs[0]))]
    assert len(res) == k + 2
    return res, outs


def grads_in(kind, x, h0, c0, w, seed):
    """Fresh random dy [..,2H], dh_n (dc_n) [2,B,H] for the backward ops."""
    g = torch.Generator().manual_seed(seed)
    H = w[0][1].shape[1]
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(x.dtype)  # noqa: E731
    dy = rnd(*x.shape[:-1], 2 * H)
    return dy, rnd(*h0.shape), (rnd(*c0.shape) if kind == "lstm" else None)


def pair_backward(kind, dy, dh, dc, x, h0, c0, w, y, saved, bs, backend="simt",
                  algorithm="persistent"):
    W = (w[0][0], w[0][1], w[1][0], w[1][1])
    if kind == "lstm":
        return ops.lstm_backward_bidir(dy, dh, dc, x, h0, c0, *W, y, *saved, backend, bs,
                                       algorithm)
    return ops.gru_backward_bidir(dy, dh, x, h0, *W, y, *saved, backend, bs, algorithm)


def halves_backward(kind, dy, dh, dc, x, h0, c0, w, y, saved, bs, backend="simt",
                    algorithm="persistent"):
    """The single-direction backward ops, in the pair's output order (dx summed)."""
    H = w[0][1].shape[1]
    outs = []
    for d in range(2):
        yd, dyd = y[..., d * H:(d + 1) * H], dy[..., d * H:(d + 1) * H]
        if kind == "lstm":
            o = ops.lstm_backward(dyd, dh[d], dc[d], x, h0[d], c0[d], w[d][0], w[d][1], yd,
                                  saved[0][d], saved[1][d], d == 1, backend, bs, None,
                                  algorithm)[:6]
        else:
            o = ops.gru_backward(dyd, dh[d], x, h0[d], w[d][0], w[d][1], yd, saved[0][d],
                                 saved[1][d], d == 1, backend, bs, algorithm)
        outs.append(o)
    n_state = 3 if kind == "lstm" else 2  # dx, dh0 (dc0)
    return ([outs[0][0] + outs[1][0]] + [torch.stack([outs[0][i], outs[1][i]])
                                         for i in range(1, n_state)]
            + list(outs[0][n_state:]) + list(outs[1][n_state:]))


def launches(fn):
    _C.simt_reset_stats()
    out = fn()
    s = _C.simt_stats()
    return s["launches"], s["cluster_barriers"], out


# path: the tuning that picks it; both directions then have the same slicing as a single one
PATHS = {"cluster": dict(max_blocks=4, cluster=1), "grid": dict(max_blocks=5, cluster=-1)}


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_one_launch_equals_two(kind, dtype, path, packed):
    T, B, I, H = 5, 4, 3, 16
    x, bs, h0, c0, w = inputs(kind, T, B, I, H, dtype, packed, seed=3)
    with tuning(**PATHS[path]):
        n2, cb2, two = launches(lambda: halves(kind, x, bs, h0, c0, w))
        n1, cb1, one = launches(lambda: pair(kind, x, bs, h0, c0, w))
    assert (n1, n2) == (1, 2)  # both directions in one launch
    assert (cb1 > 0) == (path == "cluster") and cb1 == cb2
    for a, b, n in zip(one, two, ["y", "h_n", "c_n"]):
        assert a.shape == b.shape and a.dtype == dtype, n
        assert torch.equal(a, b), f"{n}: {(a.double() - b.double()).abs().max()}"


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_one_launch_saves_what_two_save(kind, dtype, path, packed):
    """save=True: the gates and cells (ghn) of both directions in one [2, ...] tensor each, those
    of the single-direction ops exactly; save=False: empty."""
    T, B, I, H = 5, 4, 3, 16
    x, bs, h0, c0, w = inputs(kind, T, B, I, H, dtype, packed, seed=13)
    with tuning(**PATHS[path]):
        two, _ = halves_saved(kind, x, bs, h0, c0, w)
        n1, _, one = launches(lambda: pair(kind, x, bs, h0, c0, w, save=True))
        lean = pair(kind, x, bs, h0, c0, w, save=False)
    assert n1 == 1
    names = ["y", "h_n"] + (["c_n", "gates", "cells"] if kind == "lstm" else ["gates", "ghn"])
    for a, b, n in zip(one, two, names):
        assert a.shape == b.shape and a.dtype == dtype, n
        assert torch.equal(a, b), f"{n}: {(a.double() - b.double()).abs().max()}"
    assert len(lean) == len(names) - 2
    full = (ops.lstm_forward_bidir(x, h0, c0, *w[0], *w[1], "simt", bs, "persistent", False)
            if kind == "lstm" else
            ops.gru_forward_bidir(x, h0, *w[0], *w[1], "simt", bs, "persistent", False))
    assert all(t.shape == (0,) for t in full[-2:])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("H", [16, 13])
def test_backward_one_launch_equals_two(kind, dtype, packed, H):
    """Both directions' backward in one launch (blocks [0, n) the forward direction, [n, 2n) the
    reverse one, reading their halves of dy and y [.., 2H]) against the single-direction backward
    ops, exactly: dx (summed), dh0 (dc0) and each direction's weight and bias gradients. Odd H
    too (the half types then read their inputs without the word prefetch)."""
    T, B, I = 5, 4, 3
    x, bs, h0, c0, w = inputs(kind, T, B, I, H, dtype, packed, seed=21)
    with tuning(max_blocks=3, cluster=-1):
        fwd = pair(kind, x, bs, h0, c0, w, save=True)
        y, saved = fwd[0], fwd[-2:]
        dy, dh, dc = grads_in(kind, x, h0, c0, w, seed=22)
        n2, _, two = launches(lambda: halves_backward(kind, dy, dh, dc, x, h0, c0, w, y, saved,
                                                      bs))
        n1, _, one = launches(lambda: pair_backward(kind, dy, dh, dc, x, h0, c0, w, y, saved,
                                                    bs))
    assert (n1, n2) == (1, 2)
    assert len(one) == len(two) == (9 if kind == "lstm" else 10)
    for i, (a, b) in enumerate(zip(one, two)):
        assert a.shape == b.shape and a.dtype == dtype, i
        assert torch.equal(a, b), f"output {i}: {(a.double() - b.double()).abs().max()}"


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_backward_default_plan_and_fallbacks(kind):
    """The backward pair without tuning (half the SMs each) is within tolerance of the single
    ops; on the cpu backend and with the stepwise algorithm it is the single ops exactly."""
    x, bs, h0, c0, w = inputs(kind, 6, 3, 4, 24, torch.float32, False, seed=25)
    dy, dh, dc = grads_in(kind, x, h0, c0, w, seed=26)
    for backend, algorithm, n_want in (("simt", "persistent", 1), ("cpu", "auto", 0),
                                       ("simt", "stepwise", None)):
        fwd = pair(kind, x, bs, h0, c0, w, backend, algorithm, save=True)
        y, saved = fwd[0], fwd[-2:]
        n, _, one = launches(lambda: pair_backward(kind, dy, dh, dc, x, h0, c0, w, y, saved, bs,
                                                   backend, algorithm))
        two = halves_backward(kind, dy, dh, dc, x, h0, c0, w, y, saved, bs, backend, algorithm)
        if n_want is not None:
            assert n == n_want
        else:
            assert n > 2  # stepwise: launches a step
        for a, b in zip(one, two):
            if backend == "simt" and algorithm == "persistent":
                tol = TOL[torch.float32]
                torch.testing.assert_close(a, b, atol=tol["atol"], rtol=tol["rtol"])
            else:
                assert torch.equal(a, b)


def test_backward_bad_input_is_a_clear_error():
    x, bs, h0, c0, w = inputs("lstm", 3, 2, 3, 8, torch.float32, False, seed=1)
    fwd = pair("lstm", x, bs, h0, c0, w, save=True)
    y, saved = fwd[0], fwd[-2:]
    dy, dh, dc = grads_in("lstm", x, h0, c0, w, seed=2)
    for backend in ("cpu", "simt"):
        call = lambda **kw: pair_backward(  # noqa: E731
            "lstm", kw.get("dy", dy), kw.get("dh", dh), dc, x, h0, c0, w, kw.get("y", y),
            kw.get("saved", saved), bs, backend)
        with pytest.raises(RuntimeError, match=r"dy must have 2H features"):
            call(dy=dy[..., :8])
        with pytest.raises(RuntimeError, match=r"y must have 2H features"):
            call(y=y[..., :12])
        with pytest.raises(RuntimeError, match=r"dh_n must be \[2, B, H\]"):
            call(dh=dh[0])
        with pytest.raises(RuntimeError, match=r"gates must hold both directions"):
            call(saved=(saved[0][0], saved[1]))
        with pytest.raises(RuntimeError, match=r"gates"):
            call(saved=(saved[0][:, :2], saved[1]))  # a direction's gates of other rows


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_default_plan_and_fallbacks(kind):
    """Without tuning (the grid plan on half the SMs each, or the clusters where preferred) the
    pair is within the dtype's tolerance of two calls; on the cpu backend and with the stepwise
    algorithm it is the two single-direction ops one after the other (exactly)."""
    x, bs, h0, c0, w = inputs(kind, 6, 3, 4, 24, torch.float32, False, seed=5)
    n, _, one = launches(lambda: pair(kind, x, bs, h0, c0, w))
    assert n == 1
    for a, b in zip(one, halves(kind, x, bs, h0, c0, w)):
        tol = TOL[torch.float32]
        torch.testing.assert_close(a, b, atol=tol["atol"], rtol=tol["rtol"])
    for backend, algorithm in (("cpu", "auto"), ("simt", "stepwise"), ("simt", "auto")):
        n, _, one = launches(lambda: pair(kind, x, bs, h0, c0, w, backend, algorithm))
        assert n == (0 if backend == "cpu" else 2 * 6)  # stepwise: a launch a step
        for a, b in zip(one, halves(kind, x, bs, h0, c0, w, backend, algorithm)):
            assert torch.equal(a, b)


def test_bad_state_is_a_clear_error():
    x, bs, h0, c0, w = inputs("lstm", 3, 2, 3, 8, torch.float32, False, seed=1)
    with pytest.raises(RuntimeError, match=r"h0 must be \[2, B, H\]"):
        pair("lstm", x, bs, h0[0], c0, w)
    with pytest.raises(RuntimeError, match=r"c0 must be \[2, B, H\]"):
        pair("lstm", x, bs, h0, c0[:1], w)
    w_bad = [w[0], (w[1][0][:, :2], *w[1][1:])]  # the reverse direction's W_ih of another I
    with pytest.raises(RuntimeError):
        pair("lstm", x, bs, h0, c0, w_bad)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_opcheck(kind, packed):
    x, bs, h0, c0, w = inputs(kind, 3, 2, 3, 8, torch.float64, packed, seed=2)
    op = ops.lstm_forward_bidir if kind == "lstm" else ops.gru_forward_bidir
    bop = ops.lstm_backward_bidir if kind == "lstm" else ops.gru_backward_bidir
    state = (h0, c0) if kind == "lstm" else (h0,)
    dy, dh, dc = grads_in(kind, x, h0, c0, w, seed=3)
    W = (w[0][0], w[0][1], w[1][0], w[1][1])
    for backend in ("cpu", "simt"):
        for save in (False, True):
            torch.library.opcheck(op, (x, *state, *w[0], *w[1], backend, bs, "persistent",
                                       save))
        fwd = pair(kind, x, bs, h0, c0, w, backend, save=True)
        dstate = (dh, dc) if kind == "lstm" else (dh,)
        torch.library.opcheck(bop, (dy, *dstate, x, *state, *W, fwd[0], *fwd[-2:], backend, bs,
                                    "persistent"))


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_module_inference_one_launch_a_layer(cls, packed):
    """A 2-layer bidirectional module in inference on the persistent kernels (simt): one launch
    a layer, the same outputs as the stepwise kernels (and torch.nn) within tolerance; with
    autograd recording also one forward launch a layer (saving for backward)."""
    torch.manual_seed(0)
    m = cls(5, 12, num_layers=2, bidirectional=True)
    ref = getattr(torch.nn, cls.__name__)(5, 12, num_layers=2, bidirectional=True)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(6, 3, 5)
    if packed:
        x = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([6, 4, 2]))
    with torch.no_grad():
        want = ref(x)
    with fusedrnn.backend("simt"):
        with torch.no_grad(), fusedrnn.algorithm("persistent"):
            n, _, got = launches(lambda: m(x))
        with fusedrnn.algorithm("persistent"):
            n_train, _, _ = launches(lambda: m(x))
    assert n == 2 and n_train == 2  # training too: both directions in one launch a layer
    flat = lambda o: [o[0].data if packed else o[0]] + (list(o[1]) if isinstance(o[1], tuple)  # noqa: E731
                                                       else [o[1]])
    for a, b in zip(flat(got), flat(want)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-4)


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_module_training_one_launch_a_layer(cls, packed, dtype):
    """Training a 2-layer bidirectional module on the persistent kernels (simt): one forward and
    one backward launch a layer (BidirLSTMFunction / BidirGRUFunction), and torch.nn's outputs
    and gradients (x, h0 (c0), every parameter) within tolerance."""
    torch.manual_seed(0)
    m = cls(5, 12, num_layers=2, bidirectional=True).to(dtype)
    ref = getattr(torch.nn, cls.__name__)(5, 12, num_layers=2, bidirectional=True).to(dtype)
    ref.load_state_dict(m.state_dict())
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 3, 5, generator=g, dtype=dtype)
    h0 = torch.randn(4, 3, 12, generator=g, dtype=dtype)
    c0 = torch.randn(4, 3, 12, generator=g, dtype=dtype)
    lengths = torch.tensor([6, 4, 2])

    def run(mod, count=False):
        xs, hs, cs = (t.clone().requires_grad_() for t in (x, h0, c0))
        inp = torch.nn.utils.rnn.pack_padded_sequence(xs, lengths) if packed else xs
        state = (hs, cs) if cls is fusedrnn.LSTM else hs
        _C.simt_reset_stats()
        out, hn = mod(inp, state)
        n_fwd = _C.simt_stats()["launches"]
        y = out.data if packed else out
        finals = list(hn) if isinstance(hn, tuple) else [hn]
        loss = (y * torch.linspace(-1, 1, y.numel(), dtype=dtype).view_as(y)).sum() + sum(
            (f * f).sum() for f in finals)
        _C.simt_reset_stats()
        loss.backward()
        n_bwd = _C.simt_stats()["launches"]
        grads = [xs.grad, hs.grad] + ([cs.grad] if cls is fusedrnn.LSTM else [])
        grads += [p.grad for p in mod.parameters()]
        return [y] + finals + grads, (n_fwd, n_bwd)

    with fusedrnn.backend("simt"), fusedrnn.algorithm("persistent"):
        got, counts = run(m)
    want, _ = run(ref)
    assert counts == (2, 2)
    tol = dict(atol=1e-9, rtol=1e-9) if dtype == torch.float64 else dict(atol=2e-5, rtol=2e-4)
    for i, (a, b) in enumerate(zip(got, want)):
        torch.testing.assert_close(a, b, **tol, msg=lambda m: f"output {i}: {m}")


# ------------------------------------------------------------------ on a GPU (skipped without one)
cuda_only = pytest.mark.skipif(not backend_available("cuda")[0],
                               reason=backend_available("cuda")[1])


def _to_cuda(x, h0, c0, w):
    cu = lambda t: None if t is None else t.cuda()  # noqa: E731
    return cu(x), cu(h0), cu(c0), [tuple(cu(t) for t in d) for d in w]


@cuda_only
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_cuda_pairs_equal_single_ops(kind, dtype, packed):
    """The CUDA kernels: both directions' forward (save) and backward in one launch each against
    the single-direction ops on the same slicing, exactly (the SIMT tests' oracle, on the GPU)."""
    x, bs, h0, c0, w = inputs(kind, 7, 5, 3, 16, dtype, packed, seed=31)
    dy, dh, dc = grads_in(kind, x, h0, c0, w, seed=32)
    x, h0, c0, w = _to_cuda(x, h0, c0, w)
    dy, dh, dc = _to_cuda(dy, dh, dc, [])[:3]
    with tuning(max_blocks=3, cluster=-1):
        one = pair(kind, x, bs, h0, c0, w, "cuda", save=True)
        two, _ = halves_saved(kind, x, bs, h0, c0, w, "cuda")
        y, saved = one[0], one[-2:]
        b1 = pair_backward(kind, dy, dh, dc, x, h0, c0, w, y, saved, bs, "cuda")
        b2 = halves_backward(kind, dy, dh, dc, x, h0, c0, w, y, saved, bs, "cuda")
    for i, (a, b) in enumerate(zip(list(one) + list(b1), list(two) + list(b2))):
        assert a.shape == b.shape and a.dtype == dtype, i
        assert torch.equal(a, b), f"output {i}: {(a.double() - b.double()).abs().max()}"


@cuda_only
@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_cuda_module_training_matches_cudnn(cls, packed):
    """A 2-layer bidirectional module trained on the persistent kernels (fp64: FFMA) against
    torch.nn (cuDNN): outputs and every gradient."""
    torch.manual_seed(0)
    m = cls(5, 12, num_layers=2, bidirectional=True).double().cuda()
    ref = getattr(torch.nn, cls.__name__)(5, 12, num_layers=2,
                                         bidirectional=True).double().cuda()
    ref.load_state_dict(m.state_dict())
    g = torch.Generator().manual_seed(6)
    x0 = torch.randn(6, 3, 5, generator=g, dtype=torch.float64).cuda()
    lengths = torch.tensor([6, 4, 2])

    def run(mod):
        x = x0.clone().requires_grad_()
        inp = torch.nn.utils.rnn.pack_padded_sequence(x, lengths) if packed else x
        out, hn = mod(inp)
        y = out.data if packed else out
        finals = list(hn) if isinstance(hn, tuple) else [hn]
        loss = (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype, device=y.device)
                .view_as(y)).sum() + sum((f * f).sum() for f in finals)
        loss.backward()
        return [y] + finals + [x.grad] + [p.grad for p in mod.parameters()]

    with fusedrnn.algorithm("persistent"):
        got = run(m)
    want = run(ref)
    for i, (a, b) in enumerate(zip(got, want)):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9, msg=lambda m: f"output {i}: {m}")
