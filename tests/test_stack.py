"""The layers of a unidirectional LSTM / GRU stack in one op (fusedrnn::lstm_forward_stack,
gru_forward_stack; csrc/stack_ops.h) and, through the SIMT layer, as a persistent wavefront:
block group l runs layer l one launch step behind layer l-1, computing its input projection from
the h_t the layer below wrote in the step before. Oracle: the single-layer ops (save = False) run
one above the other; with the same slicing the first layer is exactly theirs, the layers above
differ only in how the input projection is summed (the kernel's pass against a GEMM)."""
import contextlib

import pytest
import torch

import fusedrnn
from conftest import TOL, layer_inputs, tf32_rnns

pytestmark = pytest.mark.skipif(not fusedrnn.build_info()["simt"], reason="SIMT layer not built")

ops = torch.ops.fusedrnn
P = torch.ops.fusedrnn_persistent
_C = fusedrnn._ops._C


@pytest.fixture(autouse=True)
def _seeded():
    _C.simt_set_seed(11)
    yield
    _C.simt_set_seed(None)
    P.set_tuning(0, 0, 0, 0)


@contextlib.contextmanager
def tuning(max_blocks=0, max_kc=0, cluster=-1):
    P.set_tuning(max_blocks, max_kc, 0, cluster)
    try:
        yield
    finally:
        P.set_tuning(0, 0, 0, 0)


def inputs(kind, T, B, I, H, L, dtype, packed=False, bias=True, seed=0):
    """x (dense [T,B,I] or packed [N,I] with batch_sizes), h0 (c0) [L,B,H], and the layers'
    weights as torch.nn's flat list."""
    d = [layer_inputs(kind, T, B, I if l == 0 else H, H, dtype=dtype, bias=bias, seed=seed + 10 * l)
         for l in range(L)]
    x, bs = d[0]["x"], None
    if packed:
        lengths = torch.tensor([max(1, T - b) for b in range(B)])
        seq = torch.nn.utils.rnn.pack_padded_sequence(x, lengths)
        x, bs = seq.data, seq.batch_sizes
    h0 = torch.stack([e["h0"] for e in d])
    c0 = torch.stack([e["c0"] for e in d]) if kind == "lstm" else None
    keys = ("w_ih", "w_hh", "b_ih", "b_hh") if bias else ("w_ih", "w_hh")
    w = [e[k] for e in d for k in keys]
    return x, bs, h0, c0, w, bias


def stack(kind, x, bs, h0, c0, w, bias, backend="simt", algorithm="persistent"):
    if kind == "lstm":
        return ops.lstm_forward_stack(x, h0, c0, w, bias, backend, bs, algorithm)
    return ops.gru_forward_stack(x, h0, w, bias, backend, bs, algorithm)


def layers(kind, x, bs, h0, c0, w, bias, backend="simt", algorithm="persistent"):
    """The single-layer ops one above the other: (y, h_n, c_n) as the stack op returns them."""
    per = 4 if bias else 2
    hs, cs = [], []
    for l in range(h0.shape[0]):
        wl = list(w[l * per:(l + 1) * per]) + ([] if bias else [None, None])
        if kind == "lstm":
            x, h, c = ops.lstm_forward(x, h0[l], c0[l], *wl, False, backend, bs, None, algorithm,
                                       False)[:3]
            cs.append(c)
        else:
            x, h = ops.gru_forward(x, h0[l], *wl, False, backend, bs, algorithm, False)[:2]
        hs.append(h)
    return [x, torch.stack(hs)] + ([torch.stack(cs)] if kind == "lstm" else [])


def run(fn):
    _C.simt_reset_stats()
    out = fn()
    s = _C.simt_stats()
    return s["launches"], s["grid_barriers"], out


def close(got, want, dtype, what, tol=None):
    """tol: the dtype whose tolerance applies (TF32 like fp16); default dtype's."""
    for a, b, n in zip(got, want, ["y", "h_n", "c_n"]):
        assert a.shape == b.shape and a.dtype == dtype, (what, n)
        torch.testing.assert_close(a, b, **TOL[tol or dtype], msg=lambda m: f"{what} {n}: {m}")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("L", [2, 3, 4])
@pytest.mark.parametrize("H", [16, 13], ids=["H16", "H13"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_wavefront_matches_the_layers(kind, dtype, L, H, packed):
    """One launch for L layers, T + L - 1 launch steps (T + L - 2 grid barriers); layer 0
    exactly the single op's (same slicing: two blocks a layer, several units each), every
    layer's state and the last y within the dtype's tolerance of the layers run one by one.
    H = 16: the half types on tensor cores; H = 13: FFMA, a partial last block. (Clusters off:
    the single layers on the grid, as the wavefront.)"""
    T, B, I = 5, 3, 7
    x, bs, h0, c0, w, bias = inputs(kind, T, B, I, H, L, dtype, packed, seed=3)
    with tuning(max_blocks=2):
        n, grid, got = run(lambda: stack(kind, x, bs, h0, c0, w, bias))
        n1, _, want = run(lambda: layers(kind, x, bs, h0, c0, w, bias))
    assert (n, n1) == (1, L)
    assert grid == T + L - 2
    assert torch.equal(got[1][0], want[1][0])  # the first layer: the single op's slicing
    if kind == "lstm":
        assert torch.equal(got[2][0], want[2][0])
    close(got, want, dtype, f"{L} layers")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_chunked_staging_and_no_bias(kind):
    """The input pass staged in chunks of 8 columns (max_kc), and layers without biases."""
    x, bs, h0, c0, w, bias = inputs(kind, 4, 2, 5, 24, 3, torch.float32, bias=False, seed=4)
    with tuning(max_blocks=2, max_kc=8):
        n, _, got = run(lambda: stack(kind, x, bs, h0, c0, w, bias))
        want = layers(kind, x, bs, h0, c0, w, bias)
    assert n == 1
    close(got, want, torch.float32, "chunked")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("L,launches", [(5, 2), (6, 2), (9, 3)])
def test_deep_stacks_in_chunks_of_four(kind, L, launches):
    """Up to four layers a launch: 5 = 4 + 1 (the last one the single persistent forward),
    6 = 4 + 2, 9 = 4 + 4 + 1."""
    x, bs, h0, c0, w, bias = inputs(kind, 4, 2, 3, 8, L, torch.float64, seed=5)
    n, _, got = run(lambda: stack(kind, x, bs, h0, c0, w, bias))
    assert n == launches
    close(got, layers(kind, x, bs, h0, c0, w, bias), torch.float64, f"{L} layers")


def _wave_fits(kind, B, H, dtype, n):
    return bool(P.plan(kind, B, H, dtype, n, True)[0])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_launch_takes_the_layers_that_fit(kind):
    """The wavefront's blocks hold W_ih beside W_hh on a share of the SMs: at an H where four
    layers do not fit in one launch but two do, four layers run as two launches of two."""
    dtype, B = torch.float32, 2
    H = next((h for h in range(32, 1024, 32)
              if not _wave_fits(kind, B, h, dtype, 4) and not _wave_fits(kind, B, h, dtype, 3)
              and _wave_fits(kind, B, h, dtype, 2)), None)
    assert H is not None, "no H where two layers fit and three do not"
    one = P.plan(kind, B, H, dtype, 2, False)
    wave = P.plan(kind, B, H, dtype, 2, True)
    assert wave[6] > one[6]  # smem_fwd: W twice
    assert wave[10] == 0  # never on a cluster
    x, bs, h0, c0, w, bias = inputs(kind, 2, B, 3, H, 4, dtype, seed=6)
    n, _, got = run(lambda: stack(kind, x, bs, h0, c0, w, bias))
    assert n == 2
    close(got, layers(kind, x, bs, h0, c0, w, bias), dtype, f"H={H}")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_where_a_layer_runs_on_a_cluster_a_wavefront_takes_three(kind):
    """Where a layer alone runs on a cluster (the plan prefers it and the product is on tensor
    cores: bf16; fp32 with TF32 allowed), two layers run as two cluster launches and three as
    one wavefront (persistent.h wave_min_layers, the model's rule); with the cluster off, or
    fp32 without TF32 (FFMA: no cluster), two layers are one wavefront."""
    H, B = 16, 2
    for dtype in (torch.bfloat16, torch.float32):
        assert P.plan(kind, B, H, dtype)[15]  # the cluster is preferred
    cases = [(torch.bfloat16, False, 0, 2, 2), (torch.bfloat16, False, 0, 3, 1),
             (torch.bfloat16, False, 0, 5, 2),  # 4 + 1 (the last one on a cluster)
             (torch.bfloat16, False, -1, 2, 1), (torch.float32, True, 0, 2, 2),
             (torch.float32, True, 0, 3, 1), (torch.float32, False, 0, 2, 1)]
    for dtype, tf32, cluster, L, want in cases:
        x, bs, h0, c0, w, bias = inputs(kind, 4, B, 3, H, L, dtype, seed=12)
        with tuning(cluster=cluster), (tf32_rnns() if tf32 else contextlib.nullcontext()):
            n, _, got = run(lambda: stack(kind, x, bs, h0, c0, w, bias))
            ref = layers(kind, x, bs, h0, c0, w, bias)
        assert n == want, (dtype, tf32, cluster, L)
        close(got, ref, dtype, f"{dtype} tf32={tf32} L={L}", torch.float16 if tf32 else None)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_default_plan_and_fallbacks(kind):
    """Without tuning the wavefront is within tolerance of the layers; on the cpu backend and
    with the stepwise algorithm the op is the single-layer ops one above the other (exactly)."""
    x, bs, h0, c0, w, bias = inputs(kind, 6, 3, 4, 24, 3, torch.float32, seed=7)
    n, _, got = run(lambda: stack(kind, x, bs, h0, c0, w, bias))
    assert n == 1
    close(got, layers(kind, x, bs, h0, c0, w, bias), torch.float32, "default")
    for backend, algorithm, want_launches in (("cpu", "auto", 0), ("simt", "stepwise", 3 * 6),
                                              ("simt", "auto", 3 * 6)):
        n, _, got = run(lambda: stack(kind, x, bs, h0, c0, w, bias, backend, algorithm))
        assert n == want_launches  # stepwise: a launch a step and layer
        want = layers(kind, x, bs, h0, c0, w, bias, backend, algorithm)
        for a, b in zip(got, want):
            assert torch.equal(a, b)


def test_bad_input_is_a_clear_error():
    x, bs, h0, c0, w, bias = inputs("lstm", 3, 2, 3, 8, 2, torch.float32, seed=8)
    with pytest.raises(RuntimeError, match="whole layers of 4 tensors"):
        stack("lstm", x, bs, h0, c0, w[:7], bias)
    with pytest.raises(RuntimeError, match=r"h0 must be \[2, B, H\]"):
        stack("lstm", x, bs, h0[:1], c0, w, bias)
    with pytest.raises(RuntimeError, match=r"c0 must be \[2, B, H\]"):
        stack("lstm", x, bs, h0, c0[0], w, bias)
    w_bad = list(w)
    w_bad[4] = w[4][:, :5]  # layer 1's W_ih for an input of 5 features, not H = 8
    for algorithm in ("persistent", "stepwise"):
        with pytest.raises(RuntimeError):
            stack("lstm", x, bs, h0, c0, w_bad, bias, "simt", algorithm)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_opcheck(kind):
    x, bs, h0, c0, w, bias = inputs(kind, 3, 2, 3, 8, 2, torch.float64, seed=9)
    op = ops.lstm_forward_stack if kind == "lstm" else ops.gru_forward_stack
    state = (h0, c0) if kind == "lstm" else (h0,)
    for backend in ("cpu", "simt"):
        torch.library.opcheck(op, (x, *state, w, bias, backend, None, "persistent"))


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("num_layers", [2, 3])
def test_module_inference_in_one_launch(cls, packed, num_layers):
    """A stacked module in inference on the persistent kernels (simt): one launch for all
    layers, torch.nn's outputs within tolerance; with autograd recording, or dropout between
    layers in training mode, a launch a layer as before."""
    torch.manual_seed(0)
    kw = dict(num_layers=num_layers)
    m = cls(5, 12, **kw)
    ref = getattr(torch.nn, cls.__name__)(5, 12, **kw)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(6, 3, 5)
    if packed:
        x = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([6, 4, 2]))
    with torch.no_grad():
        want = ref(x)
    with fusedrnn.backend("simt"), fusedrnn.algorithm("persistent"):
        with torch.no_grad():
            n, _, got = run(lambda: m(x))
        n_train, _, _ = run(lambda: m(x))
        m.dropout = 0.5
        with torch.no_grad():
            n_dropout, _, _ = run(lambda: m(x))
    assert (n, n_train, n_dropout) == (1, num_layers, num_layers)
    def flat(o):
        return [o[0].data if packed else o[0]] + (list(o[1]) if isinstance(o[1], tuple)
                                                  else [o[1]])

    for a, b in zip(flat(got), flat(want)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-4)


def test_perf_model_follows_the_plan():
    """benchmarks/perf_model.py's wavefront fits where persistent_plan's does (sm_90: 132 SMs,
    227 KB), and takes the launches the dispatch takes (the README's table and fit limits come
    from it)."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
    import perf_model
    for kind in ("lstm", "gru"):
        for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            for B in (1, 5, 8, 16):
                for H in list(range(16, 1300, 16)) + [13, 250, 999]:
                    for L in (2, 3, 4):
                        plan = P.plan_for(kind, B, H, dtype, 132, 232448, 1024, 16, L, True)
                        assert perf_model.wavefront_fits(kind, B, H, prec, L) == bool(plan[0]), \
                            (kind, prec, B, H, L)
                        assert plan[10] == 0  # no cluster


def test_compiled_module_takes_the_stack_op():
    """torch.compile(fullgraph=True) of a stacked module in inference traces the stack op (its
    fake kernel) and runs one launch, with the eager outputs."""
    torch.manual_seed(0)
    m = fusedrnn.LSTM(5, 12, num_layers=3).eval()
    x = torch.randn(6, 3, 5)
    with fusedrnn.backend("simt"), fusedrnn.algorithm("persistent"), torch.no_grad():
        want = m(x)
        compiled = torch.compile(m, fullgraph=True)
        compiled(x)
        n, _, got = run(lambda: compiled(x))
    assert n == 1
    for a, b in zip([got[0], *got[1]], [want[0], *want[1]]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
