"""Both directions of a bidirectional LSTM / GRU layer in one op (fusedrnn::lstm_forward_bidir,
gru_forward_bidir; csrc/bidir_ops.h) and, through the SIMT layer, in one persistent launch:
blocks [0, n) run the forward direction and [n, 2n) the reverse one, on the grid barrier or as
one thread-block cluster each. Oracle: the single-direction ops (save = False) run one after the
other, which the pair must reproduce exactly where the two use the same slicing."""
import contextlib

import pytest
import torch

import fusedrnn
from conftest import TOL, layer_inputs

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


def inputs(kind, T, B, I, H, dtype, packed, seed):
    """x (dense [T,B,I] or packed [N,I] with batch_sizes), h0 (c0) [2,B,H], each direction's
    (w_ih, w_hh, b_ih, b_hh)."""
    f = layer_inputs(kind, T, B, I, H, dtype=dtype, seed=seed)
    r = layer_inputs(kind, T, B, I, H, dtype=dtype, seed=seed + 100)
    x, bs = f["x"], None
    if packed:
        lengths = torch.tensor(sorted(range(T, T - B, -1), reverse=True)).clamp(min=1)
        seq = torch.nn.utils.rnn.pack_padded_sequence(x, lengths)
        x, bs = seq.data, seq.batch_sizes
    h0 = torch.stack([f["h0"], r["h0"]])
    c0 = torch.stack([f["c0"], r["c0"]]) if kind == "lstm" else None
    w = [tuple(d[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")) for d in (f, r)]
    return x, bs, h0, c0, w


def pair(kind, x, bs, h0, c0, w, backend="simt", algorithm="persistent"):
    if kind == "lstm":
        return ops.lstm_forward_bidir(x, h0, c0, *w[0], *w[1], backend, bs, algorithm)
    return ops.gru_forward_bidir(x, h0, *w[0], *w[1], backend, bs, algorithm)


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
def test_opcheck(kind):
    x, bs, h0, c0, w = inputs(kind, 3, 2, 3, 8, torch.float64, False, seed=2)
    op = ops.lstm_forward_bidir if kind == "lstm" else ops.gru_forward_bidir
    state = (h0, c0) if kind == "lstm" else (h0,)
    for backend in ("cpu", "simt"):
        torch.library.opcheck(op, (x, *state, *w[0], *w[1], backend, None, "persistent"))


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_module_inference_one_launch_a_layer(cls, packed):
    """A 2-layer bidirectional module in inference on the persistent kernels (simt): one launch
    a layer, the same outputs as the stepwise kernels (and torch.nn) within tolerance; with
    autograd recording, a direction at a time as before."""
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
    assert n == 2 and n_train == 4
    flat = lambda o: [o[0].data if packed else o[0]] + (list(o[1]) if isinstance(o[1], tuple)  # noqa: E731
                                                       else [o[1]])
    for a, b in zip(flat(got), flat(want)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-4)
