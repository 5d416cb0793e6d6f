"""torch.compile(fullgraph=True) with zero graph breaks, forward and backward; autocast casts as
torch.nn does (CPU bf16 here)."""
import pytest
import torch
import torch._dynamo

import fusedrnn

from conftest import device_of


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_compile_fullgraph_no_graph_breaks(backend, name):
    device = device_of(backend)
    torch.manual_seed(0)
    kw = dict(input_size=4, hidden_size=6, num_layers=2, bidirectional=True, batch_first=True)
    ours = getattr(fusedrnn, name)(**kw).to(device)
    ref = getattr(torch.nn, name)(**kw).to(device)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, 4, device=device)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(ours)(x)
    assert explain.graph_break_count == 0, explain.break_reasons
    assert explain.graph_count == 1
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    xc = x.clone().requires_grad_()
    xr = x.clone().requires_grad_()
    out, _ = compiled(xc)
    exp, _ = ref(xr)
    torch.testing.assert_close(out, exp, atol=1e-5, rtol=1e-4)
    out.square().sum().backward()
    exp.square().sum().backward()
    torch.testing.assert_close(xc.grad, xr.grad, atol=1e-5, rtol=1e-4)
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_autocast_cpu_bf16_matches_torch_nn(name):
    torch.manual_seed(0)
    ours = getattr(fusedrnn, name)(8, 16, num_layers=2)
    ref = getattr(torch.nn, name)(8, 16, num_layers=2)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(5, 3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, h = ours(x)
        exp, hr = ref(x)
    assert out.dtype == exp.dtype
    h, hr = (h[0], hr[0]) if name == "LSTM" else (h, hr)
    assert h.dtype == hr.dtype
    # torch.nn's GRU returns fp32 under CPU autocast but runs its matmuls in bf16; fusedrnn's
    # runs in fp32 throughout, so both are compared at bf16 accuracy.
    torch.testing.assert_close(out.float(), exp.float(), atol=3e-2, rtol=3e-2)
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in ours.parameters())
