"""torch.library.opcheck on every op: schema, fake (meta) kernel, dispatcher registration."""
import pytest
import torch

from conftest import device_of, layer_inputs

ops = torch.ops.fusedrnn


def op_cases(device):
    T, B, I, H = 4, 3, 5, 6
    cases = []
    for reverse in (False, True):
        d = layer_inputs("lstm", T, B, I, H, device=device)
        w = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
        y, hn, cn, gates, cells = ops.lstm_forward(d["x"], d["h0"], d["c0"], *w, reverse)
        cases.append((ops.lstm_forward, (d["x"], d["h0"], d["c0"], *w, reverse)))
        cases.append((ops.lstm_backward, (torch.randn_like(y), torch.randn_like(hn),
                                          torch.randn_like(cn), d["x"], d["h0"], d["c0"],
                                          d["w_ih"], d["w_hh"], y, gates, cells, reverse)))
        d = layer_inputs("gru", T, B, I, H, device=device, bias=not reverse)
        w = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
        y, hn, gates, ghn = ops.gru_forward(d["x"], d["h0"], *w, reverse)
        cases.append((ops.gru_forward, (d["x"], d["h0"], *w, reverse)))
        cases.append((ops.gru_backward, (torch.randn_like(y), torch.randn_like(hn), d["x"],
                                         d["h0"], d["w_ih"], d["w_hh"], y, gates, ghn, reverse)))
        d = layer_inputs("rnn", T, B, I, H, device=device)
        w = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
        for nl in ("tanh", "relu"):
            y, hn = ops.rnn_forward(d["x"], d["h0"], *w, nl, reverse)
            cases.append((ops.rnn_forward, (d["x"], d["h0"], *w, nl, reverse)))
            cases.append((ops.rnn_backward, (torch.randn_like(y), torch.randn_like(hn), d["x"],
                                             d["h0"], d["w_ih"], d["w_hh"], y, nl, reverse)))
    return cases


@pytest.mark.parametrize("i", range(16))
def test_opcheck(backend, i):
    op, args = op_cases(device_of(backend))[i]
    torch.library.opcheck(op, args, {"backend": backend})


def test_opcheck_lstm_projection_and_packed(backend):
    """The LSTM projection w_hr and packed input (batch_sizes)."""
    g = torch.Generator().manual_seed(0)
    dev = device_of(backend)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dev)  # noqa: E731
    H, P, I = 5, 3, 4
    batch_sizes = torch.tensor([3, 3, 2, 1])
    x = r(int(batch_sizes.sum()), I)
    h0, c0, w_ih, w_hh, w_hr = r(3, P), r(3, H), r(4 * H, I), r(4 * H, P), r(P, H)
    b = (r(4 * H), r(4 * H))
    for reverse in (False, True):
        y, hn, cn, gates, cells = ops.lstm_forward(x, h0, c0, w_ih, w_hh, *b, reverse, backend,
                                                   batch_sizes, w_hr)
        assert y.shape == (x.shape[0], P) and cells.shape == (x.shape[0], H)
        torch.library.opcheck(ops.lstm_forward, (x, h0, c0, w_ih, w_hh, *b, reverse, backend,
                                                 batch_sizes, w_hr))
        torch.library.opcheck(ops.lstm_backward, (r(*y.shape), r(*hn.shape), r(*cn.shape), x, h0,
                                                  c0, w_ih, w_hh, y, gates, cells, reverse,
                                                  backend, batch_sizes, w_hr))


def test_gradcheck_lstm_projection_packed():
    from fusedrnn import functional as F
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()  # noqa
    H, P, I = 4, 2, 3
    batch_sizes = torch.tensor([3, 2, 2, 1])
    args = [r(8, I), r(3, P), r(3, H), r(4 * H, I), r(4 * H, P), r(4 * H), r(4 * H), r(P, H)]
    for reverse in (False, True):
        def f(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
            with __import__("fusedrnn").backend("cpu"):
                return F.lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=reverse,
                                    batch_sizes=batch_sizes, w_hr=w_hr)
        assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("packed", [False, True])
def test_opcheck_save_false(backend, packed):
    """save=False (inference): the real and fake kernels agree on the empty saved tensors."""
    dev = device_of(backend)
    T, B, I, H = 4, 3, 5, 6
    bs = torch.tensor([3, 3, 2, 1]) if packed else None
    for kind in ("lstm", "gru"):
        d = layer_inputs(kind, T, B, I, H, device=dev)
        x = torch.cat([d["x"][t, :int(bs[t])] for t in range(T)]) if packed else d["x"]
        w = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
        for reverse in (False, True):
            if kind == "lstm":
                args = (x, d["h0"], d["c0"], *w, reverse, backend, bs, None, "auto", False)
                op = ops.lstm_forward
            else:
                args = (x, d["h0"], *w, reverse, backend, bs, "auto", False)
                op = ops.gru_forward
            torch.library.opcheck(op, args)
            assert all(t.shape == (0,) for t in op(*args)[-2:])
