"""The persistent LSTM/GRU kernels (csrc/cuda/persistent_kernels.cuh) run through the SIMT layer.

Every block of the cooperative launch is alive at once, the grid barrier really waits, and the
schedule is seeded (fusedrnn._C.simt_set_seed), so a missing barrier shows up as a wrong result.
Oracle: fusedrnn.reference in fp64 on the same rounded inputs, gradients by torch.autograd on it
with random upstream gradients; the saved tensors (gates, cells, ghn) against the CPU backend.
The ops are bound for testing as torch.ops.fusedrnn_persistent.* (csrc/simt/persistent_ops.cpp).
"""
import contextlib
import os
import subprocess
import sys

import pytest
import torch

import fusedrnn
from fusedrnn import reference
from conftest import TOL, layer_inputs, tf32_rnns

pytestmark = pytest.mark.skipif(not fusedrnn.build_info()["simt"], reason="SIMT layer not built")

P = torch.ops.fusedrnn_persistent
_C = fusedrnn._ops._C
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]

# Gradients of the half types go through activations saved in the storage dtype: looser.
GRAD_SCALE = {torch.float64: 1.0, torch.float32: 2.0, torch.float16: 4.0, torch.bfloat16: 3.0}


@contextlib.contextmanager
def tuning(max_blocks=0, max_kc=0, threads=0, cluster=0, flags=0):
    """cluster: 0 the plan's rule, -1 the grid-barrier forward, 1 the cluster one wherever it
    fits (FFMA too). flags -1: the grid forward exchanges h with a grid barrier a step even
    where the flag words fit (0: they do for 2- and 4-byte types, one chunk)."""
    P.set_tuning(max_blocks, max_kc, threads, cluster, flags)
    try:
        yield
    finally:
        P.set_tuning(0, 0, 0)


@pytest.fixture(autouse=True)
def seeded():
    """Seeded schedules and the default architecture (sm_90) for every test."""
    _C.simt_set_seed(1234)
    _C.simt_set_arch("sm_90")
    yield
    _C.simt_set_seed(None)
    _C.simt_set_arch("sm_90")
    P.set_tuning(0, 0, 0)


def close(actual, expected, dtype, scale=1.0, what=""):
    tol = TOL[dtype]
    torch.testing.assert_close(actual.double(), expected.double(), atol=tol["atol"] * scale,
                               rtol=tol["rtol"] * scale, msg=lambda m: f"{what}: {m}")


def rnd_like(t, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t.shape, generator=g, dtype=torch.float64) * 2 - 1).to(t.dtype)


def check_layer(kind, T, B, H, dtype, reverse, bias, I=5, seed=0):
    d = layer_inputs(kind, T, B, I, H, dtype=dtype, bias=bias, seed=seed)
    x, h0, w_ih, w_hh, b_ih, b_hh = (d[k] for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"))
    G = 4 if kind == "lstm" else 3
    # fp64 reference on the same rounded inputs; a zero bias stands in when there is none, so
    # the bias gradients (returned either way) have an oracle.
    ref = {k: (v.to(torch.float64, copy=True).requires_grad_() if v is not None else None)
           for k, v in d.items()}
    if not bias:
        ref["b_ih"] = torch.zeros(G * H, dtype=torch.float64, requires_grad=True)
        ref["b_hh"] = torch.zeros(G * H, dtype=torch.float64, requires_grad=True)
    names = ["x", "h0"] + (["c0"] if kind == "lstm" else []) + ["w_ih", "w_hh", "b_ih", "b_hh"]

    if kind == "lstm":
        c0 = d["c0"]
        y, h_n, c_n, gates, cells = P.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse)
        ry, rh, rc = reference.lstm_layer(*(ref[k] for k in names), reverse=reverse)
        outs, routs = [y, h_n, c_n], [ry, rh, rc]
        cpu = torch.ops.fusedrnn.lstm_forward(*(t.double() if t is not None else None for t in
                                                (x, h0, c0, w_ih, w_hh, b_ih, b_hh)),
                                              reverse, "cpu")
        saved, rsaved = [gates, cells], [cpu[3], cpu[4]]
    else:
        y, h_n, gates, ghn = P.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse)
        ry, rh = reference.gru_layer(*(ref[k] for k in names), reverse=reverse)
        outs, routs = [y, h_n], [ry, rh]
        cpu = torch.ops.fusedrnn.gru_forward(*(t.double() if t is not None else None for t in
                                               (x, h0, w_ih, w_hh, b_ih, b_hh)), reverse, "cpu")
        saved, rsaved = [gates, ghn], [cpu[2], cpu[3]]
    for a, e, n in zip(outs, routs, ["y", "h_n", "c_n"]):
        assert a.dtype == dtype and a.is_contiguous()
        close(a, e.detach(), dtype, what=n)
    for a, e, n in zip(saved, rsaved, ["gates", "cells/ghn"]):
        close(a, e, dtype, what=n)

    # Backward: random upstream gradients of every output, vs autograd on the reference.
    ups = [rnd_like(o, seed + 10 + i) for i, o in enumerate(outs)]
    grads = torch.autograd.grad(routs, [ref[k] for k in names],
                                [u.double() for u in ups], allow_unused=True)
    expected = dict(zip(names, grads))
    if kind == "lstm":
        dx, dh0, dc0, dw_ih, dw_hh, db = P.lstm_backward(*ups, x, h0, c0, w_ih, w_hh, y, gates,
                                                         cells, reverse)
        got = dict(x=dx, h0=dh0, c0=dc0, w_ih=dw_ih, w_hh=dw_hh, b_ih=db, b_hh=db)
    else:
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = P.gru_backward(*ups, x, h0, w_ih, w_hh, y, gates,
                                                             ghn, reverse)
        got = dict(x=dx, h0=dh0, w_ih=dw_ih, w_hh=dw_hh, b_ih=db_ih, b_hh=db_hh)
    for n in names:
        assert got[n].dtype == dtype and got[n].shape == d[n].shape if d[n] is not None else True
        close(got[n], expected[n], dtype, scale=GRAD_SCALE[dtype], what=f"d{n}")


# Odd sizes; the default sizing (one unit per block at these H: up to 33 blocks of 64-128
# threads) and tuned slicings (several units per block, a partial last block, the exchanged
# vector staged in several chunks, one warp per block).
SIZES = [  # (T, B, H)
    (1, 1, 1),
    (5, 3, 7),
    (5, 1, 33),
    (1, 3, 33),
    (3, 6, 9),  # B >= 4: register blocking by 4 rows, a partial second block of rows
]
TUNINGS = {
    "default": dict(),
    "slices": dict(max_blocks=4, max_kc=8),      # H=33: 4 blocks of 9 units (last: 6)
    "one_warp": dict(max_blocks=3, threads=32),  # H=7: 3 blocks of 3 units (last: 1)
    "barrier": dict(flags=-1),  # one chunk with the grid barrier instead of the flag words
}


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("T,B,H", SIZES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_fp32_sizes(kind, T, B, H, reverse, bias):
    check_layer(kind, T, B, H, torch.float32, reverse, bias)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tune", list(TUNINGS))
@pytest.mark.parametrize("reverse", [False, True])
def test_dtypes_slicings(kind, dtype, tune, reverse):
    T, B, H = {"default": (5, 3, 33), "slices": (5, 6, 33), "one_warp": (5, 3, 7),
               "barrier": (5, 3, 33)}[tune]
    with tuning(**TUNINGS[tune]):
        check_layer(kind, T, B, H, dtype, reverse, bias=True, seed=1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seeded_schedules(seed):
    """Different seeded schedules, several blocks per OS thread, several chunks and rounds."""
    _C.simt_set_seed(seed)
    with tuning(max_blocks=5, max_kc=16, threads=64):
        check_layer("lstm", 4, 6, 21, torch.float32, reverse=bool(seed % 2), bias=True, seed=seed)
        check_layer("gru", 4, 3, 21, torch.float32, reverse=not seed % 2, bias=True, seed=seed)


def test_t0():
    d = layer_inputs("lstm", 0, 2, 3, 4, dtype=torch.float32)
    y, h_n, c_n, gates, cells = P.lstm_forward(d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"],
                                               d["b_ih"], d["b_hh"], False)
    assert y.shape == (0, 2, 4) and torch.equal(h_n, d["h0"]) and torch.equal(c_n, d["c0"])


@pytest.mark.parametrize("dtype,flags,barriers", [
    (torch.float32, -1, 3),   # the grid barrier forced: one a step boundary
    (torch.float32, 0, 0),    # the flag-word exchange: none
    (torch.bfloat16, 0, 0),
    (torch.float64, 0, 3),    # no room for a flag beside a double: the grid barrier
])
def test_grid_barriers_counted(dtype, flags, barriers):
    """Forward: one grid barrier per step boundary, or none where the flag words exchange h
    (2- and 4-byte types, h staged whole); backward: one per step."""
    T = 4
    d = layer_inputs("lstm", T, 2, 3, 5, dtype=dtype)
    _C.simt_reset_stats()
    with tuning(cluster=-1, flags=flags):
        y, h_n, c_n, gates, cells = P.lstm_forward(d["x"], d["h0"], d["c0"], d["w_ih"],
                                                   d["w_hh"], d["b_ih"], d["b_hh"], False)
    s = _C.simt_stats()
    assert s["launches"] == 1 and s["grid_barriers"] == barriers and s["blocks"] == 5
    assert s["cluster_barriers"] == 0
    _C.simt_reset_stats()
    P.lstm_backward(y, h_n, c_n, d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"], y, gates, cells,
                    False)
    s = _C.simt_stats()
    assert s["launches"] == 1 and s["grid_barriers"] == T



SWITCH_SCRIPT = """
import sys, torch, fusedrnn
_C = fusedrnn._ops._C
_C.simt_set_arch("sm_90")
P = torch.ops.fusedrnn_persistent
P.set_tuning(0, 0, 0, int(sys.argv[1]), 0)  # -1: the grid forward, 1: the cluster one
g = torch.Generator().manual_seed(3)
T, B, I, H = 4, 2, 3, 5
r = lambda *s: torch.rand(*s, generator=g) - 0.5
x, h0, c0, w_ih, w_hh, b = r(T, B, I), r(B, H), r(B, H), r(4 * H, I), r(4 * H, H), r(4 * H)
_C.simt_reset_stats()
try:
    P.lstm_forward(x, h0, c0, w_ih, w_hh, b, b, False)
except RuntimeError as e:
    print("error:", str(e).splitlines()[0])
else:
    st = _C.simt_stats()
    print("grid_barriers:", st["grid_barriers"], "cluster_barriers:", st["cluster_barriers"])
"""
EXCHANGE, CLUSTER = "FUSEDRNN_PERSISTENT_EXCHANGE", "FUSEDRNN_PERSISTENT_CLUSTER"


def bad(name, dflt, alt, got):
    return f"error: {name} must be '{dflt}' (the default) or '{alt}', got '{got}'"


@pytest.mark.parametrize("env, knob, expect", [
    ({}, -1, "grid_barriers: 0 cluster_barriers: 0"),                  # the flag words
    ({EXCHANGE: "flags"}, -1, "grid_barriers: 0 cluster_barriers: 0"),
    ({EXCHANGE: "barrier"}, -1, "grid_barriers: 3 cluster_barriers: 0"),  # one a step boundary
    ({EXCHANGE: "fence"}, -1, bad(EXCHANGE, "flags", "barrier", "fence")),
    ({EXCHANGE: "fence"}, 1, bad(EXCHANGE, "flags", "barrier", "fence")),  # the cluster's too
    ({}, 1, "grid_barriers: 0 cluster_barriers: 2"),                   # forced onto a cluster
    ({CLUSTER: "auto"}, 1, "grid_barriers: 0 cluster_barriers: 2"),
    ({CLUSTER: "off"}, 1, "grid_barriers: 0 cluster_barriers: 0"),     # the grid, flag words
    ({CLUSTER: "off", EXCHANGE: "barrier"}, 1, "grid_barriers: 3 cluster_barriers: 0"),
    ({CLUSTER: "no"}, -1, bad(CLUSTER, "auto", "off", "no")),
])
def test_fallback_switches(env, knob, expect):
    """The fallbacks for the forward paths no GPU has run yet: FUSEDRNN_PERSISTENT_EXCHANGE=barrier
    puts the grid forward back on a grid barrier a step, FUSEDRNN_PERSISTENT_CLUSTER=off keeps
    the forward off clusters even where the tuning forces one (each read once a process, hence
    a subprocess); a value they do not know raises, clearly, on either forward."""
    full = {k: v for k, v in os.environ.items() if k not in (EXCHANGE, CLUSTER)}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", SWITCH_SCRIPT, str(knob)], env=full,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == expect


# ------------------------------------------------------------------ load paths
# Rows of the exchanged vector on 16-byte boundaries (H a multiple of 4 floats / 8 halves / 2
# doubles) take the cp.async staging, the others the register copies; U even lets the half
# types' backward prefetch whole words. The sizes above are all misaligned, so these cover the
# other paths, numerically: one chunk and several, U odd and even.
ALIGNED = {  # tune: (T, B, H, tuning)
    "one_chunk": (4, 5, 24, dict()),                              # 24 blocks of 1 unit
    "chunks_pairs": (4, 6, 24, dict(max_blocks=6, max_kc=8)),     # 6 blocks of 4 units, K/8 chunks
    "pairs_partial": (3, 2, 40, dict(max_blocks=7, max_kc=16)),   # 7 blocks of 6 units (last 4)
    # half types' forward on tensor cores: 2 warps for 5 m-tiles x 3 n-tiles (rounds), and a
    # chunk of 8 k zero-filled to an mma k-step of 16
    "mma_rounds": (3, 17, 40, dict(max_blocks=2, threads=64, max_kc=16)),
    "mma_k8": (2, 3, 24, dict(max_blocks=3, max_kc=8)),
    # a batch as wide as "auto" takes (forward up to 48): 6 n-tiles of 8 rows forward, 3 m-tiles
    # of 16 backward, the last partial
    "wide_batch": (2, 41, 24, dict()),
}


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tune", list(ALIGNED))
@pytest.mark.parametrize("reverse", [False, True])
def test_aligned_load_paths(kind, dtype, tune, reverse):
    T, B, H, knobs = ALIGNED[tune]
    with tuning(**knobs):
        check_layer(kind, T, B, H, dtype, reverse, bias=True, seed=2)


def test_tensor_core_forward_planned():
    """The forward can run on tensor cores when H and the chunk are whole 16-byte rows (8 halves,
    4 floats), the backward when its chunk of fp32 gate gradients is (4 floats): the half types
    always then, fp32 when TF32 is allowed (the launcher's choice); fp64 and other sizes stay
    FFMA. The plan says which (its last two fields)."""
    for kind in ("lstm", "gru"):
        for dtype in DTYPES:
            V = {torch.float16: 8, torch.bfloat16: 8, torch.float32: 4, torch.float64: 0}[dtype]
            for H, tune, kc in [(24, {}, 24), (40, dict(max_kc=16), 16), (40, dict(max_kc=8), 8),
                                (33, {}, 33), (12, {}, 12), (16, dict(max_kc=4), 4),
                                (512, {}, 512)]:
                with tuning(**tune):
                    p = dict(zip(FIELDS + ["mma_fwd", "mma_bwd"], P.plan(kind, 5, H, dtype)))
                want = V > 0 and H % V == 0 and kc % V == 0
                assert p["fits"] and p["mma_fwd"] == want, (kind, dtype, H, tune)
                # backward: K = G*H of fp32 da, whole 16-byte rows of the chunk (4 floats)
                G = 4 if kind == "lstm" else 3
                want_b = V > 0 and min(kc if tune else G * H, G * H) % 4 == 0
                assert p["mma_bwd"] == want_b, (kind, dtype, H, tune, p["kc_bwd"])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("T,B,H,tune", [(4, 5, 24, {}), (3, 17, 40, dict(max_blocks=2, threads=64,
                                                                          max_kc=16)),
                                        (3, 3, 20, dict(max_blocks=3, max_kc=4))])
def test_tf32_forward(kind, T, B, H, tune):
    """fp32 with TF32 allowed (cuDNN's default): the forward's product on mma.m16n8k8 .tf32,
    within TF32's tolerance (that of fp16) of the fp64 reference, different from the IEEE result
    (it did run on TF32), and close to the stepwise kernels' TF32 forward."""
    d = layer_inputs(kind, T, B, 6, H, dtype=torch.float32, seed=11)
    names = ["x", "h0"] + (["c0"] if kind == "lstm" else []) + ["w_ih", "w_hh", "b_ih", "b_hh"]
    args = [d[k] for k in names]
    fwd = P.lstm_forward if kind == "lstm" else P.gru_forward
    ref_fn = reference.lstm_layer if kind == "lstm" else reference.gru_layer
    with tuning(**tune):
        assert P.plan(kind, B, H, torch.float32)[8]
        ieee = fwd(*args)[0]
        with tf32_rnns():
            tf = fwd(*args)[0]
            step = getattr(torch.ops.fusedrnn, f"{kind}_forward")(
                *args, False, "simt", *([None, None] if kind == "lstm" else [None]), "stepwise")[0]
    ref = ref_fn(*(a.double() for a in args))[0]
    close(tf, ref, torch.float16, what="y (tf32)")
    close(ieee, ref, torch.float32, what="y (ieee)")
    assert (tf - ieee).abs().max() > 1e-5, "TF32 allowed, yet the result is IEEE's"
    close(tf, step, torch.float16, what="persistent vs stepwise (tf32)")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("T,B,H,tune", [(4, 5, 24, {}), (3, 17, 40, dict(max_blocks=2, threads=64,
                                                                          max_kc=16))])
def test_tf32_backward(kind, T, B, H, tune):
    """fp32 with TF32 allowed: the backward's product on mma.m16n8k8 .tf32 (rounded gate
    gradients and W_hh), within TF32's tolerance of autograd on the fp64 reference, and
    different from the IEEE backward on the same saved values (it did run on TF32)."""
    d = layer_inputs(kind, T, B, 6, H, dtype=torch.float32, seed=12)
    names = ["x", "h0"] + (["c0"] if kind == "lstm" else []) + ["w_ih", "w_hh", "b_ih", "b_hh"]
    args = [d[k] for k in names]
    ref = [a.double().requires_grad_() for a in args]
    ref_fn = reference.lstm_layer if kind == "lstm" else reference.gru_layer
    routs = ref_fn(*ref)
    outs = (P.lstm_forward if kind == "lstm" else P.gru_forward)(*args)
    ups = [rnd_like(o, 20 + i) for i, o in enumerate(outs[:len(routs)])]
    grads = torch.autograd.grad(routs, ref, [u.double() for u in ups])

    def bwd():
        if kind == "lstm":
            return P.lstm_backward(*ups, *args[:5], outs[0], outs[3], outs[4])
        return P.gru_backward(*ups, *args[:4], outs[0], outs[2], outs[3])

    with tuning(**tune):
        assert P.plan(kind, B, H, torch.float32)[9]
        ieee = bwd()
        with tf32_rnns():
            tf = bwd()
    # dx, dh0 (and dc0): the recurrence's results, compared with the reference
    for i, n in enumerate(["x", "h0"] + (["c0"] if kind == "lstm" else [])):
        close(tf[i], grads[i], torch.float16, scale=2.0, what=f"d{n} (tf32)")
    # dh0 comes from the kernel alone (dx also from the GEMM outside the loop, TF32 too)
    assert (tf[1] - ieee[1]).abs().max().item() > 1e-6, "TF32 allowed, yet dh0 is IEEE's"


def _copies(fn):
    _C.simt_reset_stats()
    out = fn()
    return _C.simt_stats()["async_copies"], out


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("case", ["fp32", "fp32 odd H", "bf16 odd U", "bf16 even U", "fp64"])
@pytest.mark.parametrize("flags", [-1, 0])
def test_cp_async_copies_counted(kind, case, flags):
    """Which loads go through cp.async, counted exactly (SIMT counts every copy):
    forward: xproj prefetched one step ahead, one word per element (T*B*G*H), plus the staged
    h_{t-1} in 16-byte copies when its rows allow (every step, every block: T*blocks*B*H/V; on
    tensor cores B rounded up to whole n-tiles of 8, the extra rows zero-filled), except where
    the flag words exchange h (flags 0: 2- and 4-byte types), polled with plain loads;
    backward: the saved inputs of each step, G+3 per unit and row, in words (half types: pairs,
    only when U and H are even), plus da_{t+1} (and the dh0 pass) in 16-byte copies of fp32."""
    dtype, H, knobs = {"fp32": (torch.float32, 16, {}), "fp32 odd H": (torch.float32, 18, {}),
                       "bf16 odd U": (torch.bfloat16, 16, {}),
                       "bf16 even U": (torch.bfloat16, 16, dict(max_blocks=4)),
                       "fp64": (torch.float64, 10, {})}[case]
    T, B = 3, 5
    G = 4 if kind == "lstm" else 3
    d = layer_inputs(kind, T, B, 4, H, dtype=dtype, seed=7)
    x, h0, w_ih, w_hh, b_ih, b_hh = (d[k] for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"))
    with tuning(**knobs, cluster=-1, flags=flags):
        plan = dict(zip(FIELDS + ["mma_fwd", "mma_bwd"], P.plan(kind, B, H, dtype)))
        nb, U = plan["blocks"], plan["units"]
        assert plan["kc_fwd"] == H and plan["kc_bwd"] == G * H  # one chunk: counts are simple
        if kind == "lstm":
            fwd, o = _copies(lambda: P.lstm_forward(x, h0, d["c0"], w_ih, w_hh, b_ih, b_hh))
            bwd, _ = _copies(lambda: P.lstm_backward(o[0], o[1], o[2], x, h0, d["c0"], w_ih,
                                                     w_hh, o[0], o[3], o[4]))
        else:
            fwd, o = _copies(lambda: P.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh))
            bwd, _ = _copies(lambda: P.gru_backward(o[0], o[1], x, h0, w_ih, w_hh, o[0], o[2],
                                                    o[3]))
    esize = torch.finfo(dtype).bits // 8
    V = 16 // esize
    # on tensor cores (the half types here: TF32 is off in the tests) whole n-tiles of 8 rows
    rows_f = -(-B // 8) * 8 if plan["mma_fwd"] and esize == 2 else B
    flag_words = flags == 0 and esize <= 4
    tile_f = T * nb * rows_f * H // V if H % V == 0 and not flag_words else 0
    rows_b = -(-B // 16) * 16 if plan["mma_bwd"] and esize == 2 else B  # m-tiles of 16 rows
    tile_b = T * nb * rows_b * G * H // (16 // max(esize, 4)) \
        if (G * H) % (16 // max(esize, 4)) == 0 else 0
    words = 2 if esize == 2 else 1
    pre_b = T * B * (G + 3) * H // words if (words == 1 or (U % 2 == 0 and H % 2 == 0)) else 0
    assert (fwd, bwd) == (T * B * G * H + tile_f, pre_b + tile_b), (nb, U)
    if case == "fp32 odd H":
        # h rows misaligned (18 floats); the LSTM's da rows (72 floats) are not, the GRU's (54) are
        assert tile_f == 0 and (tile_b > 0) == (kind == "lstm")
    if case == "bf16 odd U":
        assert U % 2 == 1 and pre_b == 0 and plan["mma_fwd"]
    if case == "bf16 even U":
        assert U % 2 == 0 and pre_b > 0

# ------------------------------------------------------------------ the cluster forward
# On sm_90 (the SIMT layer's default) the forward can run on one thread-block cluster when W_hh
# fits in at most 16 blocks: h_{t-1} stays in shared memory, pushed to the peers through
# distributed shared memory, one cluster barrier a step (csrc/cuda/persistent_kernels.cuh). The
# plan prefers it on tensor cores while the block's W_hh bytes a step stay small (the model's
# verdict); the tuning forces it here so every dtype and product runs it. Cases: slices of
# several units with element pushes (odd H, U not whole 16-byte words) and 16-byte pushes
# (U = 16), the tensor-core forward over several rounds, one warp a block, 16 blocks.
CLUSTER = {  # case: (T, B, H, tuning, cluster blocks)
    "odd": (5, 3, 33, dict(), 11),
    "words": (3, 6, 64, dict(max_blocks=4), 4),
    "mma_rounds": (3, 17, 40, dict(max_blocks=2, threads=64), 2),
    "one_warp": (5, 3, 7, dict(max_blocks=3, threads=32), 3),
    "sixteen": (2, 2, 48, dict(), 16),
}
CFIELDS = ["cluster_blocks", "cluster_units", "cluster_threads", "cluster_smem", "cluster_mma",
           "cluster_preferred"]
NAMES = {"lstm": ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"],
         "gru": ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]}


def cluster_plan(kind, B, H, dtype):
    return dict(zip(CFIELDS, P.plan(kind, B, H, dtype)[10:]))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CLUSTER))
@pytest.mark.parametrize("reverse", [False, True])
def test_cluster_forward(kind, dtype, case, reverse):
    T, B, H, knobs, blocks = CLUSTER[case]
    with tuning(**knobs, cluster=1):
        cp = cluster_plan(kind, B, H, dtype)
        assert cp["cluster_blocks"] == blocks
        _C.simt_reset_stats()
        check_layer(kind, T, B, H, dtype, reverse, bias=True, seed=3)
    # The forward's cluster barriers. The mbarrier exchange (every block's slice whole 4-byte
    # words: 4- and 8-byte types, or U and H even): one after the initialisation, one at the end;
    # else one after the initialisation and one a step boundary.
    U = cp["cluster_units"]
    mb = dtype.itemsize >= 4 or (U % 2 == 0 and H % 2 == 0)
    assert _C.simt_stats()["cluster_barriers"] == (2 if mb else T), (U, mb)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("threads,per_step", [(128, 1), (256, 2)])
def test_cluster_forward_block_barriers_a_step(kind, threads, per_step):
    """The tensor-core cluster forward's block barriers a step: one (the step's end, before the
    pushes) where every tile pair has a warp of its own (4 pairs: H=64 on 4 blocks, B <= 8, 4
    warps), the gates then gathered by shuffles and the next step's xproj retired before that
    barrier; one more (the partial sums' before they are read) where warps split a pair's
    k-steps (8 warps). The slope over T, so the launch's own barriers cancel; y as the fp64
    oracle's."""
    B, H = 6, 64
    fwd = P.lstm_forward if kind == "lstm" else P.gru_forward
    layer = reference.lstm_layer if kind == "lstm" else reference.gru_layer
    counts = {}
    for T in (3, 6):
        d = layer_inputs(kind, T, B, 5, H, dtype=torch.bfloat16, seed=11)
        args = [d[k] for k in NAMES[kind]]
        with tuning(max_blocks=4, threads=threads, cluster=1):
            cp = cluster_plan(kind, B, H, torch.bfloat16)
            assert cp["cluster_blocks"] == 4 and cp["cluster_mma"]
            assert cp["cluster_threads"] == threads
            _C.simt_reset_stats()
            y = fwd(*args)[0]
            counts[T] = _C.simt_stats()["block_barriers"]
        close(y, layer(*(a.double() for a in args))[0].detach(), torch.bfloat16, what="y")
    assert counts[6] - counts[3] == 3 * 4 * per_step, counts


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cluster_forward_by_the_rule(kind, dtype):
    """Without tuning: bf16, and fp32 with TF32 allowed, take the cluster where the plan prefers
    it (IEEE fp32 stays on the grid: FFMA). The cluster forward's only cp.async copies are the
    prefetched xproj (T*B*G*H words: nothing of h comes from global memory), no grid barrier;
    the same outputs as the grid-barrier forward within the dtype's tolerance."""
    T, B, H = 4, 5, 24
    G = 4 if kind == "lstm" else 3
    d = layer_inputs(kind, T, B, 4, H, dtype=dtype, seed=8)
    args = [d[k] for k in NAMES[kind]]
    fwd = P.lstm_forward if kind == "lstm" else P.gru_forward
    cp = cluster_plan(kind, B, H, dtype)
    assert cp["cluster_blocks"] == 12 and cp["cluster_units"] == 2 and cp["cluster_preferred"]
    tf32 = tf32_rnns() if dtype == torch.float32 else contextlib.nullcontext()
    _C.simt_reset_stats()
    with tf32:
        on_chip = fwd(*args)
    s = _C.simt_stats()
    assert s["async_copies"] == T * B * G * H and s["grid_barriers"] == 0
    assert s["blocks"] == 12 and s["cluster_barriers"] == 2  # the mbarrier exchange (U = 2)
    with tuning(cluster=-1), tf32:
        _C.simt_reset_stats()
        grid = fwd(*args)
        assert _C.simt_stats()["cluster_barriers"] == 0
    tol = torch.float16 if dtype == torch.float32 else dtype  # TF32 like fp16
    for a, b, n in zip(on_chip, grid, ["y", "h_n", "c_n/gates", "gates/ghn", "cells"]):
        close(a, b, tol, what=n)
    if dtype == torch.float32:  # IEEE: FFMA, the grid
        _C.simt_reset_stats()
        fwd(*args)
        assert _C.simt_stats()["cluster_barriers"] == 0


@pytest.mark.parametrize("kind,dtype,B", [("lstm", torch.bfloat16, 8), ("gru", torch.float32, 3)])
def test_cluster_forward_at_the_largest_fit(kind, dtype, B):
    """The cluster forward at the largest H its plan fits (every region of the carve at its
    largest, 16 blocks, the shared memory within a few KB of the limit): y and h_n against the
    fp64 reference. The tolerance is loose (sums of 500-600 terms in fp32 / bf16 storage): what
    it guards is the carve, where an overlap of two regions gives garbage."""
    H = max(h for h in range(8, 1200, 8) if P.plan(kind, B, h, dtype)[10])
    assert H >= 500 and cluster_plan(kind, B, H, dtype)["cluster_smem"] > 220000
    d = layer_inputs(kind, 2, B, 3, H, dtype=dtype, seed=4)
    args = [d[k] for k in NAMES[kind]]
    fwd = P.lstm_forward if kind == "lstm" else P.gru_forward
    ref = (reference.lstm_layer if kind == "lstm" else reference.gru_layer)(
        *(a.double() for a in args))
    with tuning(cluster=1):
        _C.simt_reset_stats()
        out = fwd(*args)
        assert _C.simt_stats()["cluster_barriers"] == 2
    atol = 3e-2 if dtype == torch.bfloat16 else 1e-3
    for a, e, n in zip(out, ref, ["y", "h_n", "c_n"]):
        torch.testing.assert_close(a.double(), e.detach(), atol=atol, rtol=0, msg=n)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("path", ["cluster", "cluster ffma", "grid", "grid ffma"])
def test_phase_marks(kind, path):
    """set_trace: each forward launch records six clock marks per block and step
    (persistent_kernels.cuh FwdMark), in order within a step and from one step to the next, for
    every block of the launch; the outputs are those of the untraced launch, bit for bit; with
    the trace off a launch records nothing (last_trace keeps the last traced one)."""
    T, B, H = 5, 9, 40
    dtype = torch.float32 if path.endswith("ffma") else torch.bfloat16
    d = layer_inputs(kind, T, B, 4, H, dtype=dtype, seed=6)
    args = [d[k] for k in NAMES[kind]]
    fwd = P.lstm_forward if kind == "lstm" else P.gru_forward
    knob = 1 if path.startswith("cluster") else -1
    with tuning(cluster=knob):
        plain = fwd(*args)
        P.set_trace(True)
        try:
            _C.simt_reset_stats()
            traced = fwd(*args)
            stats = _C.simt_stats()
            marks = P.last_trace()
            P.set_trace(False)
            fwd(*args)
            assert P.last_trace().data_ptr() == marks.data_ptr()
        finally:
            P.set_trace(False)
    for a, b in zip(plain, traced):
        assert torch.equal(a, b)
    plan = dict(zip(FIELDS, P.plan(kind, B, H, dtype)))
    cp = cluster_plan(kind, B, H, dtype)
    blocks = cp["cluster_blocks"] if path.startswith("cluster") else plan["blocks"]
    assert blocks > 1 and stats["blocks"] == blocks
    assert marks.shape == (blocks, T, 6) and marks.dtype == torch.int64
    assert (marks > 0).all(), marks
    assert (marks.diff(dim=2) >= 0).all(), "marks out of order within a step"
    assert (marks[:, 1:, 0] >= marks[:, :-1, 5]).all(), "a step began before the last one ended"


def cplan(kind, B, H, dtype, max_cluster=16):
    return dict(zip(FIELDS + ["mma_fwd", "mma_bwd"] + CFIELDS,
                    P.plan_for(kind, B, H, dtype, 132, SM90["smem_optin"], 1024, max_cluster)))


def test_cluster_plan():
    """The cluster forward's sizing: at most 16 blocks (max_cluster), the thinnest slices, within
    the opt-in limit; none without clusters (sm_80, plan_for's default), with chunked staging or
    the tuning off; preferred on tensor cores while the block's W_hh bytes a step (once per 8
    batch rows) are at most 112 KB. The largest H it holds grows with the storage dtype (bf16
    LSTM about 640 at B = 8, as the issue estimated)."""
    hmax = {}
    for kind in ("lstm", "gru"):
        for dtype in DTYPES:
            es = torch.finfo(dtype).bits // 8
            for B in (1, 8, 16):
                h = 0
                for H in range(8, 1600, 8):
                    p = cplan(kind, B, H, dtype)
                    if not p["cluster_blocks"]:
                        break
                    h = H
                    U, nb = p["cluster_units"], p["cluster_blocks"]
                    assert nb <= 16 and U == -(-H // 16) and U * nb >= H > U * (nb - 1)
                    assert p["cluster_smem"] <= SM90["smem_optin"]
                    assert p["fits"]  # the grid plan (the backward's) fits wherever this does
                    assert not cplan(kind, B, H, dtype, max_cluster=0)["cluster_blocks"]
                    wbytes = -(-4 * U // 16) * 16 * H * es * -(-B // 8)
                    assert p["cluster_preferred"] == (p["cluster_mma"] and wbytes <= 112 * 1024)
                hmax[kind, dtype, B] = h
                assert h >= 256
    assert 560 <= hmax["lstm", torch.bfloat16, 8] <= 720, hmax
    for kind in ("lstm", "gru"):
        for B in (1, 8):
            assert hmax[kind, torch.bfloat16, B] > hmax[kind, torch.float32, B] > \
                hmax[kind, torch.float64, B]
    assert cluster_plan("lstm", 8, 256, torch.bfloat16)["cluster_blocks"] == 16
    with tuning(max_kc=64):
        assert cluster_plan("lstm", 8, 256, torch.bfloat16)["cluster_blocks"] == 0
    with tuning(cluster=-1):
        assert cluster_plan("lstm", 8, 256, torch.bfloat16)["cluster_blocks"] == 0
    with tuning(cluster=1):
        assert cluster_plan("lstm", 8, 256, torch.float64)["cluster_preferred"]
    assert not cluster_plan("lstm", 8, 256, torch.float64)["cluster_preferred"]
    _C.simt_set_arch("sm_80")
    assert cluster_plan("lstm", 8, 256, torch.bfloat16)["cluster_blocks"] == 0


# ------------------------------------------------------------------ sizing

SM90 = dict(sms=132, smem_optin=232448, max_threads=1024)
SM80 = dict(sms=108, smem_optin=166912, max_threads=1024)
FIELDS = ["fits", "blocks", "units", "threads", "kc_fwd", "kc_bwd", "smem_fwd", "smem_bwd"]


def plan_for(kind, B, H, dtype, arch=SM90):
    return dict(zip(FIELDS, P.plan_for(kind, B, H, dtype, arch["sms"], arch["smem_optin"],
                                       arch["max_threads"])))


def max_resident_h(kind, B, dtype, arch=SM90):
    lo, hi = 0, 1 << 15  # fits(lo), not fits(hi); fits is monotone in H (checked below)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if plan_for(kind, B, mid, dtype, arch)["fits"] else (lo, mid)
    return lo


def test_sizing_sane_sm90(capsys):
    table = {}
    for kind in ["lstm", "gru"]:
        G = 4 if kind == "lstm" else 3
        for dtype in DTYPES:
            for B in [1, 8, 64]:
                hmax = max_resident_h(kind, B, dtype)
                table[kind, str(dtype).split(".")[1], B] = hmax
                assert hmax >= 256
                for H in sorted({1, 7, 33, 132, 133, 256, 512, hmax // 2, hmax - 1, hmax}):
                    p = plan_for(kind, B, H, dtype)
                    assert p["fits"], (kind, dtype, B, H)
                    U, nb = p["units"], p["blocks"]
                    assert 1 <= nb <= 132 and U * nb >= H and U * (nb - 1) < H
                    assert U == -(-H // 132)  # the thinnest slice that needs <= 1 block per SM
                    assert p["threads"] in (64, 128, 256)
                    assert max(p["smem_fwd"], p["smem_bwd"]) <= SM90["smem_optin"]
                    assert 1 <= p["kc_fwd"] <= H and 1 <= p["kc_bwd"] <= G * H
                    assert p["kc_fwd"] == H or p["kc_fwd"] % 32 == 0
                    esize = torch.finfo(dtype).bits // 8
                    assert p["smem_fwd"] >= G * U * H * esize  # W_hh slice in the storage dtype
                assert not plan_for(kind, B, hmax + 1, dtype)["fits"]
                assert not plan_for(kind, B, 2 * hmax, dtype)["fits"]
    for kind in ["lstm", "gru"]:
        for B in [1, 8, 64]:
            f32, f64 = table[kind, "float32", B], table[kind, "float64", B]
            f16, bf16 = table[kind, "float16", B], table[kind, "bfloat16", B]
            assert f16 == bf16 and f16 >= 1.3 * f32 and f32 >= 1.3 * f64  # storage dtype counts
        assert table[kind, "float32", 1] >= table[kind, "float32", 8] >= table[kind, "float32", 64]
        assert table["gru", "float32", 1] >= table["lstm", "float32", 1]
    # sm_80 (108 SMs, 163 KB) holds less than sm_90
    assert max_resident_h("lstm", 8, torch.float32, SM80) < table["lstm", "float32", 8]
    with capsys.disabled():
        print("\nlargest resident H on sm_90 (132 SMs, 227 KB/block):")
        for kind in ["lstm", "gru"]:
            for dt in ["float32", "float64", "float16", "bfloat16"]:
                print(f"  {kind:4s} {dt:8s} " +
                      "  ".join(f"B={B}: {table[kind, dt, B]}" for B in [1, 8, 64]))


def test_perf_model_follows_the_plan():
    """benchmarks/perf_model.py sizes the persistent kernels as persistent_plan does (sm_90),
    and predicts the load paths (v2) no slower than the kernel before them (v1)."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
    import perf_model
    for kind in ("lstm", "gru"):
        for B in (1, 3, 4, 8, 16, 64):
            for H in (7, 256, 512, 1000):
                U, blocks, threads = perf_model.persistent_config(B, H)[:3]
                p = plan_for(kind, B, H, torch.float32)
                assert (U, blocks, threads) == (p["units"], p["blocks"], p["threads"]), (B, H)
                for d in ("fwd", "bwd"):
                    assert perf_model.persistent_step(kind, d, B, H, "bf16", "v2") <= \
                        perf_model.persistent_step(kind, d, B, H, "bf16", "v1")
    # The cluster forward: sized as the plan sizes it, and the plan's preference is within 15%
    # of the model's faster choice wherever the tensor-core layout fits.
    for kind in ("lstm", "gru"):
        for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            for B in (1, 3, 4, 8, 9, 16):
                for H in range(16, 1100, 48):
                    p = cplan(kind, B, H, dtype)
                    U, blocks, threads, fits, mma = perf_model.cluster_config(kind, B, H, prec)
                    assert fits == (p["cluster_blocks"] > 0), (kind, prec, B, H)
                    if not fits:
                        continue
                    assert (U, blocks, threads, mma) == (p["cluster_units"], p["cluster_blocks"],
                                                         p["cluster_threads"],
                                                         bool(p["cluster_mma"])), (B, H)
                    assert perf_model.cluster_preferred(kind, B, H, prec) == \
                        bool(p["cluster_preferred"])
                    if mma:
                        grid = perf_model.persistent_step(kind, "fwd", B, H, prec, "v2")
                        cl = perf_model.cluster_step(kind, B, H, prec)
                        chosen = cl if p["cluster_preferred"] else grid
                        assert chosen <= 1.15 * min(grid, cl), (kind, prec, B, H, grid, cl)


def test_perf_model_flag_exchange():
    """The model's grid forward with the flag-word exchange (exchange="flags"): no grid barrier,
    a poll's latency instead, twice the exchanged bytes. Where the step is latency-bound (bf16,
    B * H <= 4096) it predicts the barrier's cost less the poll's (and a few clocks to issue
    twice the loads); where every block reading
    h as 8-byte words is bound by L2 bandwidth (fp32, B = 16, H = 1024) it predicts it slower
    than the barrier (gpu_check's cluster-vs-grid table measures both there). The backward, v1
    and the cluster forward are untouched by it."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
    import perf_model as m
    saved = m.GRID_BARRIER - (m.FLAG_LAT - m.L2_LAT)
    for cell in ("lstm", "gru"):
        for B in (1, 4, 8, 16):
            for H in (256, 512):
                bar = m.persistent_step(cell, "fwd", B, H, "bf16")
                fl = m.persistent_step(cell, "fwd", B, H, "bf16", exchange="flags")
                assert fl < bar, (B, H)
                if B * H <= 4096:  # latency-bound: + the issue of twice the loads, a few clocks
                    assert bar - saved - 1e-12 <= fl <= bar - saved + 0.05e-6, (B, H, bar, fl)
        assert m.persistent_step(cell, "fwd", 16, 1024, "fp32", exchange="flags") > \
            m.persistent_step(cell, "fwd", 16, 1024, "fp32")
        # v1 has no exchange of its own; v3 on the cluster where preferred, else v2's grid
        assert m.persistent_step(cell, "fwd", 8, 512, "bf16", "v1", exchange="flags") == \
            m.persistent_step(cell, "fwd", 8, 512, "bf16", "v1")
        assert m.cluster_preferred(cell, 8, 256, "bf16")
        assert m.persistent_step(cell, "fwd", 8, 256, "bf16", "v3", exchange="flags") == \
            m.persistent_step(cell, "fwd", 8, 256, "bf16", "v3")
        assert not m.cluster_preferred(cell, 8, 512, "bf16")
        assert m.persistent_step(cell, "fwd", 8, 512, "bf16", "v3", exchange="flags") == \
            m.persistent_step(cell, "fwd", 8, 512, "bf16", "v2", exchange="flags")
        assert m.persistent_step(cell, "bwd", 8, 512, "bf16", exchange="flags") == \
            m.persistent_step(cell, "bwd", 8, 512, "bf16")


def test_auto_follows_the_models():
    """algorithm "auto" on CUDA (validate.h use_persistent): persistent when W_hh fits and B is at
    most the forward's / the backward's bound, which are the largest batches (of 1, 8, ..., 128)
    at which benchmarks/perf_model.py predicts the persistent kernels no slower (5% margin) than
    the stepwise ones at every H = 128..1024, LSTM and GRU, fp32 (TF32) and bf16."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
    import perf_model as m
    batches = (1, 8, 16, 24, 32, 48, 64, 96, 128)
    bound = {}
    for d in ("fwd", "bwd"):
        ok = []
        for B in batches:
            ratios = [m.step_time(cell, d, B, H, sp) /
                      m.persistent_step(cell, d, B, H, prec, "v3")
                      for cell in ("lstm", "gru") for H in (128, 256, 512, 1024)
                      for prec, sp in (("fp32", "tf32"), ("bf16", "half"))]
            ok.append(min(ratios) >= 0.95)
        bound[d] = max(B for B, good in zip(batches, ok) if good and all(ok[:batches.index(B)]))
    for d, backward in (("fwd", False), ("bwd", True)):
        chosen = [B for B in range(1, 200) if _C._use_persistent("auto", True, B, backward)]
        assert chosen == list(range(1, bound[d] + 1)), (d, bound[d], chosen[-1:])
        assert not _C._use_persistent("auto", False, 1, backward)  # does not fit
        assert _C._use_persistent("persistent", False, 500, backward)  # explicit: honoured
        assert not _C._use_persistent("stepwise", True, 1, backward)
    assert bound["fwd"] > bound["bwd"] >= 16


def test_auto_inference_follows_the_h200_measurement():
    """"auto" for one direction's inference forward on a GPU (csrc/auto_measured.h) picks the
    faster of the two kernels wherever the H200 run of benchmarks/results/gpu-2026-12-04 measured
    them more than 12% apart (single layers, T = 100, B <= 48; closer pairs are within the spread
    of one run: bf16 and fp16 of one shape differed by up to 5%)."""
    import json
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks", "results",
                        "gpu-2026-12-04", "report.json")
    with open(path) as f:
        rows = {r["name"]: r for r in json.load(f)["results"] if r["status"] in ("ok", "MISMATCH")}
    checked = []
    for name, r in rows.items():
        if not name.endswith(" infer persistent") or r["bidirectional"] or r["layers"] != 1:
            continue
        s = rows.get(name.replace(" persistent", " stepwise"))
        if s is None or r["B"] > 48:
            continue
        ratio = s["fusedrnn_s"] / r["fusedrnn_s"]  # > 1: the persistent kernel was faster
        if abs(ratio - 1) <= 0.12:
            continue
        half = r["dtype"] in ("bf16", "fp16")
        got = _C._auto_inference_persistent(r["cell"], r["B"], r["H"], half)
        assert got == (ratio > 1), (name, round(ratio, 2), got)
        checked.append(name)
    assert len(checked) >= 30, checked


def test_plan_follows_simt_arch():
    p90 = dict(zip(FIELDS, P.plan("lstm", 1, 1000, torch.float32)))
    _C.simt_set_arch("sm_80")
    p80 = dict(zip(FIELDS, P.plan("lstm", 1, 1000, torch.float32)))
    assert p90["blocks"] <= 132 and p90["units"] == 8
    assert p80["blocks"] <= 108 and p80["units"] == 10


def test_too_large_raises_clear_error():
    H = 2048  # fp32 LSTM: 16 units x 4 gates x 2048 x 4 B = 512 KB per block on sm_90
    d = dict(x=torch.zeros(1, 1, 2), h0=torch.zeros(1, H), c0=torch.zeros(1, H),
             w_ih=torch.zeros(4 * H, 2), w_hh=torch.zeros(4 * H, H))
    with pytest.raises(RuntimeError, match=r"persistent: W_hh of H=2048 does not fit"):
        P.lstm_forward(d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"], None, None, False)
    # and at small H when the blocks are capped (cheap), for every op
    with tuning(max_blocks=1):
        e = layer_inputs("gru", 2, 1, 2, 200, dtype=torch.float32)
        with pytest.raises(RuntimeError, match=r"persistent: W_hh of H=200 does not fit"):
            P.gru_forward(e["x"], e["h0"], e["w_ih"], e["w_hh"], e["b_ih"], e["b_hh"], False)
        y = torch.zeros(2, 1, 200)
        with pytest.raises(RuntimeError, match=r"persistent: W_hh of H=200 does not fit"):
            P.gru_backward(y, y[0], e["x"], e["h0"], e["w_ih"], e["w_hh"], y,
                           torch.zeros(2, 1, 600), y, False)
    assert not P.plan("lstm", 1, 2048, torch.float32)[0]
    assert P.plan("lstm", 1, 2048, torch.float16)[0] in (0, 1)


def test_algorithm_context_manager():
    assert fusedrnn.get_algorithm() == "auto"
    with fusedrnn.algorithm("persistent"):
        assert fusedrnn.get_algorithm() == "persistent"
        with fusedrnn.algorithm("stepwise"):
            assert fusedrnn.get_algorithm() == "stepwise"
        assert fusedrnn.get_algorithm() == "persistent"
    assert fusedrnn.get_algorithm() == "auto"
    with pytest.raises(ValueError, match="unknown algorithm"):
        with fusedrnn.algorithm("fast"):
            pass
