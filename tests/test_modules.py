"""fusedrnn.LSTM/GRU/RNN against torch.nn with the same state_dict: outputs, states, gradients."""
import itertools

import pytest
import torch

import fusedrnn

from conftest import device_of

CLASSES = [("LSTM", {}), ("GRU", {}), ("RNN", {"nonlinearity": "tanh"}),
           ("RNN", {"nonlinearity": "relu"})]


def pair(name, kw, device, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    ref = getattr(torch.nn, name)(**kw).to(device=device, dtype=dtype)
    ours = getattr(fusedrnn, name)(**kw).to(device=device, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def outputs_and_grads(m, x, hx):
    x = x.clone().requires_grad_()
    hx_in = None
    if hx is not None:
        hx_in = tuple(h.clone().requires_grad_() for h in hx) if isinstance(hx, tuple) else \
            hx.clone().requires_grad_()
    out, h = m(x, hx_in)
    flat = [out] + (list(h) if isinstance(h, tuple) else [h])
    g = torch.Generator().manual_seed(5)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype).to(t.device)).sum()
               for t in flat)
    leaves = [x] + list(m.parameters())
    if hx_in is not None:
        leaves += list(hx_in) if isinstance(hx_in, tuple) else [hx_in]
    return flat, torch.autograd.grad(loss, leaves)


GRID = list(itertools.product([1, 2], [False, True], [False, True], [True, False]))


@pytest.mark.parametrize("layers,bidir,batch_first,bias", GRID)
@pytest.mark.parametrize("name,extra", CLASSES, ids=["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_matches_torch_nn(backend, name, extra, layers, bidir, batch_first, bias):
    device = device_of(backend)
    I, H, T, B = 5, 7, 4, 3
    kw = dict(input_size=I, hidden_size=H, num_layers=layers, bidirectional=bidir,
              batch_first=batch_first, bias=bias, **extra)
    ref, ours = pair(name, kw, device)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=torch.float64, device=device)
    D = 2 if bidir else 1
    for hx in (None, "given"):
        if hx:
            h = torch.randn(layers * D, B, H, dtype=torch.float64, device=device)
            hx = (h, torch.randn_like(h)) if name == "LSTM" else h
        out_r, g_r = outputs_and_grads(ref, x, hx)
        out_o, g_o = outputs_and_grads(ours, x, hx)
        for a, b in zip(out_o, out_r):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b)
        for a, b in zip(g_o, g_r):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name,extra", CLASSES[:3], ids=["lstm", "gru", "rnn"])
def test_unbatched_input(backend, name, extra):
    device = device_of(backend)
    ref, ours = pair(name, dict(input_size=4, hidden_size=5, num_layers=2, **extra), device)
    x = torch.randn(6, 4, dtype=torch.float64, device=device)
    h = torch.randn(2, 5, dtype=torch.float64, device=device)
    hx = (h, h * 0.5) if name == "LSTM" else h
    for args in ((x,), (x, hx)):
        out_r, h_r = ref(*args)
        out_o, h_o = ours(*args)
        torch.testing.assert_close(out_o, out_r)
        torch.testing.assert_close(h_o, h_r)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_state_dict_round_trip(name):
    torch.manual_seed(3)
    kw = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    ref = getattr(torch.nn, name)(**kw)
    ours = getattr(fusedrnn, name)(**kw)
    assert list(ours.state_dict().keys()) == list(ref.state_dict().keys())
    assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
    ours.load_state_dict(ref.state_dict())
    back = getattr(torch.nn, name)(**kw)
    back.load_state_dict(ours.state_dict())
    for a, b in zip(back.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    assert repr(ours) == repr(ref)
    assert isinstance(ours, torch.nn.RNNBase)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_initialisation_matches_torch_nn(name):
    """Same constructor, same RNG draws: identical initial parameters for the same seed."""
    torch.manual_seed(11)
    ref = getattr(torch.nn, name)(6, 9, num_layers=2)
    torch.manual_seed(11)
    ours = getattr(fusedrnn, name)(6, 9, num_layers=2)
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    m = fusedrnn.LSTM(4, 6, num_layers=3, dropout=0.5).double()
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    m.eval()
    a, _ = m(x)
    b, _ = m(x)
    torch.testing.assert_close(a, b)
    m.train()
    c, _ = m(x)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("layers,bidir,batch_first,packed",
                         list(itertools.product([1, 2], [False, True], [False, True],
                                                [False, True])))
def test_lstm_projection_matches_torch_nn(backend, layers, bidir, batch_first, packed):
    device = device_of(backend)
    kw = dict(input_size=5, hidden_size=7, proj_size=3, num_layers=layers, bidirectional=bidir,
              batch_first=batch_first)
    ref, ours = pair("LSTM", kw, device)
    assert repr(ours) == repr(ref)
    T, B, D = 6, 4, 2 if bidir else 1
    x = torch.randn((B, T, 5) if batch_first else (T, B, 5), dtype=torch.float64, device=device)
    hx = (torch.randn(layers * D, B, 3, dtype=torch.float64, device=device),
          torch.randn(layers * D, B, 7, dtype=torch.float64, device=device))
    if packed:
        x = torch.nn.utils.rnn.pack_padded_sequence(x, [6, 2, 5, 1], batch_first=batch_first,
                                                    enforce_sorted=False)
        data = x.data.clone().requires_grad_()
        inputs = [torch.nn.utils.rnn.PackedSequence(data, *x[1:]), data]
    else:
        data = x.clone().requires_grad_()
        inputs = [data, data]
    res = []
    for m in (ours, ref):
        data.grad = None
        out, (h, c) = m(inputs[0], hx)
        out = out.data if packed else out
        assert out.shape[-1] == 3 * D and h.shape[-1] == 3 and c.shape[-1] == 7
        loss = (out * out.flip(0)).sum() + (h * 2).sum() + c.sum()
        res.append([out, h, c] + list(torch.autograd.grad(loss, [data] + list(m.parameters()))))
    for a, b in zip(*res):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name,kw", [("LSTM", {"proj_size": 2}), ("LSTM", {}), ("GRU", {}),
                                     ("RNN", {"nonlinearity": "relu"})])
def test_attributes_common_code_reads(name, kw):
    """flatten_parameters (a no-op), _flat_weights, _flat_weights_names, all_weights and repr as
    torch.nn has them, also after .to(dtype)."""
    args = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, **kw)
    ours, ref = getattr(fusedrnn, name)(**args), getattr(torch.nn, name)(**args)
    ours.flatten_parameters()
    assert repr(ours) == repr(ref)
    assert ours._flat_weights_names == ref._flat_weights_names
    assert [w.shape for w in ours._flat_weights] == [w.shape for w in ref._flat_weights]
    assert [[w.shape for w in layer] for layer in ours.all_weights] == \
        [[w.shape for w in layer] for layer in ref.all_weights]
    ours.double()
    assert all(w.dtype == torch.float64 for w in ours._flat_weights)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out, _ = ours(x)
    assert out.dtype == torch.float64


@pytest.mark.parametrize("name,extra", CLASSES + [("GRU", {"reset_after": False})],
                         ids=["lstm", "gru", "rnn_tanh", "rnn_relu", "gru_reset_before"])
def test_one_layer_path_is_the_general_path(backend, monkeypatch, name, extra):
    """A single unidirectional layer takes a lean path (_one_layer_forward); it must give what
    the general path gives, bit for bit, outputs and gradients, and step aside for everything
    it does not handle."""
    device = device_of(backend)
    I, H, T, B = 6, 9, 5, 3
    base = fusedrnn.modules._FusedRNNBase
    lean = base._one_layer_forward
    taken = []

    def spy(self, input, hx):
        out = lean(self, input, hx)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(base, "_one_layer_forward", spy)
    for batch_first, given, dtype in itertools.product([False, True], [False, True],
                                                       [torch.float32, torch.float64]):
        torch.manual_seed(1)
        ours = getattr(fusedrnn, name)(I, H, batch_first=batch_first, **extra).to(
            device=device, dtype=dtype)
        x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=dtype, device=device)
        hx = None
        if given:
            h = torch.randn(1, B, H, dtype=dtype, device=device)
            hx = (h, torch.randn_like(h)) if name == "LSTM" else h
        taken.clear()
        fast = outputs_and_grads(ours, x, hx)
        assert taken == [True]
        monkeypatch.setattr(base, "_one_layer_forward", lambda *a: None)
        general = outputs_and_grads(ours, x, hx)
        monkeypatch.setattr(base, "_one_layer_forward", spy)
        for a, b in zip(fast[0] + list(fast[1]), general[0] + list(general[1])):
            assert a.shape == b.shape and a.dtype == b.dtype
            assert torch.equal(a, b)
        with torch.inference_mode():  # the serving call: no autograd at all
            out_f = ours(x, hx)
            monkeypatch.setattr(base, "_one_layer_forward", lambda *a: None)
            out_g = ours(x, hx)
            monkeypatch.setattr(base, "_one_layer_forward", spy)
        for a, b in zip(torch.utils._pytree.tree_leaves(out_f), torch.utils._pytree.tree_leaves(out_g)):
            assert torch.equal(a, b)

    # What it leaves to the general path: two layers, both directions, unbatched input, a
    # wrong-sized state (which the general path then rejects with torch.nn's message).
    m = getattr(fusedrnn, name)(I, H, **extra).to(device)
    x = torch.randn(T, B, I, device=device)
    taken.clear()
    for other in (getattr(fusedrnn, name)(I, H, num_layers=2, **extra).to(device),
                  getattr(fusedrnn, name)(I, H, bidirectional=True, **extra).to(device)):
        other(x)
    m(x[:, 0])
    assert taken == [False, False, False]
    h = torch.randn(1, B + 1, H, device=device)
    with pytest.raises(RuntimeError, match=r"Expected hidden(\[0\])? size \(1, 3, 9\)"):
        m(x, (h, h) if name == "LSTM" else h)
    assert taken[-1] is False
