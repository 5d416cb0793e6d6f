"""Corners where fusedrnn must behave as torch.nn does, checked against torch.nn itself:
empty and degenerate sizes (batch 0, hidden_size 0 cells, input_size 0 cells, sequence length
0), the cells' exception types and messages, proj_size on GRU/RNN, and weight-drop wrappers
(AWD-LSTM / fastai WeightDropout) that replace a weight Parameter by a plain tensor."""
import pytest
import torch
import torch.nn.functional as TF
from torch.nn.utils.rnn import PackedSequence

import fusedrnn

MODULES = ["LSTM", "GRU", "RNN"]
CELLS = ["LSTMCell", "GRUCell", "RNNCell"]


def _pair(name, *args, **kw):
    torch.manual_seed(0)
    ref = getattr(torch.nn, name)(*args, **kw).double()
    ours = getattr(fusedrnn, name)(*args, **kw).double()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _flat(out):
    """The tensors of a result: output (PackedSequence data), h_n, c_n, in order."""
    if isinstance(out, PackedSequence):
        return [out.data]
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _flat(o)]


def _outcome(f):
    """(exception type, message) of f(), or ("ok", shapes of its tensors)."""
    try:
        return "ok", [tuple(t.shape) for t in _flat(f())]
    except Exception as e:  # noqa: BLE001 - comparing whatever torch.nn raises
        return type(e), str(e)


# ---------------------------------------------------------------- empty and degenerate sizes
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("name", MODULES)
def test_module_batch_size_zero(name, batch_first):
    ref, ours = _pair(name, 3, 4, num_layers=2, bidirectional=True, batch_first=batch_first)
    x = torch.randn((0, 5, 3) if batch_first else (5, 0, 3), dtype=torch.float64)
    h = torch.randn(4, 0, 4, dtype=torch.float64)
    for hx in (None, (h, h) if name == "LSTM" else h):
        r, o = ref(x, hx), ours(x, hx)
        assert [t.shape for t in _flat(o)] == [t.shape for t in _flat(r)]
    xg = x.clone().requires_grad_()
    sum(t.sum() for t in _flat(ours(xg))).backward()  # an empty backward runs too
    assert xg.grad.shape == x.shape
    for p in ours.parameters():
        assert p.grad is None or not p.grad.any()


@pytest.mark.parametrize("name", MODULES)
def test_module_sequence_length_zero(name):
    for batch_first in (False, True):
        ref, ours = _pair(name, 3, 4, batch_first=batch_first)
        for shape in [(2, 0, 3) if batch_first else (0, 2, 3), (0, 3)]:  # batched, unbatched
            x = torch.randn(shape, dtype=torch.float64)
            want = _outcome(lambda: ref(x))
            assert want[0] is RuntimeError, want  # torch.nn's behaviour, as measured
            assert _outcome(lambda: ours(x)) == want


@pytest.mark.parametrize("name", MODULES)
def test_module_zero_sizes_rejected_as_torch_nn(name):
    for args in [(0, 4), (3, 0)]:
        want = _outcome(lambda: getattr(torch.nn, name)(*args))
        assert _outcome(lambda: getattr(fusedrnn, name)(*args)) == want


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("sizes", [(3, 4, 0), (3, 0, 2), (0, 4, 2), (0, 0, 0)],
                         ids=["batch0", "hidden0", "input0", "all0"])
def test_cell_degenerate_sizes(name, sizes):
    I, H, B = sizes
    ref, ours = _pair(name, I, H)
    g = torch.Generator().manual_seed(1)
    for batched in (True, False):
        if not batched and B == 0:
            continue
        lead = (B,) if batched else ()
        x = torch.randn(*lead, I, generator=g, dtype=torch.float64)
        h = torch.randn(*lead, H, generator=g, dtype=torch.float64)
        for hx in (None, (h, h + 1) if name == "LSTMCell" else h):
            results = []
            for m in (ref, ours):
                params = list(m.parameters())
                out = _flat(m(x, hx))
                loss = sum((t * t).sum() for t in out) + sum(p.sum() * 0 for p in params)
                results.append((out, torch.autograd.grad(loss, params)))
            for a, b in zip(results[1][0] + list(results[1][1]),
                            results[0][0] + list(results[0][1])):
                assert a.shape == b.shape
                torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- cells: errors as torch.nn's
def _bad_cell_calls(lstm):
    r = lambda *s: torch.randn(*s)  # noqa: E731
    hx = (lambda h: (h, h)) if lstm else (lambda h: h)
    calls = {
        "3D input": lambda m: m(r(2, 2, 3)),
        "0D input": lambda m: m(torch.tensor(1.0)),
        "4D hidden": lambda m: m(r(2, 3), hx(r(1, 1, 2, 4))),
        "3D hidden": lambda m: m(r(2, 3), hx(r(1, 2, 4))),
        "1D hidden, batched input": lambda m: m(r(2, 3), hx(r(4))),
        "2D hidden, unbatched input": lambda m: m(r(3), hx(r(1, 4))),
        "hidden_size": lambda m: m(r(2, 3), hx(r(2, 5))),
        "hidden batch": lambda m: m(r(2, 3), hx(r(3, 4))),
        "input_size": lambda m: m(r(2, 5)),
        "input_size unbatched": lambda m: m(r(5)),
        "unbatched hidden_size": lambda m: m(r(3), hx(r(5))),
    }
    if lstm:
        calls["cell state size"] = lambda m: m(r(2, 3), (r(2, 4), r(2, 5)))
        calls["cell state batch"] = lambda m: m(r(2, 3), (r(2, 4), r(3, 4)))
        calls["4D cell state"] = lambda m: m(r(2, 3), (r(2, 4), r(1, 1, 2, 4)))
    return calls


@pytest.mark.parametrize("name", CELLS)
def test_cell_errors_as_torch_nn(name):
    torch.manual_seed(0)
    ref, ours = getattr(torch.nn, name)(3, 4), getattr(fusedrnn, name)(3, 4)
    for what, call in _bad_cell_calls(name == "LSTMCell").items():
        want = _outcome(lambda: call(ref))
        got = _outcome(lambda: call(ours))
        assert want[0] != "ok", what
        assert got[0] is want[0], (what, got, want)
        # Same message; fusedrnn may add the shapes after it.
        assert got[1].startswith(want[1]), (what, got, want)


@pytest.mark.parametrize("name", CELLS)
def test_cell_dtype_mismatch_same_type(name):
    ref, ours = getattr(torch.nn, name)(3, 4), getattr(fusedrnn, name)(3, 4)
    x = torch.randn(2, 3, dtype=torch.float64)
    assert _outcome(lambda: ours(x))[0] is _outcome(lambda: ref(x))[0]


@pytest.mark.parametrize("name", ["GRU", "RNN"])
def test_proj_size_only_for_lstm(name):
    for kw in ({"proj_size": 2}, {"proj_size": 0}, {"no_such_argument": 1}):
        want = _outcome(lambda: getattr(torch.nn, name)(3, 4, **kw))
        got = _outcome(lambda: getattr(fusedrnn, name)(3, 4, **kw))
        assert got[0] is want[0] and want[0] != "ok"
        if want[0] is ValueError:
            assert got[1] == want[1] == ("proj_size argument is only supported for LSTM, not "
                                         "RNN or GRU")


# ---------------------------------------------------------------- weight drop
class WeightDrop(torch.nn.Module):
    """AWD-LSTM / fastai WeightDropout style: the named weights stop being Parameters of the
    wrapped module; `<name>_raw` Parameters hold them, and every forward sets the module's
    attribute to a dropped-out plain tensor of the raw weight (a fixed mask here when given, so
    two modules can be compared)."""

    def __init__(self, module, names, p=0.0, masks=None):
        super().__init__()
        self.module, self.names, self.p, self.masks = module, names, p, masks or {}
        for n in names:
            w = getattr(module, n)
            del module._parameters[n]
            module.register_parameter(n + "_raw", torch.nn.Parameter(w.detach().clone()))
            setattr(module, n, w.detach().clone())  # a plain tensor until the first forward

    def forward(self, *args):
        for n in self.names:
            raw = getattr(self.module, n + "_raw")
            w = raw * self.masks[n] if n in self.masks else TF.dropout(raw, self.p, self.training)
            setattr(self.module, n, w)
        return self.module(*args)


@pytest.mark.parametrize("masked", [False, True], ids=["p0", "fixed_mask"])
@pytest.mark.parametrize("name", MODULES + ["LSTMCell", "GRUCell"] + [m + "-1" for m in MODULES])
def test_weight_drop_matches_torch_nn(name, masked):
    # "-1": one unidirectional layer (the modules' lean path, _one_layer_forward)
    name, one = name.removesuffix("-1"), name.endswith("-1")
    cell = name.endswith("Cell")
    kw = {} if cell or one else dict(num_layers=2, bidirectional=True)
    ref, ours = _pair(name, 3, 4, **kw)
    names = ["weight_hh"] if cell else ["weight_hh_l0"] if one else ["weight_hh_l0",
                                                                      "weight_hh_l1_reverse"]
    g = torch.Generator().manual_seed(5)
    masks = None
    if masked:
        masks = {n: torch.bernoulli(torch.full_like(getattr(ref, n), 0.7), generator=g) / 0.7
                 for n in names}
    wrapped = [WeightDrop(m, names, 0.0, masks) for m in (ref, ours)]
    x = torch.randn(*((5,) if cell else (4, 5)), 3, generator=g, dtype=torch.float64)
    results = []
    for w in wrapped:
        grads = None
        for _ in range(2):  # the second forward replaces the tensors the first one set
            out = _flat(w(x))
            loss = sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view_as(t)).sum()
                       for t in out)
            params = dict(w.named_parameters())
            grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        results.append((out, grads))
    (ro, rg), (oo, og) = results
    for a, b in zip(oo, ro):
        torch.testing.assert_close(a, b)
    assert og.keys() == rg.keys() and any(k.endswith("_raw") for k in og)
    for k in og:
        torch.testing.assert_close(og[k], rg[k], msg=k)
