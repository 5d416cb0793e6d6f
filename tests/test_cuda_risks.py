"""Correctness risks found by reading the CUDA launchers, each pinned by a test.

- The stepwise grid puts row tiles on grid.x: a batch of more than 65535 row tiles (~1M rows)
  launches (grid.y is limited to 65535, and the SIMT layer enforces that limit like the GPU).
- The half-type stepwise backward keeps the gate gradients in fp32 across steps, as the
  persistent backward does, so the two algorithms give the same bf16/fp16 gradients.
- The persistent forward exchanges h in the storage dtype, as the stepwise kernels read it, so the
  two algorithms give the same bf16/fp16 outputs.
- GPU only (skipped here): CUDA-graph capture of forward and backward, dense and packed, replayed
  after the host buffers of capture time were recycled; two host threads launching one
  persistent kernel with different shared-memory sizes at once.
"""
import threading

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from fusedrnn._ops import ops
from conftest import layer_inputs

simt = pytest.mark.skipif(not fusedrnn.build_info()["simt"], reason="SIMT layer not built")
gpu = pytest.mark.skipif(not (fusedrnn.build_info()["cuda"] and torch.cuda.is_available()),
                         reason="needs a CUDA GPU and a CUDA build")


@simt
def test_stepwise_grid_beyond_65535_row_tiles():
    """RNN steps tile 16 rows per block: 65536 * 16 + 3 rows need 65537 row tiles."""
    B, H, I = 65536 * 16 + 3, 1, 1
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, B, I, generator=g) - 0.5
    h0 = torch.rand(B, H, generator=g) - 0.5
    w_ih, w_hh = torch.rand(H, I, generator=g), torch.rand(H, H, generator=g)
    with fusedrnn.backend("simt"):
        y, h_n = fusedrnn.functional.rnn_layer(x, h0, w_ih, w_hh)
    exp = torch.tanh(x[0] @ w_ih.t() + h0 @ w_hh.t())
    torch.testing.assert_close(y[0], exp, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(h_n, exp, atol=1e-6, rtol=1e-5)


def _backward_both(kind, dtype, T=24, B=3, H=12, I=5, backend="simt"):
    """The backward op of both algorithms on the same forward values (the stepwise forward's)."""
    d = layer_inputs(kind, T, B, I, H, dtype=torch.float64, seed=3)
    d = {k: (v.to(dtype) if v is not None else None) for k, v in d.items()}
    g = torch.Generator().manual_seed(4)
    dy = (torch.rand(T, B, H, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    dh = (torch.rand(B, H, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    w = (d["x"], d["h0"])
    out = {}
    for algo in ("stepwise", "persistent"):
        if kind == "lstm":
            fw = ops.lstm_forward(*w, d["c0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"], False,
                                  backend, None, None, "stepwise")
            out[algo] = ops.lstm_backward(dy, dh, dh.clone(), *w, d["c0"], d["w_ih"], d["w_hh"],
                                          fw[0], fw[3], fw[4], False, backend, None, None, algo)
        else:
            fw = ops.gru_forward(*w, d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"], False, backend,
                                 None, "stepwise")
            out[algo] = ops.gru_backward(dy, dh, *w, d["w_ih"], d["w_hh"], fw[0], fw[2], fw[3],
                                         False, backend, None, algo)
    return out


@simt
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_half_stepwise_backward_matches_persistent(kind, dtype):
    """Both keep the gate gradients in fp32 through the recurrence (they used to differ: the
    stepwise kernel rounded them to the storage dtype each step and fed them back: up to 4 ulp
    apart at T=24); what remains is fp32 summation order before the final rounding (measured:
    identical but one element, under one ulp)."""
    out = _backward_both(kind, dtype)
    names = ["dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"] if kind == "lstm" else \
        ["dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"]
    ulp = {torch.bfloat16: 2 ** -8, torch.float16: 2 ** -11}[dtype]
    for name, a, b in zip(names, out["stepwise"], out["persistent"]):
        a, b = a.double(), b.double()
        err = ((a - b).abs() / b.abs().clamp_min(b.abs().max() * 0.05)).max().item()
        assert err <= ulp, f"{name}: stepwise and persistent differ by {err:.2e}"


@simt
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_half_stepwise_forward_matches_persistent(kind, dtype):
    """Both feed h_{t-1} to the recurrence rounded to the storage dtype (the persistent kernel
    used to exchange it in fp32). The recurrence is isolated: W_ih = 0 (and the LSTM's b_hh = 0)
    makes the input projection b_ih exactly, which the stepwise kernels hold in the storage
    dtype and the persistent ones in fp32 (a difference of the projection, not of the
    recurrence). What may remain is fp32 summation order before each output's rounding."""
    T, B, H, I = 24, 3, 12, 5
    d = layer_inputs(kind, T, B, I, H, dtype=torch.float64, seed=3)
    d = {k: (v.to(dtype) if v is not None else None) for k, v in d.items()}
    d["w_ih"].zero_()
    if kind == "lstm":
        d["b_hh"].zero_()
    w = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"], False, "simt")
    out = {}
    for algo in ("stepwise", "persistent"):
        if kind == "lstm":
            out[algo] = ops.lstm_forward(d["x"], d["h0"], d["c0"], *w, None, None, algo)
        else:
            out[algo] = ops.gru_forward(d["x"], d["h0"], *w, None, algo)
    ulp = {torch.bfloat16: 2 ** -8, torch.float16: 2 ** -11}[dtype]
    a, b = out["stepwise"][0].double(), out["persistent"][0].double()
    err = ((a - b).abs() / b.abs().clamp_min(b.abs().max() * 0.05)).max().item()
    assert err <= ulp, f"y: stepwise and persistent differ by {err / ulp:.1f} ulp"
    assert (a != b).double().mean().item() < 0.05


# ---------------------------------------------------------------------------------- GPU only

def _capture(fn, warmup=2):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


@gpu
@pytest.mark.parametrize("algo", ["stepwise", "persistent"])
@pytest.mark.parametrize("packed", [False, True])
def test_cuda_graph_capture_forward_backward(algo, packed):
    torch.manual_seed(0)
    T, B, I, H = 7, 4, 6, 16
    m = fusedrnn.LSTM(I, H).cuda()
    x = torch.randn(T, B, I, device="cuda", requires_grad=True)
    lengths = torch.tensor([7, 5, 5, 2])

    def step():
        with fusedrnn.algorithm(algo):
            inp = pack_padded_sequence(x, lengths) if packed else x
            out, _ = m(inp)
            y = out.data if packed else out
            gx, = torch.autograd.grad(y.square().sum(), x)
        return y.detach(), gx

    graph, (y_g, gx_g) = _capture(step)
    # Recycle pinned host memory used during capture, then replay on new input values.
    for _ in range(8):
        torch.empty(1 << 16, dtype=torch.int64, pin_memory=True).fill_(-1)
    with torch.no_grad():
        x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    y_e, gx_e = step()
    torch.testing.assert_close(y_g, y_e, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gx_g, gx_e, atol=1e-5, rtol=1e-4)


@gpu
def test_persistent_launches_from_two_threads_with_different_sizes():
    """The shared-memory opt-in is raised once per kernel (it was set per launch to the launch's
    own size: a thread could launch under another thread's smaller limit)."""
    errors = []

    def worker(H, seed):
        try:
            torch.manual_seed(seed)
            m = fusedrnn.LSTM(H, H).cuda()
            ref = torch.nn.LSTM(H, H).cuda()
            ref.load_state_dict(m.state_dict())
            x = torch.randn(20, 2, H, device="cuda")
            for _ in range(20):
                with fusedrnn.algorithm("persistent"), torch.no_grad():
                    y, _ = m(x)
            with torch.no_grad(), torch.backends.cudnn.flags(allow_tf32=False):
                torch.testing.assert_close(y, ref(x)[0], atol=2e-3, rtol=2e-3)
        except Exception as e:  # noqa: BLE001 - collected and raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(h, i)) for i, h in enumerate((64, 384))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@gpu
def test_stepwise_grid_beyond_65535_row_tiles_on_gpu():
    B = 65536 * 16 + 3
    x = torch.randn(2, B, 3, device="cuda")
    m = fusedrnn.RNN(3, 2).cuda()
    ref = torch.nn.RNN(3, 2).cuda()
    ref.load_state_dict(m.state_dict())
    with torch.no_grad(), fusedrnn.algorithm("stepwise"):
        y, _ = m(x)
        torch.testing.assert_close(y, ref(x)[0], atol=2e-3, rtol=2e-3)
