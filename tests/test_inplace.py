"""In-place operations on the outputs (issue 23): fusedrnn's modules, cells and functional layers
against torch.nn, case by case. Each output (y, the packed output's data, h_n, c_n) is modified
in place (`+=`, `.relu_()`, `.mul_(2)`) and then differentiated: either both succeed with equal
outputs and gradients (input, initial state, every parameter), or both raise the same exception
type in the same phase. fp64; every backend (cuda skipped without a GPU). torch.nn always runs
on the CPU: on CUDA it would run cuDNN, whose backward saves y (in-place changes of y raise at
backward for all three), and a fused LSTM cell that saves c; fusedrnn follows torch.nn's CPU
semantics on every device.

torch.nn's behaviour, measured on torch 2.14 in fp64 on the CPU: its LSTM, GRU and RNN accept
in-place changes of every output; its RNNCell raises at backward for its output (tanh and relu
save their result), its LSTMCell and GRUCell accept. (In fp32 torch.nn's LSTM runs oneDNN for
dense, one-direction input without projection, which saves y: an in-place change of y then
raises at backward. fusedrnn accepts it there too, see test_lstm_fp32_accepts_inplace_y.)
"""
import threading

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fusedrnn
from fusedrnn import functional as F
from fusedrnn._config import get_backend

from conftest import device_of

T, B, I, H, P = 4, 3, 3, 5, 2
LENGTHS = [2, 4, 3]  # unsorted: exercises sorted_indices / unsorted_indices
OPS = ["none", "add", "relu", "mul"]


def _apply(op, t, seed):
    if op == "add":
        t += torch.randn(t.shape, generator=torch.Generator().manual_seed(seed),
                         dtype=torch.float64).to(t.device, t.dtype)
    elif op == "relu":
        t.relu_()
    elif op == "mul":
        t.mul_(2)


def _loss(tensors):
    """A loss that weighs every element differently, so every gradient is checked."""
    total = 0
    for k, t in enumerate(tensors):
        if t is None:
            continue
        g = torch.Generator().manual_seed(100 + k)
        w = torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.device, t.dtype)
        total = total + (t * w).sum()
    return total


def _outcome(run):
    """run() -> (outputs, leaves): the outputs after the in-place op, the leaves whose grads to
    compare. Returns ("ok", values, grads) or ("raised", phase, exception type)."""
    phase = "forward"
    try:
        outputs, leaves, modify = run()
        phase = "inplace"
        modify()
        phase = "backward"
        _loss(outputs).backward()
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return ("raised", phase, type(e))
    return ("ok", [o.detach().clone() for o in outputs if o is not None],
            [None if t.grad is None else t.grad.clone() for t in leaves])


def _assert_same(ours, ref):
    assert ours[0] == ref[0], f"fusedrnn: {ours[:3]}, torch.nn: {ref[:3]}"
    if ours[0] == "raised":
        assert ours[1:] == ref[1:], f"fusedrnn: {ours}, torch.nn: {ref}"
        return
    for a, b in zip(ours[1], ref[1]):
        torch.testing.assert_close(a.cpu(), b.cpu(), atol=1e-10, rtol=1e-9)
    assert len(ours[2]) == len(ref[2])
    for k, (a, b) in enumerate(zip(ours[2], ref[2])):
        assert (a is None) == (b is None), f"gradient {k}: {a} vs {b}"
        if a is not None:
            torch.testing.assert_close(a.cpu(), b.cpu(), atol=1e-10, rtol=1e-9,
                                       msg=f"gradient {k}")


# --------------------------------------------------------------------------------------------
# Modules


MODULE_CONFIGS = {
    "plain": {},
    "batch_first": dict(batch_first=True),
    "bidirectional": dict(bidirectional=True),
    "two_layers": dict(num_layers=2),
    "proj": dict(proj_size=P),
    "packed": dict(packed=True),
    "unbatched": dict(unbatched=True),
    "packed_2l_bidir_bf": dict(packed=True, num_layers=2, bidirectional=True, batch_first=True),
    "dropout": dict(num_layers=2, dropout=0.5),
}
MODULE_CASES = [(kind, cfg, target)
                for kind in ("lstm", "gru", "rnn")
                for cfg in MODULE_CONFIGS
                if not (cfg == "proj" and kind != "lstm")
                for target in (("y", "h", "c") if kind == "lstm" else ("y", "h"))]


def _module_run(mod, cfg, target, op, device):
    kw = MODULE_CONFIGS[cfg]
    lstm = isinstance(mod, (torch.nn.LSTM, fusedrnn.LSTM))
    D = 2 if kw.get("bidirectional") else 1
    L = kw.get("num_layers", 1)
    g = torch.Generator().manual_seed(1)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device)  # noqa: E731
    x = rnd(T, B, I)
    h0 = rnd(L * D, B, P if cfg == "proj" else H)
    c0 = rnd(L * D, B, H)
    if kw.get("unbatched"):
        x, h0, c0 = x[:, 0], h0[:, 0], c0[:, 0]
    if kw.get("batch_first"):
        x = x.transpose(0, 1)
    x, h0, c0 = (t.detach().clone().requires_grad_() for t in (x, h0, c0))

    def run():
        inp = x
        if kw.get("packed"):
            inp = pack_padded_sequence(x, torch.tensor(LENGTHS),
                                       batch_first=bool(kw.get("batch_first")),
                                       enforce_sorted=False)
        torch.manual_seed(7)  # the dropout masks
        out, hn = mod(inp, (h0, c0) if lstm else h0)
        h_n, c_n = hn if lstm else (hn, None)
        y = out.data if isinstance(out, PackedSequence) else out
        t = {"y": y, "h": h_n, "c": c_n}[target]
        return [y, h_n, c_n], [x, h0] + ([c0] if lstm else []) + list(mod.parameters()), \
            lambda: _apply(op, t, 3)

    return _outcome(run)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind,cfg,target", MODULE_CASES,
                         ids=[f"{k}-{c}-{t}" for k, c, t in MODULE_CASES])
def test_module_inplace_matches_torch_nn(backend, kind, cfg, target, op):
    device = device_of(backend)
    if cfg == "dropout" and device != "cpu":
        pytest.skip("the dropout masks come from the CPU generator for torch.nn (on the CPU)")
    kw = {k: v for k, v in MODULE_CONFIGS[cfg].items() if k not in ("packed", "unbatched")}
    name = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[kind]
    torch.manual_seed(0)
    ref = getattr(torch.nn, name)(I, H, **kw).double()
    ours = getattr(fusedrnn, name)(I, H, **kw).double().to(device)
    ours.load_state_dict(ref.state_dict())
    _assert_same(_module_run(ours, cfg, target, op, device),
                 _module_run(ref, cfg, target, op, "cpu"))


# --------------------------------------------------------------------------------------------
# Cells


CELL_CASES = [("LSTMCell", {}, "h"), ("LSTMCell", {}, "c"), ("GRUCell", {}, "h"),
              ("RNNCell", {}, "h"), ("RNNCell", {"nonlinearity": "relu"}, "h")]


def _cell_run(cell, batched, target, op, device):
    lstm = isinstance(cell, torch.nn.LSTMCell)
    g = torch.Generator().manual_seed(1)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device)  # noqa: E731
    x, h0, c0 = rnd(B, I), rnd(B, H), rnd(B, H)
    if not batched:
        x, h0, c0 = x[0], h0[0], c0[0]
    x, h0, c0 = (t.detach().clone().requires_grad_() for t in (x, h0, c0))

    def run():
        out = cell(x, (h0, c0) if lstm else h0)
        h, c = out if lstm else (out, None)
        t = {"h": h, "c": c}[target]
        return [h, c], [x, h0] + ([c0] if lstm else []) + list(cell.parameters()), \
            lambda: _apply(op, t, 3)

    return _outcome(run)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("name,kw,target", CELL_CASES,
                         ids=[f"{n}-{kw.get('nonlinearity', '')}-{t}" for n, kw, t in CELL_CASES])
def test_cell_inplace_matches_torch_nn(backend, name, kw, target, batched, op):
    device = device_of(backend)
    torch.manual_seed(0)
    ref = getattr(torch.nn, name)(I, H, **kw).double()
    ours = getattr(fusedrnn, name)(I, H, **kw).double().to(device)
    ours.load_state_dict(ref.state_dict())
    _assert_same(_cell_run(ours, batched, target, op, device),
                 _cell_run(ref, batched, target, op, "cpu"))


# --------------------------------------------------------------------------------------------
# Functional layers: against a one-layer torch.nn module with the same weights (reverse=True:
# the reverse direction of a bidirectional one; its forward direction does not reach the loss).


FUNC_CASES = [(kind, reverse, packed, proj, target)
              for kind in ("lstm", "gru", "rnn")
              for reverse in (False, True)
              for packed in (False, True)
              for proj in ((False, True) if kind == "lstm" else (False,))
              for target in (("y", "h", "c") if kind == "lstm" else ("y", "h"))]


def _func_inputs(kind, proj, packed, device):
    G = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
    g = torch.Generator().manual_seed(2)
    rnd = lambda *s: (torch.randn(*s, generator=g, dtype=torch.float64) * 0.5).to(device)  # noqa
    Hp = P if proj else H
    d = dict(x=rnd(T, B, I), h0=rnd(B, Hp), c0=rnd(B, H), w_ih=rnd(G * H, I),
             w_hh=rnd(G * H, Hp), b_ih=rnd(G * H), b_hh=rnd(G * H), w_hr=rnd(P, H))
    if kind != "lstm":
        del d["c0"]
    if not proj:
        del d["w_hr"]
    return d


def _func_run(kind, reverse, packed, proj, target, op, device, use_torch_nn):
    d = {k: v.clone().requires_grad_()
         for k, v in _func_inputs(kind, proj, packed, device).items()}
    lengths = sorted(LENGTHS, reverse=True)
    batch_sizes = None
    if packed:
        batch_sizes = pack_padded_sequence(d["x"], torch.tensor(lengths)).batch_sizes

    def run():
        x = d["x"]
        if packed:
            x = pack_padded_sequence(x, torch.tensor(lengths)).data
        if not use_torch_nn:
            if kind == "lstm":
                y, h_n, c_n = F.lstm_layer(x, d["h0"], d["c0"], d["w_ih"], d["w_hh"], d["b_ih"],
                                           d["b_hh"], reverse, batch_sizes, d.get("w_hr"))
            else:
                c_n = None
                fn = F.gru_layer if kind == "gru" else F.rnn_layer
                y, h_n = fn(x, d["h0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"],
                            reverse=reverse, batch_sizes=batch_sizes)
        else:
            name = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[kind]
            extra = dict(proj_size=P) if proj else {}
            m = getattr(torch.nn, name)(I, H, bidirectional=reverse, **extra).double().to(device)
            sfx = "_reverse" if reverse else ""
            names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] + (["weight_hr"] if proj
                                                                        else [])
            keys = ["w_ih", "w_hh", "b_ih", "b_hh", "w_hr"]
            for n, k in zip(names, keys):  # the layer's weights are d's leaves themselves
                delattr(m, f"{n}_l0{sfx}")
                setattr(m, f"{n}_l0{sfx}", d[k])
            m._init_flat_weights()
            D = 2 if reverse else 1
            hx = d["h0"].unsqueeze(0).repeat(D, 1, 1)
            if kind == "lstm":
                hx = (hx, d["c0"].unsqueeze(0).repeat(D, 1, 1))
            inp = PackedSequence(x, batch_sizes) if packed else x
            out, hn = m(inp, hx)
            out = out.data if packed else out
            Hy = P if proj else H
            y = out[..., Hy:] if reverse else out
            h_n, c_n = (hn[0][-1], hn[1][-1]) if kind == "lstm" else (hn[-1], None)
        t = {"y": y, "h": h_n, "c": c_n}[target]
        return [y, h_n, c_n], list(d.values()), lambda: _apply(op, t, 3)

    return _outcome(run)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind,reverse,packed,proj,target", FUNC_CASES,
                         ids=[f"{k}-{'rev' if r else 'fwd'}-{'packed' if p else 'dense'}"
                              f"{'-proj' if j else ''}-{t}" for k, r, p, j, t in FUNC_CASES])
def test_functional_inplace_matches_torch_nn(backend, kind, reverse, packed, proj, target, op):
    device = device_of(backend)
    _assert_same(_func_run(kind, reverse, packed, proj, target, op, device, False),
                 _func_run(kind, reverse, packed, proj, target, op, "cpu", True))


# --------------------------------------------------------------------------------------------
# How it is done: no view, no copy; the create_graph backward after an in-place change.


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_outputs_are_not_views_and_y_is_not_copied(backend, kind, packed):
    d = {k: v.requires_grad_() for k, v in
         _func_inputs(kind, False, packed, device_of(backend)).items()}
    x, batch_sizes = d.pop("x"), None
    if packed:
        packed_seq = pack_padded_sequence(x, torch.tensor(sorted(LENGTHS, reverse=True)))
        x, batch_sizes = packed_seq.data, packed_seq.batch_sizes
    layer = {"lstm": F.lstm_layer, "gru": F.gru_layer, "rnn": F.rnn_layer}[kind]
    outs = layer(x, *d.values(), batch_sizes=batch_sizes)
    assert not any(o._is_view() for o in outs)
    y = outs[0]
    assert y.shape == x.shape[:-1] + (H,)
    kept = y.grad_fn.y  # the Function's ctx: the alias its backward uses when y is unchanged
    assert kept.data_ptr() == y.data_ptr() and kept.grad_fn is None
    # The flat [N,H] buffer is all y holds: nothing was copied out of it.
    assert y.untyped_storage().nbytes() == y.numel() * y.element_size()


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_create_graph_after_inplace_matches_torch_nn(backend, kind):
    device = device_of(backend)
    name = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[kind]
    torch.manual_seed(0)
    ref = getattr(torch.nn, name)(I, H).double()
    ours = getattr(fusedrnn, name)(I, H).double().to(device)
    ours.load_state_dict(ref.state_dict())
    x0 = torch.randn(T, B, I, dtype=torch.float64)
    grads = []
    for m, dev in ((ours, device), (ref, "cpu")):
        x = x0.to(dev).requires_grad_()
        y, _ = m(x)
        y.mul_(2)
        (gx,) = torch.autograd.grad(_loss([y]), x, create_graph=True)
        (gx * gx).sum().backward()  # second order through the in-place-modified output
        grads.append([gx.detach()] + [p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a.cpu(), b, atol=1e-10, rtol=1e-9)


def test_lstm_fp32_accepts_inplace_y(backend):
    """torch.nn's fp32 LSTM on the CPU (oneDNN, which saves y) raises at backward after an
    in-place change of y; its fp64 LSTM does not. fusedrnn's LSTM accepts it in every dtype
    (its backward recomputes y) with the gradients of torch.nn's fp64 LSTM."""
    device = device_of(backend)
    torch.manual_seed(0)
    ref = torch.nn.LSTM(I, H).double()
    ours = fusedrnn.LSTM(I, H).to(device)
    ours.load_state_dict(ref.state_dict())
    x0 = torch.randn(T, B, I, dtype=torch.float64)
    grads = []
    for m, dtype, dev in ((ours, torch.float32, device), (ref, torch.float64, "cpu")):
        x = x0.to(dev, dtype).requires_grad_()
        y, _ = m(x)
        y.relu_()
        _loss([y]).double().backward()
        grads.append([x.grad] + [p.grad for p in m.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a.double().cpu(), b, atol=2e-5, rtol=2e-4)


# --------------------------------------------------------------------------------------------
# The backend setting is a context variable: new threads do not inherit it (README, API).


def test_new_thread_does_not_inherit_backend():
    seen = {}
    with fusedrnn.backend("simt"), fusedrnn.algorithm("stepwise"):
        assert get_backend() == "simt"
        t = threading.Thread(target=lambda: seen.update(
            backend=get_backend(), algorithm=fusedrnn._config.get_algorithm()))
        t.start()
        t.join()
    assert seen == {"backend": "auto", "algorithm": "auto"}


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_inference_mode(backend, name):
    """Inference tensors have no version counter: the Functions must not ask for one."""
    torch.manual_seed(0)
    m = getattr(fusedrnn, name)(I, H, num_layers=2).double().to(device_of(backend))
    x = torch.randn(T, B, I, dtype=torch.float64, device=device_of(backend))
    with torch.no_grad():
        expected, _ = m(x)
    with torch.inference_mode():
        y, _ = m(x)
        y += 1  # in place, as torch.nn allows under inference_mode
    torch.testing.assert_close(y, expected + 1, atol=1e-12, rtol=0)


def test_compiled_inplace_on_output_raises_at_backward():
    """Under torch.compile the Functions save y as before (a traced backward cannot branch on
    the version), so an in-place change of a compiled module's output outside the graph raises
    at backward: loudly, never silently wrong. torch.nn's modules cannot be compiled at all."""
    torch.manual_seed(0)
    m = fusedrnn.GRU(I, H).double()
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y, _ = compiled(x)
    y.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.square().sum().backward()
