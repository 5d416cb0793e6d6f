"""Inference without saved activations (issue #21 item 2): when nothing can call backward, the
LSTM/GRU forward ops run with save=False, return empty gates/cells/ghn, keep no per-row buffer
but y, and compute the same outputs as the saving path."""
import contextlib

import pytest
import torch

import fusedrnn
from fusedrnn import functional as F
from conftest import chunk_bytes_env as chunk_bytes, device_of, layer_inputs

ops = torch.ops.fusedrnn

# Small chunk budgets make many chunks (and, at 1 byte, one step per chunk) of the test sizes.
CHUNKS = ["1", "5000", None]


def same(a, b, backend, exact=False):
    """The same kernels run either way; only the input projection's GEMM covers a chunk of rows
    instead of all, which a GEMM may round differently (BLAS for fp64 and under SIMT, cuBLAS,
    and the CPU backend's own fp32 GEMM in the rows of a partial register tile): equal to
    rounding, and bit-identical where exact (fp32 CPU, whole tiles: B a multiple of 8)."""
    if exact:
        assert torch.equal(a, b), (a - b).abs().max()
    else:
        torch.testing.assert_close(a, b)


def algorithms(backend, proj):
    if backend == "cpu":
        return ["auto"]
    return ["stepwise"] if proj else ["stepwise", "persistent"]


def op_call(kind, d, reverse, backend, bs, w_hr, algorithm, save):
    w = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    if kind == "lstm":
        return ops.lstm_forward(d["x"], d["h0"], d["c0"], *w, reverse, backend, bs, w_hr,
                                algorithm, save)
    return ops.gru_forward(d["x"], d["h0"], *w, reverse, backend, bs, algorithm, save)


def packed_inputs(kind, lengths, B, I, H, device, P=None):
    """layer_inputs with x packed: batch_sizes from the (sorted, decreasing) lengths."""
    T = lengths[0]
    d = layer_inputs(kind, T, B, I, H, device=device)
    bs = torch.tensor([sum(1 for n in lengths if n > t) for t in range(T)])
    d["x"] = torch.cat([d["x"][t, :int(bs[t])] for t in range(T)])
    return d, bs


@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru"])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("chunk", CHUNKS)
def test_ops_save_false(backend, kind, packed, reverse, chunk, monkeypatch):
    """save=False: empty saved tensors, and y, h_n (, c_n) equal to save=True's."""
    dev = device_of(backend)
    proj = kind == "lstm_proj"
    cell = "gru" if kind == "gru" else "lstm"
    T, B, I, H, P = 7, 5, 4, 6, 3
    if packed:
        d, bs = packed_inputs(cell, [7, 7, 5, 2, 1], B, I, H, dev)
    else:
        d, bs = layer_inputs(cell, T, B, I, H, device=dev), None
    w_hr = None
    if proj:
        g = torch.Generator().manual_seed(3)
        w_hr = torch.randn(P, H, generator=g, dtype=d["x"].dtype).to(dev)
        d["w_hh"] = torch.randn(4 * H, P, generator=g, dtype=d["x"].dtype).to(dev)
        d["h0"] = d["h0"][:, :P].contiguous()
    for algorithm in algorithms(backend, proj):
        with chunk_bytes(chunk, monkeypatch):
            full = op_call(cell, d, reverse, backend, bs, w_hr, algorithm, True)
            lean = op_call(cell, d, reverse, backend, bs, w_hr, algorithm, False)
        n_out = 3 if cell == "lstm" else 2
        for a, b in zip(lean[:n_out], full[:n_out]):
            same(a, b, backend)
        for t in lean[n_out:]:
            assert t.shape == (0,) and t.dtype == d["x"].dtype and t.device == d["x"].device
        assert all(t.numel() > 0 for t in full[n_out:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_ops_save_false_dtypes(backend, dtype, cell, monkeypatch):
    """The fp32 fast paths (fused/thin CPU steps, B <= 8 and B > 8) and a half type."""
    dev = device_of(backend)
    for B in (3, 16):
        d = {k: (v.to(dtype) if v is not None else None)
             for k, v in layer_inputs(cell, 9, B, 8, 16, device=dev).items()}
        for algorithm in algorithms(backend, False):
            with chunk_bytes("3000", monkeypatch):
                full = op_call(cell, d, False, backend, None, None, algorithm, True)
                lean = op_call(cell, d, False, backend, None, None, algorithm, False)
            n_out = 3 if cell == "lstm" else 2
            for a, b in zip(lean[:n_out], full[:n_out]):
                same(a, b, backend, exact=backend == "cpu" and dtype == torch.float32
                     and B % 8 == 0)


# ------------------------------------------------------------------ the autograd Functions

class SaveSpy:
    """Records the save argument of every LSTM/GRU forward op call the Functions make."""

    def __init__(self, real):
        self.real, self.saves = real, []

    def lstm_forward(self, *args):
        self.saves.append(args[12] if len(args) > 12 else True)
        return self.real.lstm_forward(*args)

    def gru_forward(self, *args):
        self.saves.append(args[10] if len(args) > 10 else True)
        return self.real.gru_forward(*args)

    # Both directions of a layer in one op (save defaults to False there).
    def lstm_forward_bidir(self, *args):
        self.saves.append(args[14] if len(args) > 14 else False)
        return self.real.lstm_forward_bidir(*args)

    def gru_forward_bidir(self, *args):
        self.saves.append(args[13] if len(args) > 13 else False)
        return self.real.gru_forward_bidir(*args)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.fixture
def spy(monkeypatch):
    s = SaveSpy(F.ops)
    monkeypatch.setattr(F, "ops", s)
    return s


def make_module(kind, **kw):
    torch.manual_seed(0)
    if kind == "gru":
        return fusedrnn.GRU(5, 6, **kw).double()
    return fusedrnn.LSTM(5, 6, proj_size=3 if kind == "lstm_proj" else 0, **kw).double()


def run(m, x):
    out, h = m(x)
    if isinstance(out, torch.nn.utils.rnn.PackedSequence):
        out = out.data
    return [out] + (list(h) if isinstance(h, tuple) else [h])


MODES = ["no_grad", "inference_mode", "frozen", "frozen_x_grad", "train"]


def mode_context(mode):
    if mode == "no_grad":
        return torch.no_grad()
    if mode == "inference_mode":
        return torch.inference_mode()
    return contextlib.nullcontext()


@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru"])
@pytest.mark.parametrize("layout", ["dense", "packed", "bidirectional_2layers"])
@pytest.mark.parametrize("mode", MODES)
def test_modules_choose_save(backend, spy, kind, layout, mode, monkeypatch):
    """no_grad / inference_mode / frozen weights (x without grad) run save=False with the
    outputs of the saving path; anything that can call backward runs save=True and gets the
    same gradients as the saving path."""
    dev = device_of(backend)
    kw = dict(num_layers=2, bidirectional=True) if layout == "bidirectional_2layers" else {}
    m = make_module(kind, **kw).to(dev)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, 5, generator=g, dtype=torch.float64).to(dev)
    if layout == "packed":
        x = torch.nn.utils.rnn.pack_padded_sequence(x, [6, 5, 3, 1])
    monkeypatch.setenv("FUSEDRNN_NOSAVE_CHUNK_BYTES", "2000")  # several chunks
    for algorithm in algorithms(backend, kind == "lstm_proj"):
        with fusedrnn.algorithm(algorithm):
            ref = [t.detach() for t in run(m, x)]  # grad mode on, weights require grad: saves
            assert spy.saves and all(spy.saves)
            spy.saves.clear()
            if mode.startswith("frozen"):
                m.requires_grad_(False)
            xin = x
            if mode == "frozen_x_grad":
                data = (x.data if layout == "packed" else x).clone().requires_grad_()
                xin = (torch.nn.utils.rnn.PackedSequence(data, x.batch_sizes)
                       if layout == "packed" else data)
            with mode_context(mode):
                outs = run(m, xin)
            m.requires_grad_(True)
            want_save = mode in ("frozen_x_grad", "train")
            assert spy.saves and all(s == want_save for s in spy.saves), spy.saves
            spy.saves.clear()
            for a, b in zip(outs, ref):
                same(a.detach(), b, backend)
            if want_save:
                # backward through the saved tensors, against the saving path's gradients of
                # a second, identical forward (all inputs of the first one)
                leaf = xin.data if layout == "packed" else xin
                loss = sum((o * (k + 1)).sum() for k, o in enumerate(outs))
                got = torch.autograd.grad(loss, [leaf] if mode == "frozen_x_grad"
                                          else list(m.parameters()))
                assert all(g is not None and torch.isfinite(g).all() for g in got)
                if mode == "train":
                    # the reference on the CPU backend (CPU tensors), whatever the device
                    m2 = make_module(kind, **kw)
                    with fusedrnn.backend("cpu"):
                        outs2 = run(m2, x.to("cpu"))
                    loss2 = sum((o * (k + 1)).sum() for k, o in enumerate(outs2))
                    want = torch.autograd.grad(loss2, list(m2.parameters()))
                    for a, b in zip(got, want):
                        torch.testing.assert_close(a.cpu(), b)
                spy.saves.clear()


def test_functional_direct_flag(spy):
    """fusedrnn.functional: grad mode off or no input requiring grad -> save=False."""
    d = layer_inputs("lstm", 3, 2, 4, 5)
    args = (d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    F.lstm_layer(*args)
    assert spy.saves == [False]
    h0 = d["h0"].clone().requires_grad_()  # only h0 requires grad: backward can come
    y, _, _ = F.lstm_layer(d["x"], h0, *args[2:])
    assert spy.saves == [False, True]
    y.sum().backward()
    assert h0.grad is not None and torch.isfinite(h0.grad).all()
    with torch.no_grad():
        F.lstm_layer(d["x"], h0, *args[2:])
    assert spy.saves == [False, True, False]


def test_backward_after_save_false_recomputes():
    """The safety net: should a save=False forward ever be differentiated, backward recomputes
    the forward with save=True instead of reading the empty tensors."""
    d = layer_inputs("gru", 4, 3, 2, 5)
    x = d["x"].clone().requires_grad_()
    w = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    for save in (True, False):
        y, h = F.GRUFunction.apply(x, d["h0"], *w, False, "cpu", None, "auto", save)
        (gx,) = torch.autograd.grad(y.sum() + h.sum(), x)
        if save:
            want = gx
        else:
            torch.testing.assert_close(gx, want, rtol=0, atol=0)


# ------------------------------------------------------------------ memory

def _big_peak(fn):
    """Peak of the CPU backend's big buffers (csrc/cpu/big_buffer.h: from 1 MB up) during fn."""
    C = fusedrnn._ops._C
    C.cpu_reset_peak()
    base = C.cpu_cache_stats()["live"]
    out = fn()
    return C.cpu_cache_stats()["peak"] - base, out


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cpu_peak_memory(cell, monkeypatch):
    """A no_grad forward's CPU peak: y plus a chunk's scratch, not the gates and cells."""
    monkeypatch.setenv("FUSEDRNN_CPU_CACHE_MB", "0")
    monkeypatch.delenv("FUSEDRNN_NOSAVE_CHUNK_BYTES", raising=False)
    T, B, I, H = 100, 32, 64, 256
    torch.manual_seed(0)
    m = (fusedrnn.LSTM if cell == "lstm" else fusedrnn.GRU)(I, H)
    x = torch.randn(T, B, I)
    G = 4 if cell == "lstm" else 3
    MB = 1 << 20
    y_bytes = T * B * H * 4
    round2 = lambda n: -(-n // (2 * MB)) * (2 * MB)  # noqa: E731  (mapped sizes)
    with fusedrnn.backend("cpu"):
        saved, _ = _big_peak(lambda: m(x))
        with torch.no_grad():
            lean, (y, _) = _big_peak(lambda: m(x))
    # The saving forward holds y, gates [N,G*H] and cells/ghn [N,H] at once (the measurement
    # sees them).
    assert saved >= round2(y_bytes) + round2(T * B * G * H * 4) + round2(y_bytes)
    # Without saving: y, the scratch of one chunk (4 MB of gates + cells/ghn, two buffers each
    # rounded up to 2 MB) and the packed W_hh (1 MB, mapped as 2 MB).
    assert lean <= round2(y_bytes) + 4 * MB + 2 * 2 * MB, (lean / MB, saved / MB)
    assert y.shape == (T, B, H)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_compile_no_grad_then_train(kind, spy):
    """torch.compile (aot_eager: fake kernels with save=False): a no_grad call and a training
    call of the same compiled module each get their own graph and the right gradients."""
    m = make_module(kind)
    x = torch.randn(5, 3, 5, dtype=torch.float64)
    cm = torch.compile(m, backend="aot_eager")
    with torch.no_grad():
        lean = run(cm, x)
    assert spy.saves and not any(spy.saves)
    spy.saves.clear()
    outs = run(cm, x)
    assert spy.saves and all(spy.saves)
    for a, b in zip(lean, outs):
        torch.testing.assert_close(a, b.detach())
    got = torch.autograd.grad(sum(o.sum() for o in outs), list(m.parameters()))
    want = torch.autograd.grad(sum(o.sum() for o in run(m, x)), list(m.parameters()))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
