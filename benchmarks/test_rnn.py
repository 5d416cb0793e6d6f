"""fusedrnn against torch.nn on fusedrnn.bench's cases, one benchmark group per case.

    pytest benchmarks/ --benchmark-only [--fusedrnn-suite quick|modest|full] (see conftest.py)

Each group holds two benchmarks, impl=torch and impl=fusedrnn, so pytest-benchmark's table
compares them. The fusedrnn benchmark fails if its outputs (and, in training mode, gradients)
differ from torch.nn's beyond fusedrnn.bench's per-dtype tolerance.
"""
import pytest
import torch

from fusedrnn import bench


@pytest.mark.parametrize("impl", ["torch", "fusedrnn"])
def test_rnn(benchmark, case, impl, models_checked, device, rounds):
    models, check = models_checked
    if impl == "fusedrnn" and not check.ok:
        pytest.fail(f"{case.name}: fusedrnn differs from torch.nn: {check.worst} error "
                    f"{check.err:.2e} > {check.tol:.0e}")
    step = bench.make_step(case, models, impl)
    if device.type == "cuda":
        def run():
            step()
            torch.cuda.synchronize(device)
    else:
        run = step

    benchmark.group = case.name
    benchmark.name = f"{impl}"
    benchmark.extra_info.update(impl=impl, flops=case.flops, check_err=check.err,
                                device=str(device))
    setup = (lambda: bench._zero_grads(models)) if case.mode == "training" else None
    benchmark.pedantic(run, setup=setup, rounds=rounds, warmup_rounds=1, iterations=1)
    bench._zero_grads(models)
    benchmark.extra_info["gflops"] = case.flops / benchmark.stats.stats.median / 1e9
