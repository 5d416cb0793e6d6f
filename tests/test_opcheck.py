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
