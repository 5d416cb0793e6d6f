"""Options and parametrisation of the pytest-benchmark suite (the cases come from
fusedrnn.bench.build_cases, the same list `python -m fusedrnn.bench` runs).

    pytest benchmarks/ --benchmark-only                         # modest sizes: minutes on a CPU
    pytest benchmarks/ --benchmark-only --fusedrnn-suite quick
    pytest benchmarks/ --benchmark-only --fusedrnn-suite full --fusedrnn-device cuda
    pytest benchmarks/ --benchmark-only --fusedrnn-cell lstm --fusedrnn-mode training
"""
import pytest
import torch

from fusedrnn import bench

# fusedrnn.bench's default suite scaled down (T=32, B=16, I=H=256 base) so that the whole
# pytest run takes a few minutes on a 2-core CPU.
MODEST_SIZES = (
    bench.Size(T=32, B=16, H=256),
    bench.Size(T=32, B=1, H=256),
    bench.Size(T=32, B=16, H=512),
    bench.Size(T=32, B=16, H=256, layers=4),
    bench.Size(T=32, B=16, H=256, bidirectional=True),
)
SUITES = {"quick": bench.QUICK_SIZES, "modest": MODEST_SIZES, "full": bench.DEFAULT_SIZES}


def pytest_addoption(parser):
    g = parser.getgroup("fusedrnn", "fusedrnn benchmark suite")
    g.addoption("--fusedrnn-suite", choices=tuple(SUITES), default="modest",
                help="quick: fusedrnn.bench --quick's sizes; modest (default): T=32 B=16 H=256 "
                     "variants; full: fusedrnn.bench's default suite")
    g.addoption("--fusedrnn-device", default=None,
                help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
    g.addoption("--fusedrnn-dtype", default="fp32", help="comma list of fp32,fp64,fp16,bf16")
    g.addoption("--fusedrnn-cell", default="lstm,gru,rnn", help="comma list of lstm,gru,rnn")
    g.addoption("--fusedrnn-mode", default="inference,training",
                help="comma list of inference,training")
    g.addoption("--fusedrnn-rounds", type=int, default=None,
                help="timed rounds per benchmark (default 5 on CPU, 50 on CUDA)")


def _list(config, name):
    return [v.strip() for v in config.getoption(name).split(",") if v.strip()]


def bench_device(config):
    return torch.device(config.getoption("--fusedrnn-device")
                        or ("cuda" if torch.cuda.is_available() else "cpu"))


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    cfg = metafunc.config
    device = bench_device(cfg)
    algorithms = [None]
    if device.type == "cuda" and hasattr(bench.fusedrnn, "algorithm"):
        algorithms = list(bench.ALGORITHMS)
    cases = bench.build_cases(cells=_list(cfg, "--fusedrnn-cell"),
                              sizes=SUITES[cfg.getoption("--fusedrnn-suite")],
                              dtypes=_list(cfg, "--fusedrnn-dtype"),
                              modes=_list(cfg, "--fusedrnn-mode"), algorithms=algorithms)
    metafunc.parametrize("case", cases, ids=[c.name.replace(" ", "-") for c in cases],
                         scope="module")


@pytest.fixture(scope="session")
def device(request):
    return bench_device(request.config)


@pytest.fixture(scope="session")
def rounds(request, device):
    n = request.config.getoption("--fusedrnn-rounds")
    return n if n else (50 if device.type == "cuda" else 5)


@pytest.fixture(scope="module")
def models_checked(case, device):
    """The torch.nn and fusedrnn modules of the case (same weights) and the result of
    fusedrnn.bench.check_case, built once per case for both implementations."""
    models = bench.make_models(case, device)
    return models, bench.check_case(case, models)
