"""Shared fixtures: the backends every kernel test runs on, tolerances per dtype, inputs."""
import contextlib

import pytest
import torch

import fusedrnn

GATES = {"lstm": 4, "gru": 3, "rnn": 1}

# Absolute/relative tolerances against an fp64 reference evaluated on the same (rounded) inputs.
TOL = {
    torch.float64: dict(atol=1e-10, rtol=1e-9),
    torch.float32: dict(atol=2e-5, rtol=2e-4),
    torch.float16: dict(atol=5e-3, rtol=5e-3),
    torch.bfloat16: dict(atol=4e-2, rtol=3e-2),
}


@pytest.fixture(autouse=True)
def _ieee_fp32_rnns():
    """The CUDA/SIMT kernels follow torch's TF32 switch for cuDNN RNNs (on by default), and the
    fp32 tolerances above are IEEE fp32's: TF32 is off in every test unless the test turns it on
    with tf32_rnns() (tests/test_tensor_cores.py, the tf32 cases of tests/test_kernels.py).
    Through the legacy switch, which sets conv and RNN together (torch's legacy getter raises
    once the two differ, and torch.export reads it)."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = old


class tf32_rnns:
    """Context: TF32 allowed for cuDNN (the default outside the tests)."""

    def __enter__(self):
        self.old = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = True

    def __exit__(self, *exc):
        torch.backends.cudnn.allow_tf32 = self.old


def backend_available(name):
    if name == "cpu":
        return True, ""
    if name == "simt":
        return fusedrnn.build_info()["simt"], "SIMT layer not built"
    if name == "cuda":
        if not fusedrnn.build_info()["cuda"]:
            return False, "fusedrnn built without CUDA"
        return torch.cuda.is_available(), "no CUDA device"
    raise ValueError(name)


def device_of(backend):
    return "cuda" if backend == "cuda" else "cpu"


@pytest.fixture(params=["cpu", "simt", "cuda"])
def backend(request):
    """Runs the test once per backend, skipping (never failing) where one is unavailable."""
    ok, why = backend_available(request.param)
    if not ok:
        pytest.skip(why)
    with fusedrnn.backend(request.param):
        yield request.param


@pytest.fixture(params=[1, 2])
def threads(request):
    """Runs the test with torch's intra-op threads set to 1, then 2 (restored afterwards)."""
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


# The CPU instruction sets the fused LSTM step and sweeps are compiled for, as levels of
# torch.ops.fusedrnn_testing.cpu_force_isa (csrc/cpu/pointwise.h: force_cpu_isa).
CPU_ISAS = {"avx512": 2, "avx2": 1}


@pytest.fixture(params=list(CPU_ISAS))
def cpu_isa(request):
    """Runs the test as on a CPU whose best instruction set is AVX-512, then AVX2 + FMA (the
    pointwise passes, the GEMM, the fused LSTM step and sweeps all switch), skipping an
    instruction set this CPU lacks; automatic again afterwards."""
    force = torch.ops.fusedrnn_testing.cpu_force_isa
    if not force(CPU_ISAS[request.param]):
        pytest.skip(f"this CPU cannot run {request.param}")
    try:
        yield request.param
    finally:
        force(-1)


def layer_inputs(kind, T, B, I, H, dtype=torch.float64, bias=True, device="cpu", seed=0):
    """Fresh random inputs of one layer (never zeros); weights scaled like torch.nn's init."""
    g = torch.Generator().manual_seed(seed)
    G = GATES[kind]
    k = H ** -0.5

    def rnd(*shape, scale=1.0):
        return ((torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale).to(
            device=device, dtype=dtype)

    d = dict(x=rnd(T, B, I), h0=rnd(B, H, scale=0.8), w_ih=rnd(G * H, I, scale=k),
             w_hh=rnd(G * H, H, scale=k))
    if kind == "lstm":
        d["c0"] = rnd(B, H)
    d["b_ih"] = rnd(G * H, scale=k) if bias else None
    d["b_hh"] = rnd(G * H, scale=k) if bias else None
    return d


def bidir_inputs(kind, T, B, I, H, dtype, packed, seed, seed_r=100):
    """A bidirectional LSTM / GRU layer's inputs: x (dense [T,B,I], or packed [N,I] with
    lengths T, T-1, ... (at least 1) and its batch_sizes), h0 (c0) [2,B,H], each direction's
    (w_ih, w_hh, b_ih, b_hh); the reverse direction's drawn with seed + seed_r.
    Returns (x, batch_sizes or None, h0, c0 or None, [w, w_r])."""
    f = layer_inputs(kind, T, B, I, H, dtype=dtype, seed=seed)
    r = layer_inputs(kind, T, B, I, H, dtype=dtype, seed=seed + seed_r)
    x, bs = f["x"], None
    if packed:
        lengths = torch.tensor(sorted(range(T, T - B, -1), reverse=True)).clamp(min=1)
        seq = torch.nn.utils.rnn.pack_padded_sequence(x, lengths)
        x, bs = seq.data, seq.batch_sizes
    h0 = torch.stack([f["h0"], r["h0"]])
    c0 = torch.stack([f["c0"], r["c0"]]) if kind == "lstm" else None
    w = [tuple(d[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")) for d in (f, r)]
    return x, bs, h0, c0, w


@contextlib.contextmanager
def chunk_bytes_env(value, monkeypatch):
    """FUSEDRNN_NOSAVE_CHUNK_BYTES set to value (None: unset) inside the block."""
    if value is None:
        monkeypatch.delenv("FUSEDRNN_NOSAVE_CHUNK_BYTES", raising=False)
    else:
        monkeypatch.setenv("FUSEDRNN_NOSAVE_CHUNK_BYTES", value)
    yield


def assert_close(actual, expected, dtype, scale=1.0, msg=""):
    tol = TOL[dtype]
    torch.testing.assert_close(actual.double().cpu(), expected.double().cpu(),
                               atol=tol["atol"] * scale, rtol=tol["rtol"] * scale, msg=msg)


# ------------------------------------------------- shared by the variant cells' test files

@pytest.fixture(params=["simt", "cuda"])
def kernel_backend(request):
    """The backends that run the CUDA kernels, skipping one that is unavailable."""
    ok, why = backend_available(request.param)
    if not ok:
        pytest.skip(why)
    return request.param


@pytest.fixture(params=[False, True], ids=["ieee", "tf32"])
def tf32(request):
    """TF32 allowed for the RNNs (fp32 on TF32 tensor cores) or not."""
    if request.param:
        with tf32_rnns():
            yield True
    else:
        yield False


def skip_unless(backend):
    ok, why = backend_available(backend)
    if not ok:
        pytest.skip(why)


def batch_sizes(lengths):
    """A PackedSequence's batch_sizes for sequences of these (decreasing) lengths."""
    return torch.tensor([sum(L > t for L in lengths) for t in range(max(lengths))])


def loss_weights(*shapes, seed=1):
    """Random fp64 weights of the outputs in a loss (sum of w * output), one per shape."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]


def prev_states(y, h0, reverse, batch_sizes):
    """h_{t-1} of every step (in the layout of y): h0 at each sequence's first step."""
    if batch_sizes is None:
        steps = list(y.unbind(0))
        hs = [None] * len(steps)
        h = h0
        for t in (range(len(steps) - 1, -1, -1) if reverse else range(len(steps))):
            hs[t] = h
            h = steps[t]
        return torch.stack(hs)
    ys = list(y.split(batch_sizes.tolist()))
    hs = [None] * len(ys)
    h = h0.clone()
    for t in (range(len(ys) - 1, -1, -1) if reverse else range(len(ys))):
        n = ys[t].shape[0]
        hs[t] = h[:n].clone()
        h[:n] = ys[t]
    return torch.cat(hs)


def row_stats(v, eps=1e-5):
    """Mean and 1/std (biased variance + eps, as torch.nn.LayerNorm) over the last dim."""
    mean = v.mean(-1)
    return mean, 1 / torch.sqrt(((v - mean[..., None]) ** 2).mean(-1) + eps)
