"""GRU with the reset gate before the recurrent product (Cho et al. 2014; issue 22 item 1):
fusedrnn.GRU / GRUCell(reset_after=False) and gru_layer(reset_after=False) on every backend (the
CPU backend; the CUDA kernels under SIMT, and on a GPU where there is one), against
fusedrnn.reference (written from the equations) in every dtype, dense and packed, both
directions, odd sizes, TF32 on and off; gradcheck in fp64; the modules' parameters and
state_dict are torch.nn.GRU's."""
import pytest
import torch

import fusedrnn
from fusedrnn import functional as F
from fusedrnn import reference
from conftest import (TOL, assert_close, backend_available, chunk_bytes_env, device_of,
                      layer_inputs)

ops = torch.ops.fusedrnn
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


def _args(d, dtype, grad):
    out = []
    for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"):
        t = d[k]
        out.append(None if t is None else t.to(dtype).requires_grad_(grad))
    return out


def _ref(args):
    """The same (rounded) inputs in fp64, as leaves for the reference."""
    return [None if a is None else a.detach().double().requires_grad_() for a in args]


def test_equations_of_one_step():
    """The reference's reset-before cell against the equations written out by hand."""
    d = layer_inputs("gru", 1, 3, 4, 5)
    x, h = d["x"][0], d["h0"]
    w_ih, w_hh, b_ih, b_hh = d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"]
    H = 5
    W = lambda w, k: w[k * H:(k + 1) * H]  # noqa: E731
    b = lambda v, k: v[k * H:(k + 1) * H]  # noqa: E731
    r = torch.sigmoid(x @ W(w_ih, 0).T + b(b_ih, 0) + h @ W(w_hh, 0).T + b(b_hh, 0))
    z = torch.sigmoid(x @ W(w_ih, 1).T + b(b_ih, 1) + h @ W(w_hh, 1).T + b(b_hh, 1))
    n = torch.tanh(x @ W(w_ih, 2).T + b(b_ih, 2) + (r * h) @ W(w_hh, 2).T + b(b_hh, 2))
    want = (1 - z) * n + z * h
    got = reference.gru_cell(x, h, w_ih, w_hh, b_ih, b_hh, reset_after=False)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    after = reference.gru_cell(x, h, w_ih, w_hh, b_ih, b_hh)
    assert (after - want).abs().max() > 1e-3  # the two cells differ


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,B,I,H", [(5, 1, 3, 7), (4, 19, 10, 13), (3, 35, 17, 33)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_against_reference(dtype, T, B, I, H, reverse, bias):
    d = layer_inputs("gru", T, B, I, H, bias=bias, seed=T * 100 + B)
    args = _args(d, dtype, True)
    ref = _ref(args)
    with fusedrnn.backend("cpu"):
        y, h_n = F.gru_layer(*args, reverse=reverse, reset_after=False)
    yr, hr = reference.gru_layer(*ref, reverse=reverse, reset_after=False)
    assert_close(y, yr, dtype)
    assert_close(h_n, hr, dtype)
    g = torch.Generator().manual_seed(1)
    wy, wh = torch.randn(y.shape, generator=g), torch.randn(h_n.shape, generator=g)
    ((y.double() * wy).sum() + (h_n.double() * wh).sum()).backward()
    ((yr * wy).sum() + (hr * wh).sum()).backward()
    for a, r in zip(args, ref):
        if a is not None:
            assert_close(a.grad, r.grad, dtype, scale=4)


@pytest.mark.parametrize("reverse", [False, True])
def test_packed_against_reference(reverse):
    lengths = [6, 6, 4, 3, 1]
    batch_sizes = torch.tensor([sum(L > t for L in lengths) for t in range(max(lengths))])
    N, I, H = int(batch_sizes.sum()), 4, 6
    d = layer_inputs("gru", 1, len(lengths), I, H, seed=3)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(N, I, generator=g, dtype=torch.float64, requires_grad=True)
    args = [x] + _args(d, torch.float64, True)[1:]
    ref = _ref(args)
    y, h_n = F.gru_layer(*args, reverse=reverse, batch_sizes=batch_sizes, reset_after=False)
    yr, hr = reference.gru_layer(*ref, reverse=reverse, batch_sizes=batch_sizes,
                                 reset_after=False)
    assert_close(y, yr, torch.float64)
    assert_close(h_n, hr, torch.float64)
    (y.sum() + (h_n * 2).sum()).backward()
    (yr.sum() + (hr * 2).sum()).backward()
    for a, r in zip(args, ref):
        assert_close(a.grad, r.grad, torch.float64)


@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck(reverse):
    d = layer_inputs("gru", 4, 3, 2, 5, seed=7)
    args = tuple(_args(d, torch.float64, True))
    assert torch.autograd.gradcheck(
        lambda *a: F.gru_layer(*a, reverse=reverse, reset_after=False), args)
    assert torch.autograd.gradgradcheck(
        lambda *a: F.gru_layer(*a, reverse=reverse, reset_after=False), args)


@pytest.mark.parametrize("chunk", ["1", "5000", None])
def test_inference_saves_nothing_and_matches(chunk, monkeypatch):
    d = layer_inputs("gru", 9, 18, 5, 7, dtype=torch.float32, seed=9)
    args = _args(d, torch.float32, False)
    with chunk_bytes_env(chunk, monkeypatch):
        y, h, gates, rh = ops.gru_rb_forward(*args, False, "cpu", None, False)
    assert gates.numel() == 0 and rh.numel() == 0
    y1, h1, gates1, rh1 = ops.gru_rb_forward(*args, False, "cpu", None, True)
    assert gates1.shape == (9, 18, 21) and rh1.shape == (9, 18, 7)
    torch.testing.assert_close(y, y1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, h1, rtol=1e-5, atol=1e-6)


def test_opcheck():
    d = layer_inputs("gru", 4, 3, 5, 6, seed=2)
    w = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    for reverse in (False, True):
        y, hn, gates, rh = ops.gru_rb_forward(d["x"], d["h0"], *w, reverse)
        torch.library.opcheck(ops.gru_rb_forward, (d["x"], d["h0"], *w, reverse))
        torch.library.opcheck(ops.gru_rb_backward,
                              (torch.randn_like(y), torch.randn_like(hn), d["x"], d["h0"],
                               d["w_ih"], d["w_hh"], y, gates, rh, reverse))


def test_module_matches_reference_and_keeps_torch_nn_parameters():
    torch.manual_seed(0)
    ref_nn = torch.nn.GRU(6, 9, num_layers=2, bidirectional=True, batch_first=True)
    m = fusedrnn.GRU(6, 9, num_layers=2, bidirectional=True, batch_first=True,
                     reset_after=False)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in ref_nn.named_parameters()]
    m.load_state_dict(ref_nn.state_dict())
    assert "reset_after=False" in repr(m) and "reset_after" not in repr(fusedrnn.GRU(6, 9))
    x = torch.randn(4, 11, 6, requires_grad=True)
    h0 = torch.randn(4, 4, 9)
    out, h_n = m(x, h0)
    # The same stack from the reference layers.
    inp, hs = x.transpose(0, 1), []
    for layer in range(2):
        ys = []
        for d, sfx in enumerate(("", "_reverse")):
            p = [getattr(m, f"{k}_l{layer}{sfx}") for k in
                 ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            y, h = reference.gru_layer(inp, h0[2 * layer + d], *p, reverse=d == 1,
                                       reset_after=False)
            ys.append(y)
            hs.append(h)
        inp = torch.cat(ys, -1)
    assert_close(out, inp.transpose(0, 1), torch.float32)
    assert_close(h_n, torch.stack(hs), torch.float32)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    # The default is still torch.nn.GRU's cell.
    m2 = fusedrnn.GRU(6, 9, num_layers=2, bidirectional=True, batch_first=True)
    m2.load_state_dict(ref_nn.state_dict())
    assert_close(m2(x, h0)[0], ref_nn(x, h0)[0], torch.float32)


def test_cell_matches_reference():
    torch.manual_seed(1)
    c = fusedrnn.GRUCell(5, 8, reset_after=False)
    x, h = torch.randn(3, 5), torch.randn(3, 8)
    want = reference.gru_cell(x, h, c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh,
                              reset_after=False)
    assert_close(c(x, h), want, torch.float32)
    assert_close(c(x[0], h[0]), want[0], torch.float32)  # unbatched
    assert "reset_after=False" in repr(c)


def test_in_place_change_of_the_output_keeps_gradients_right():
    d = layer_inputs("gru", 5, 4, 3, 6, seed=5)
    args = _args(d, torch.float64, True)
    ref = _ref(args)
    y, _ = F.gru_layer(*args, reset_after=False)
    y.mul_(2)
    y.sum().backward()
    yr, _ = reference.gru_layer(*ref, reset_after=False)
    (yr * 2).sum().backward()
    for a, r in zip(args, ref):
        assert_close(a.grad, r.grad, torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,B,I,H", [(3, 1, 3, 7), (2, 35, 9, 21)])
@pytest.mark.parametrize("reverse", [False, True])
def test_kernels_against_reference(kernel_backend, dtype, T, B, I, H, reverse, tf32):
    """The stepwise kernels (rz and n forward, zn and r backward), under SIMT here and on CUDA
    where there is a GPU: H not a multiple of the 16-unit tiles, batches of one and of several
    row tiles, tensor cores for the half types and TF32 (tolerance as fp16's)."""
    if tf32 and dtype != torch.float32:
        pytest.skip("TF32 applies to fp32 only")
    dev = device_of(kernel_backend)
    d = layer_inputs("gru", T, B, I, H, seed=T * 10 + B)
    args = [a.to(dev) for a in _args(d, dtype, False)]
    args = [a.requires_grad_() for a in args]
    ref = [a.detach().double().cpu().requires_grad_() for a in args]
    with fusedrnn.backend(kernel_backend):
        y, h_n = F.gru_layer(*args, reverse=reverse, reset_after=False)
    yr, hr = reference.gru_layer(*ref, reverse=reverse, reset_after=False)
    tol = torch.float16 if tf32 and dtype == torch.float32 else dtype
    assert_close(y, yr, tol)
    assert_close(h_n, hr, tol)
    g = torch.Generator().manual_seed(2)
    wy, wh = torch.randn(y.shape, generator=g), torch.randn(h_n.shape, generator=g)
    ((y.double() * wy.to(dev)).sum() + (h_n.double() * wh.to(dev)).sum()).backward()
    ((yr * wy).sum() + (hr * wh).sum()).backward()
    for a, r in zip(args, ref):
        assert_close(a.grad, r.grad, tol, scale=4)


@pytest.mark.parametrize("save", [True, False])
def test_kernels_packed(kernel_backend, save):
    dev = device_of(kernel_backend)
    lengths = [5, 5, 3, 2, 1]
    batch_sizes = torch.tensor([sum(L > t for L in lengths) for t in range(max(lengths))])
    N, I, H = int(batch_sizes.sum()), 4, 19
    d = layer_inputs("gru", 1, len(lengths), I, H, seed=8)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(N, I, generator=g, dtype=torch.float64)
    args = [x] + _args(d, torch.float64, False)[1:]
    for reverse in (False, True):
        want_y, want_h = reference.gru_layer(*args, reverse=reverse, batch_sizes=batch_sizes,
                                             reset_after=False)
        y, h, gates, rh = ops.gru_rb_forward(*[a.to(dev) for a in args], reverse,
                                             kernel_backend, batch_sizes, save)
        assert_close(y, want_y, torch.float64)
        assert_close(h, want_h, torch.float64)
        assert (gates.numel() > 0) == save and (rh.numel() > 0) == save


def test_simt_kernels_catch_a_broken_rule():
    """Sanity of the comparison above: the reset-after cell's outputs differ beyond the
    tolerance, so a kernel computing the wrong cell cannot pass."""
    d = layer_inputs("gru", 3, 4, 5, 6)
    args = _args(d, torch.float64, False)
    a, _ = reference.gru_layer(*args, reset_after=False)
    b, _ = reference.gru_layer(*args)
    assert (a - b).abs().max() > 10 * TOL[torch.float16]["atol"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_each_instruction_set(cpu_isa, threads, dtype):
    """The vectorised passes of every instruction set (pointwise_impl.h), with odd H (a partial
    vector at each row's end) and rows enough for the packed GEMM and threaded passes."""
    d = layer_inputs("gru", 3, 70, 9, 37, seed=11)
    args = _args(d, dtype, True)
    ref = _ref(args)
    y, h_n = F.gru_layer(*args, reset_after=False)
    yr, hr = reference.gru_layer(*ref, reset_after=False)
    assert_close(y, yr, dtype)
    assert_close(h_n, hr, dtype)
    (y.sum() + h_n.sum()).backward()
    (yr.sum() + hr.sum()).backward()
    for a, r in zip(args, ref):
        assert_close(a.grad, r.grad, dtype, scale=4)


@pytest.mark.parametrize("backend", ["cpu", "simt"])
def test_packed_bidirectional_module_on_each_backend(backend):
    """The module over a PackedSequence (unsorted lengths), 2 layers, bidirectional, against the
    same module's weights run through the reference layer by layer on the unpacked rows."""
    ok, why = backend_available(backend)
    if not ok:
        pytest.skip(why)
    torch.manual_seed(3)
    m = fusedrnn.GRU(5, 7, num_layers=2, bidirectional=True, reset_after=False).double()
    lengths = [4, 6, 2]
    xs = [torch.randn(L, 5, dtype=torch.float64) for L in lengths]
    packed = torch.nn.utils.rnn.pack_sequence(xs, enforce_sorted=False)
    with fusedrnn.backend(backend):
        out, h_n = m(packed)
    ys, _ = torch.nn.utils.rnn.pad_packed_sequence(out)
    for b, x in enumerate(xs):  # each sequence alone, through the reference
        inp, hs = x[:, None], []
        for layer in range(2):
            outs = []
            for d, sfx in enumerate(("", "_reverse")):
                p = [getattr(m, f"{k}_l{layer}{sfx}") for k in
                     ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                y, h = reference.gru_layer(inp, inp.new_zeros(1, 7), *p, reverse=d == 1,
                                           reset_after=False)
                outs.append(y)
                hs.append(h[0])
            inp = torch.cat(outs, -1)
        assert_close(ys[:lengths[b], b], inp[:, 0], torch.float64)
        assert_close(h_n[:, b], torch.stack(hs), torch.float64)


def test_converted_torch_nn_gru_keeps_torch_nn_cell():
    """fusedrnn.convert changes a torch.nn.GRU's class: it has no reset_after of its own and is
    still torch.nn's cell (the class default), printed as before."""
    torch.manual_seed(4)
    ref = torch.nn.Sequential(torch.nn.GRU(3, 5), torch.nn.GRUCell(3, 5))
    m = fusedrnn.convert(torch.nn.Sequential(torch.nn.GRU(3, 5), torch.nn.GRUCell(3, 5)))
    m.load_state_dict(ref.state_dict())
    assert repr(m) == repr(ref)
    assert m[0].reset_after and m[1].reset_after
    x = torch.randn(4, 2, 3)
    assert_close(m[0](x)[0], ref[0](x)[0], torch.float32)
    assert_close(m[1](x[0]), ref[1](x[0]), torch.float32)


def test_compiles_without_graph_breaks():
    torch.manual_seed(5)
    m = fusedrnn.GRU(3, 6, reset_after=False)
    x = torch.randn(5, 2, 3, requires_grad=True)
    compiled = torch.compile(m, fullgraph=True)
    y = compiled(x)[0]
    assert_close(y, m(x)[0], torch.float32)
    y.sum().backward()
    x2 = x.detach().clone().requires_grad_()
    m(x2)[0].sum().backward()
    assert_close(x.grad, x2.grad, torch.float32)


def test_onnx_export_refuses_clearly():
    import io
    for m, x in ((fusedrnn.GRU(3, 4, reset_after=False), torch.randn(5, 2, 3)),
                 (fusedrnn.GRUCell(3, 4, reset_after=False), torch.randn(2, 3))):
        with pytest.raises(NotImplementedError, match="reset_after=False"):
            torch.onnx.export(m, (x,), io.BytesIO(), dynamo=False)
