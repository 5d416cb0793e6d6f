"""PackedSequence computed natively: fusedrnn against torch.nn on packed batches of random
lengths, sorted and unsorted, every layer/direction combination; the packed op against the
reference run on each sequence alone. Every backend: cpu, simt (the CUDA kernels on CPU threads),
cuda (skipped without a GPU)."""
import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fusedrnn
from fusedrnn import functional as F
from fusedrnn import reference

from conftest import device_of, layer_inputs

CLASSES = [("LSTM", {}), ("GRU", {}), ("RNN", {"nonlinearity": "relu"})]


def packed_batch(lengths, I, enforce_sorted, batch_first=False, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    T, B = max(lengths), len(lengths)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64).to(device)
    if batch_first:
        x = x.transpose(0, 1)
    return pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first,
                                enforce_sorted=enforce_sorted)


@pytest.mark.parametrize("layers,bidir,batch_first", list(itertools.product([1, 2], [False, True],
                                                                            [False, True])))
@pytest.mark.parametrize("sorted_", [True, False])
@pytest.mark.parametrize("name,extra", CLASSES, ids=["lstm", "gru", "rnn"])
def test_packed_matches_torch_nn(backend, name, extra, sorted_, layers, bidir, batch_first):
    device = device_of(backend)
    torch.manual_seed(0)
    kw = dict(input_size=3, hidden_size=5, num_layers=layers, bidirectional=bidir,
              batch_first=batch_first, **extra)
    ref = getattr(torch.nn, name)(**kw).double().to(device)
    ours = getattr(fusedrnn, name)(**kw).double().to(device)
    ours.load_state_dict(ref.state_dict())
    lengths = [7, 5, 5, 2, 1] if sorted_ else [2, 7, 1, 5, 4]
    packed = packed_batch(lengths, 3, enforce_sorted=sorted_, batch_first=batch_first,
                          device=device)
    D = 2 if bidir else 1
    h = torch.randn(layers * D, len(lengths), 5, dtype=torch.float64).to(device)
    for hx in (None, (h, h.flip(1)) if name == "LSTM" else h):
        results = []
        for m in (ours, ref):
            data = packed.data.clone().requires_grad_()
            inp = torch.nn.utils.rnn.PackedSequence(data, packed.batch_sizes,
                                                    packed.sorted_indices,
                                                    packed.unsorted_indices)
            hx_in = None
            if hx is not None:
                hx_in = tuple(t.clone().requires_grad_() for t in hx) if name == "LSTM" else \
                    hx.clone().requires_grad_()
            out, hn = m(inp, hx_in)
            assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
            assert torch.equal(out.batch_sizes, packed.batch_sizes)
            flat = [out.data] + (list(hn) if name == "LSTM" else [hn])
            loss = sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype,
                                           device=t.device).view(t.shape)).sum()
                       for t in flat)
            leaves = [data] + list(m.parameters())
            if hx_in is not None:
                leaves += list(hx_in) if name == "LSTM" else [hx_in]
            results.append((flat, torch.autograd.grad(loss, leaves)))
        (fo, go), (fr, gr) = results
        for a, b in zip(fo + list(go), fr + list(gr)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_packed_op_stops_each_sequence_at_its_length(backend, kind, reverse):
    """Each sequence of the packed batch equals the reference run on that sequence alone."""
    lengths = [6, 4, 4, 1]
    d = layer_inputs(kind, 6, 4, 3, 5, device=device_of(backend))
    packed = pack_padded_sequence(d["x"], torch.tensor(lengths))
    w = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    kw = dict(reverse=reverse, batch_sizes=packed.batch_sizes)
    if kind == "lstm":
        y, h, c = F.lstm_layer(packed.data, d["h0"], d["c0"], *w, **kw)
    elif kind == "gru":
        y, h = F.gru_layer(packed.data, d["h0"], *w, **kw)
    else:
        y, h = F.rnn_layer(packed.data, d["h0"], *w, **kw)
    padded, _ = pad_packed_sequence(torch.nn.utils.rnn.PackedSequence(y, packed.batch_sizes))
    for b, L in enumerate(lengths):
        xb = d["x"][:L, b:b + 1]
        if kind == "lstm":
            yr, hr, cr = reference.lstm_layer(xb, d["h0"][b:b + 1], d["c0"][b:b + 1], *w,
                                              reverse=reverse)
            torch.testing.assert_close(c[b:b + 1], cr)
        elif kind == "gru":
            yr, hr = reference.gru_layer(xb, d["h0"][b:b + 1], *w, reverse=reverse)
        else:
            yr, hr = reference.rnn_layer(xb, d["h0"][b:b + 1], *w, reverse=reverse)
        torch.testing.assert_close(padded[:L, b:b + 1], yr)
        torch.testing.assert_close(h[b:b + 1], hr)


def test_packed_bad_batch_sizes():
    d = layer_inputs("gru", 3, 2, 3, 4)
    x = d["x"].reshape(6, 3)
    w = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    ops = torch.ops.fusedrnn
    for bs, match in [(torch.tensor([2, 2, 1]), "sum to"), (torch.tensor([1, 2, 2, 1]), "non-inc"),
                      (torch.tensor([2, 2, 2], dtype=torch.int32), "int64"),
                      (torch.tensor([3, 2, 1]), "h0 must be")]:
        for backend in ("cpu", "simt"):  # validated before the backend is chosen
            with pytest.raises(RuntimeError, match=match):
                ops.gru_forward(x, d["h0"], *w, False, backend, bs)
