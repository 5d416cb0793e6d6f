"""The CPU backend's bidirectional layers (csrc/cpu/bidir_concurrent.h, csrc/bidir_ops.h
run_directions): where a direction is small, the two directions run side by side, one thread
each, and write their saved tensors into the halves of one buffer. Oracle: the single-direction
CPU ops one after the other, which the side-by-side path must reproduce exactly in fp32 (the same
arithmetic on one thread as on two: fusedrnn's products split columns, never sums) and within
rounding in fp64 (torch's BLAS, whose sums may depend on its thread count)."""
import pytest
import torch

import fusedrnn
from conftest import bidir_inputs

ops = torch.ops.fusedrnn
_C = fusedrnn._ops._C


@pytest.fixture
def two_threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def test_rule(two_threads):
    """Side by side where a direction's W_hh fits a core's L2 (<= 1 MiB); on more threads only
    where the per-step product runs on one thread anyway; never on one thread."""
    assert _C._cpu_bidir_concurrent(4, 8, 128, 4) and _C._cpu_bidir_concurrent(4, 64, 256, 4)
    assert _C._cpu_bidir_concurrent(3, 8, 256, 4)
    assert not _C._cpu_bidir_concurrent(4, 8, 512, 4)  # 4 MiB of W_hh
    assert not _C._cpu_bidir_concurrent(4, 8, 256, 8)  # fp64: 2 MiB
    torch.set_num_threads(1)
    assert not _C._cpu_bidir_concurrent(4, 8, 128, 4)
    torch.set_num_threads(4)
    assert _C._cpu_bidir_concurrent(4, 1, 128, 4)  # 0.13 MFLOP a step
    assert not _C._cpu_bidir_concurrent(4, 64, 128, 4)  # 8.4 MFLOP a step


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("H", [37, 128, 300])  # odd; side by side; one after the other (fp32)
def test_pair_equals_single_ops(two_threads, kind, dtype, packed, H):
    T, B = 6, 5
    x, bs, h0, c0, w = bidir_inputs(kind, T, B, H, H, dtype, packed, seed=H, seed_r=50)
    side = _C._cpu_bidir_concurrent(4 if kind == "lstm" else 3, B, H, x.element_size())
    assert side == (H != 300 and not (dtype == torch.float64 and H > 256))
    g = torch.Generator().manual_seed(9)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    dy, dh = rnd(*x.shape[:-1], 2 * H), rnd(2, B, H)
    dc = rnd(2, B, H) if kind == "lstm" else None
    if kind == "lstm":
        one = ops.lstm_forward_bidir(x, h0, c0, *w[0], *w[1], "cpu", bs, "auto", True)
        two = [ops.lstm_forward(x, h0[d], c0[d], *w[d], d == 1, "cpu", bs, None, "auto", True)
               for d in range(2)]
    else:
        one = ops.gru_forward_bidir(x, h0, *w[0], *w[1], "cpu", bs, "auto", True)
        two = [ops.gru_forward(x, h0[d], *w[d], d == 1, "cpu", bs, "auto", True)
               for d in range(2)]
    want = [torch.cat([two[0][0], two[1][0]], -1)]
    want += [torch.stack([two[0][i], two[1][i]]) for i in range(1, len(two[0]))]
    def same(a, b, what):
        assert a.shape == b.shape, what
        if dtype == torch.float32:
            assert torch.equal(a, b), what
        else:
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12, msg=what)

    for i, (a, b) in enumerate(zip(one, want)):
        same(a, b, f"forward output {i}")
    assert one[-2].is_contiguous() and one[-1].is_contiguous()
    y, saved = one[0], one[-2:]
    W = (w[0][0], w[0][1], w[1][0], w[1][1])
    if kind == "lstm":
        back = ops.lstm_backward_bidir(dy, dh, dc, x, h0, c0, *W, y, *saved, "cpu", bs, "auto")
        singles = [ops.lstm_backward(dy[..., d * H:(d + 1) * H], dh[d], dc[d], x, h0[d], c0[d],
                                     w[d][0], w[d][1], y[..., d * H:(d + 1) * H], saved[0][d],
                                     saved[1][d], d == 1, "cpu", bs, None, "auto")[:6]
                   for d in range(2)]
        n_state = 3
    else:
        back = ops.gru_backward_bidir(dy, dh, x, h0, *W, y, *saved, "cpu", bs, "auto")
        singles = [ops.gru_backward(dy[..., d * H:(d + 1) * H], dh[d], x, h0[d], w[d][0],
                                    w[d][1], y[..., d * H:(d + 1) * H], saved[0][d],
                                    saved[1][d], d == 1, "cpu", bs, "auto")
                   for d in range(2)]
        n_state = 2
    want = ([singles[0][0] + singles[1][0]]
            + [torch.stack([singles[0][i], singles[1][i]]) for i in range(1, n_state)]
            + list(singles[0][n_state:]) + list(singles[1][n_state:]))
    for i, (a, b) in enumerate(zip(back, want)):
        same(a, b, f"backward output {i}")


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU])
def test_module_training_side_by_side_matches_torch_nn(two_threads, cls, monkeypatch):
    """A 2-layer bidirectional module trained on the CPU backend side by side (BidirLSTMFunction
    / BidirGRUFunction, a layer each): torch.nn's outputs and gradients."""
    torch.manual_seed(0)
    m = cls(6, 20, num_layers=2, bidirectional=True)
    ref = getattr(torch.nn, cls.__name__)(6, 20, num_layers=2, bidirectional=True)
    ref.load_state_dict(m.state_dict())
    x0 = torch.randn(7, 3, 6, generator=torch.Generator().manual_seed(3))

    def run(mod):
        x = x0.clone().requires_grad_()
        out, hn = mod(x)
        finals = list(hn) if isinstance(hn, tuple) else [hn]
        (out.square().sum() + sum(f.sum() for f in finals)).backward()
        return [out] + finals + [x.grad] + [p.grad for p in mod.parameters()]

    fn = getattr(fusedrnn.functional,
                 "BidirLSTMFunction" if cls is fusedrnn.LSTM else "BidirGRUFunction")
    real, seen = fn.apply, []
    monkeypatch.setattr(fn, "apply", lambda *a: seen.append(1) or real(*a))
    got = run(m)
    assert len(seen) == 2
    for i, (a, b) in enumerate(zip(got, run(ref))):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-4, msg=lambda s: f"{i}: {s}")
