"""The CPU backend's thin LSTM sweeps (csrc/cpu/lstm_sweep.h: the forward and backward time loops
of a batch of at most cpu_lstm_thin_rows() rows, each in one parallel region with one barrier per
step, threads owning ranges of L hidden units; the forward runs the fused step with h
double-buffered, the backward reads dh = da W_hh from W_hh as stored, every other step in
reverse), on every instruction set they are compiled for that this CPU has (the cpu_isa fixture:
AVX-512, L = 16; AVX2 + FMA, L = 8). Outputs, final states and gradients against the fp64
reference (autograd through fusedrnn.reference) and against a step at a time
(FUSEDRNN_CPU_THIN=0, same instruction set) on the same inputs: hidden sizes that do and do not
fill an 8- or 16-unit vector (and the backward product's column chunks, full and partial), every
row count the sweeps take (row groups of 1..4 in the backward product) and one more (a step at a
time), packed input in both directions (rows that leave, or join from h0, between steps), 1 and
2 threads (H = 129 and 201: W_hh above the 128 KB from which two threads split it), and a W_hh of
2.6 MB (forward sweep only). The sizes here are small enough that the input projection is
hoisted."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from fusedrnn import functional as F
from fusedrnn import reference

testing = torch.ops.fusedrnn_testing
# A forward of fewer rows than this in all reads W_hh as stored instead of packing it for the
# fused step and its sweep (csrc/cpu/matmul.h: kPackMinRows), so every case here has at least
# this many.
MIN_ROWS = 17
pytestmark = pytest.mark.skipif(not testing.cpu_lstm_thin(),
                                reason="the thin LSTM sweep needs AVX2 + FMA or AVX-512")
ROWS = testing.cpu_lstm_thin_rows()


def _inputs(T, B, I, H, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, k=0.5: torch.randn(*s, generator=g) * k  # noqa: E731
    k = 1.5 / H ** 0.5  # large enough that gradients do not vanish over the steps
    return [r(T, B, I), r(B, H), r(B, H), r(4 * H, I, k=0.3), r(4 * H, H, k=k), r(4 * H),
            r(4 * H)]


def _grads(leaves, forward, seed=7):
    """Outputs of forward(*leaves) and the gradients of all leaves for fixed random cotangents."""
    leaves = [t.clone().requires_grad_() for t in leaves]
    outs = forward(*leaves)
    g = torch.Generator().manual_seed(seed)
    cot = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype) for o in outs]
    torch.autograd.backward(outs, cot)
    return [o.detach() for o in outs] + [t.grad for t in leaves]


def _fused(reverse, batch_sizes=None):
    def run(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        with fusedrnn.backend("cpu"):
            return F.lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=reverse,
                                batch_sizes=batch_sizes)
    return run


def _step_at_a_time(monkeypatch, leaves, reverse, batch_sizes=None):
    with monkeypatch.context() as m:
        m.setenv("FUSEDRNN_CPU_THIN", "0")
        assert not testing.cpu_lstm_thin()
        return _grads(leaves, _fused(reverse, batch_sizes))


def _close(got, want, tol):
    for k, (a, b) in enumerate(zip(got, want)):
        torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol, msg=f"item {k}")


@pytest.mark.parametrize("H", [1, 7, 13, 16, 33, 37, 67, 100, 129])
@pytest.mark.parametrize("B", list(range(1, ROWS + 2)))
@pytest.mark.parametrize("reverse", [False, True])
def test_sweep_matches_reference_and_step_at_a_time(H, B, reverse, threads, cpu_isa,
                                                    monkeypatch):
    T, I = max(5, -(-MIN_ROWS // B)), 9
    assert testing.cpu_lstm_fused_isa() == cpu_isa and testing.cpu_lstm_thin()
    leaves = _inputs(T, B, I, H, seed=H * 10 + B)
    got = _grads(leaves, _fused(reverse))
    want = _grads([t.double() for t in leaves],
                  lambda *a: reference.lstm_layer(*a, reverse=reverse))
    _close(got, want, 5e-5)
    _close(got, _step_at_a_time(monkeypatch, leaves, reverse), 2e-5)


@pytest.mark.parametrize("reverse", [False, True])
def test_sweep_packed(reverse, threads, cpu_isa, monkeypatch):
    """Rows leave (forward) or join from h0 (reverse) between steps: a row's final state is the
    one of its own last active step."""
    T, B, I, H = 10, ROWS, 6, 21  # at least T + B - 1 = MIN_ROWS packed rows
    assert testing.cpu_lstm_fused_isa() == cpu_isa
    x, *rest = _inputs(T, B, I, H, seed=3)
    lengths = torch.tensor(sorted(torch.randint(1, T + 1, (B,)).tolist(), reverse=True))
    lengths[0] = T
    packed = pack_padded_sequence(x, lengths)
    leaves = [packed.data, *rest]
    got = _grads(leaves, _fused(reverse, packed.batch_sizes))
    _close(got, _step_at_a_time(monkeypatch, leaves, reverse, packed.batch_sizes), 2e-5)
    # each sequence alone through the fp64 reference: its own h0/c0 and weight gradients add up
    dh0 = torch.zeros(B, H, dtype=torch.float64)
    for b, L in enumerate(lengths.tolist()):
        rows = [int(packed.batch_sizes[:t].sum()) + b for t in range(L)]
        cot = torch.Generator().manual_seed(7)
        # the same cotangents _grads drew, restricted to this sequence
        dy = torch.randn(packed.data.shape[0], H, generator=cot, dtype=torch.float64)[rows]
        dh_n = torch.randn(B, H, generator=cot, dtype=torch.float64)[b:b + 1]
        dc_n = torch.randn(B, H, generator=cot, dtype=torch.float64)[b:b + 1]
        xb = x[:L, b].double().requires_grad_()
        h0 = rest[0][b:b + 1].double().requires_grad_()
        c0 = rest[1][b:b + 1].double().requires_grad_()
        y, h_n, c_n = reference.lstm_layer(xb[:, None], h0, c0, *[w.double() for w in rest[2:]],
                                           reverse=reverse)
        torch.autograd.backward((y[:, 0], h_n, c_n), (dy, dh_n, dc_n))
        torch.testing.assert_close(got[4][b:b + 1].double(), h0.grad, rtol=5e-5, atol=5e-5)
        torch.testing.assert_close(got[5][b:b + 1].double(), c0.grad, rtol=5e-5, atol=5e-5)
        torch.testing.assert_close(got[3][rows].double(), xb.grad, rtol=5e-5, atol=5e-5)
        dh0[b] = h0.grad[0]
    assert dh0.abs().min() > 0  # every row received a gradient


@pytest.mark.parametrize("H", [201, 401])
@pytest.mark.parametrize("B", [1, 3])
def test_sweep_two_slots(H, B, cpu_isa, monkeypatch):
    """Two threads split the units: H = 201 (AVX-512: 12 full vectors + 9 units; AVX2: 25 + 1;
    both sweeps) and H = 401 (W_hh of 2.6 MB: the forward sweep, the backward a step at a
    time), each slot walking its share in alternating directions."""
    assert testing.cpu_lstm_fused_isa() == cpu_isa
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        T, I = max(6, -(-MIN_ROWS // B)), 10
        leaves = _inputs(T, B, I, H, seed=B)
        got = _grads(leaves, _fused(False))
        want = _grads([t.double() for t in leaves], lambda *a: reference.lstm_layer(*a))
        _close(got, want, 1e-4)
        _close(got, _step_at_a_time(monkeypatch, leaves, False), 5e-5)
    finally:
        torch.set_num_threads(old)
