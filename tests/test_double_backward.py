"""Double backward (torch.autograd.grad(..., create_graph=True)): gradient penalties, Hessian-
vector products, MAML. The fused layers' backward recomputes through fusedrnn.reference when it
must be differentiable; these tests check every order against finite differences
(gradgradcheck) and against torch.nn, and that the ordinary backward still runs the fused op.
Also fusedrnn.reference's packed-sequence semantics (batch_sizes), which that recompute uses."""
import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fusedrnn
from fusedrnn import functional as F
from fusedrnn import reference

from conftest import backend_available, device_of, layer_inputs

# (kind, H): tiny odd sizes keep gradgradcheck's finite differences fast.
KINDS = [("lstm", 3), ("lstm_proj", 4), ("gru", 3), ("rnn_tanh", 5), ("rnn_relu", 2)]
LENGTHS = [3, 2]  # packed: batch_sizes [2, 2, 1], so one sequence stops early


def _layer_args(kind, H, packed, device, seed=0, I=3):
    """(names, tensors, batch_sizes) of one layer call: dense x [3,2,I] or packed [5,I]."""
    base = kind.split("_")[0]
    d = layer_inputs(base, 3, 2, I, H, device=device, seed=seed)
    batch_sizes = None
    if packed:
        p = pack_padded_sequence(d["x"], torch.tensor(LENGTHS))
        d["x"], batch_sizes = p.data, p.batch_sizes
    names = ["x", "h0"] + (["c0"] if base == "lstm" else []) + ["w_ih", "w_hh", "b_ih", "b_hh"]
    if kind == "lstm_proj":  # proj_size P = 2: h0 and w_hh have P columns, w_hr is [P,H]
        P = 2
        g = torch.Generator().manual_seed(seed + 1)
        d["h0"] = d["h0"][:, :P].contiguous()
        d["w_hh"] = d["w_hh"][:, :P].contiguous()
        d["w_hr"] = (torch.rand(P, H, generator=g, dtype=torch.float64) - 0.5).to(device)
        names.append("w_hr")
    return names, [d[n] for n in names], batch_sizes


def _call(lib, kind, names, tensors, reverse, batch_sizes):
    """Runs one layer of lib (fusedrnn.functional or fusedrnn.reference) on named tensors."""
    kw = dict(zip(names, tensors))
    w = (kw["w_ih"], kw["w_hh"], kw["b_ih"], kw["b_hh"])
    common = dict(reverse=reverse, batch_sizes=batch_sizes)
    if kind.startswith("lstm"):
        return lib.lstm_layer(kw["x"], kw["h0"], kw["c0"], *w, w_hr=kw.get("w_hr"), **common)
    if kind == "gru":
        return lib.gru_layer(kw["x"], kw["h0"], *w, **common)
    return lib.rnn_layer(kw["x"], kw["h0"], *w, nonlinearity=kind[4:], **common)


# ---------------------------------------------------------------- reference: packed semantics
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind,H", KINDS, ids=[k for k, _ in KINDS])
def test_reference_packed_matches_functional(backend, kind, H, reverse):
    names, args, bs = _layer_args(kind, H, True, device_of(backend), seed=5)
    got = _call(F, kind, names, args, reverse, bs)
    want = _call(reference, kind, names, args, reverse, bs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def _nn_pair(name, kw):
    torch.manual_seed(0)
    ref = getattr(torch.nn, name)(**kw).double()
    ours = getattr(fusedrnn, name)(**kw).double()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize("kind,H", KINDS, ids=[k for k, _ in KINDS])
def test_reference_packed_matches_torch_nn(kind, H):
    """reference.*_layer with batch_sizes, both directions, against torch.nn on a
    PackedSequence (enforce_sorted=False: the sorted order is the one the layers see)."""
    name = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[kind.split("_")[0]]
    kw = dict(input_size=3, hidden_size=H, bidirectional=True)
    kw.update({"proj_size": 2} if kind == "lstm_proj" else {})
    kw.update({"nonlinearity": kind[4:]} if name == "RNN" else {})
    m, _ = _nn_pair(name, kw)
    g = torch.Generator().manual_seed(1)
    lengths = [2, 4, 1, 4]
    x = torch.randn(4, 4, 3, generator=g, dtype=torch.float64)
    p = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
    P = 2 if kind == "lstm_proj" else H
    h0 = torch.randn(2, 4, P, generator=g, dtype=torch.float64)
    c0 = torch.randn(2, 4, H, generator=g, dtype=torch.float64)
    out, hn = m(p, (h0, c0) if name == "LSTM" else h0)
    states = (h0, c0) if name == "LSTM" else (h0,)
    states = [s.index_select(1, p.sorted_indices) for s in states]  # into the packed order
    ys, finals = [], []
    for d, sfx in enumerate(["_l0", "_l0_reverse"]):
        w = [getattr(m, n + sfx) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        if kind == "lstm_proj":
            r = reference.lstm_layer(p.data, states[0][d], states[1][d], *w, reverse=d == 1,
                                     batch_sizes=p.batch_sizes, w_hr=getattr(m, "weight_hr" + sfx))
        else:
            names = ["x", "h0"] + (["c0"] if name == "LSTM" else []) + [
                "w_ih", "w_hh", "b_ih", "b_hh"]
            r = _call(reference, kind, names, [p.data] + [s[d] for s in states] + w, d == 1,
                      p.batch_sizes)
        ys.append(r[0])
        finals.append(r[1:])
    with torch.no_grad():
        torch.testing.assert_close(torch.cat(ys, -1), out.data)
        for k, want in enumerate(hn if name == "LSTM" else (hn,)):
            got = torch.stack([f[k] for f in finals]).index_select(1, p.unsorted_indices)
            torch.testing.assert_close(got, want)


# ---------------------------------------------------------------- functional: every order
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind,H", KINDS, ids=[k for k, _ in KINDS])
def test_gradgradcheck(backend, kind, H, reverse, packed):
    names, args, bs = _layer_args(kind, H, packed, device_of(backend), seed=3)
    args = [a.clone().requires_grad_() for a in args]
    assert torch.autograd.gradgradcheck(lambda *a: _call(F, kind, names, a, reverse, bs), args,
                                        eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("kind,H", KINDS, ids=[k for k, _ in KINDS])
def test_create_graph_grads_equal_fused(backend, kind, H):
    """The recomputed first-order gradients are the fused backward's, and ordinary backward
    (even inside enable_grad) never recomputes: no speed lost where nothing asks for it."""
    names, args, bs = _layer_args(kind, H, True, device_of(backend), seed=4)
    args = [a.clone().requires_grad_() for a in args]
    outs = _call(F, kind, names, args, True, bs)
    vs = [torch.randn_like(o) for o in outs]
    fused = torch.autograd.grad(outs, args, vs, retain_graph=True)
    again = torch.autograd.grad(outs, args, vs, create_graph=True)
    assert all(g.requires_grad for g in again)
    for a, b in zip(again, fused):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


def test_ordinary_backward_runs_fused_op(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("ordinary backward must not recompute through reference")
    for n in ("lstm_layer", "gru_layer", "rnn_layer"):
        monkeypatch.setattr(reference, n, boom)
    for kind, H in KINDS:
        names, args, bs = _layer_args(kind, H, False, "cpu")
        args = [a.clone().requires_grad_() for a in args]
        with torch.enable_grad():
            sum(o.sum() for o in _call(F, kind, names, args, False, bs)).backward()
        assert all(a.grad is not None for a in args)


# ---------------------------------------------------------------- modules: gradient penalty
def _cpu_backends():
    return [pytest.param(b, marks=pytest.mark.skipif(not backend_available(b)[0],
                                                     reason=backend_available(b)[1]))
            for b in ("cpu", "simt")]


MODULES = [("LSTM", {}), ("LSTM", {"proj_size": 2}), ("GRU", {}), ("RNN", {}),
           ("RNN", {"nonlinearity": "relu"}), ("LSTMCell", {}), ("GRUCell", {}),
           ("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"})]
MODULE_IDS = ["lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell",
              "rnn_tanh_cell", "rnn_relu_cell"]


def _penalty_loss(out, x, v, lam=0.7):
    """out.sum() + lam * |d<out, v>/dx|^2 for a module's result out: the gradient-penalty
    pattern (WGAN-GP, input-gradient regularisation). Its parameter gradients need the second
    derivative of the layer."""
    if isinstance(out, tuple):  # modules: (output, h_n); LSTMCell: (h, c)
        out = out[0]
    if isinstance(out, PackedSequence):
        out = out.data
    (dx,) = torch.autograd.grad(out, x, v(out), create_graph=True)
    return out.sum() + lam * dx.square().sum()


def _module_pair(name, extra):
    if name.endswith("Cell"):
        torch.manual_seed(0)
        ref = getattr(torch.nn, name)(3, 4, **extra).double()
        ours = getattr(fusedrnn, name)(3, 4, **extra).double()
        ours.load_state_dict(ref.state_dict())
        return ref, ours
    return _nn_pair(name, dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True,
                               **extra))


@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("backend_name", _cpu_backends())
@pytest.mark.parametrize("name,extra", MODULES, ids=MODULE_IDS)
def test_gradient_penalty_matches_torch_nn(name, extra, backend_name, packed):
    if packed and name.endswith("Cell"):
        pytest.skip("cells take no PackedSequence")
    ref, ours = _module_pair(name, extra)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(*((5,) if name.endswith("Cell") else (4, 5)), 3, generator=g,
                    dtype=torch.float64)
    if packed:
        p = pack_padded_sequence(x, torch.tensor([4, 1, 3, 2, 4]), enforce_sorted=False)
        x = p.data
    v = lambda out: torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)  # noqa
    grads = []
    for m, be in ((ref, "cpu"), (ours, backend_name)):
        xi = x.clone().requires_grad_()
        with fusedrnn.backend(be):
            out = m(PackedSequence(xi, *p[1:]) if packed else xi)
            loss = _penalty_loss(out, xi, v)
            grads.append(torch.autograd.grad(loss, [xi] + list(m.parameters())))
    for k, (a, b) in enumerate(zip(grads[1], grads[0])):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=f"gradient {k}")


@pytest.mark.parametrize("backend_name", _cpu_backends())
@pytest.mark.parametrize("name,extra", MODULES, ids=MODULE_IDS)
def test_gradient_penalty_training_matches_torch_nn(name, extra, backend_name):
    """A few optimizer steps on the penalised loss train fusedrnn and torch.nn identically."""
    ref, ours = _module_pair(name, extra)
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(*((5,) if name.endswith("Cell") else (4, 5)), 3, generator=g,
                      dtype=torch.float64) for _ in range(3)]
    v = lambda out: torch.ones_like(out)  # noqa: E731
    for m, be in ((ref, "cpu"), (ours, backend_name)):
        opt = torch.optim.Adam(m.parameters(), lr=0.05)
        with fusedrnn.backend(be):
            for x in xs:
                x = x.clone().requires_grad_()
                opt.zero_grad()
                _penalty_loss(m(x), x, v).backward()
                opt.step()
    for (k, a), b in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-8, msg=k)


@pytest.mark.parametrize("name,extra", MODULES[:3], ids=MODULE_IDS[:3])
def test_third_order_matches_torch_nn(name, extra):
    """Any order: the gradient of a Hessian-vector product (third derivatives)."""
    ref, ours = _module_pair(name, extra)
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(3, 2, 3, generator=g, dtype=torch.float64)
    grads = []
    for m in (ref, ours):
        x = x0.clone().requires_grad_()
        params = list(m.parameters())
        out = m(x)[0]
        (dx,) = torch.autograd.grad(out, x, torch.cos(out), create_graph=True)
        hvp = torch.autograd.grad(dx, params, torch.sin(dx), create_graph=True)
        loss = sum(h.square().sum() for h in hvp)
        grads.append(torch.autograd.grad(loss, [x] + params))
    for k, (a, b) in enumerate(zip(grads[1], grads[0])):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=f"gradient {k}")
