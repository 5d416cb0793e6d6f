"""fusedrnn.bench: the case list, the correctness check, the JSON output and a tiny run.

Nothing here asserts a time: the machine is shared and noisy; only structure and the check.
"""
import contextlib
import io
import json
import sys

import pytest
import torch

import fusedrnn
from fusedrnn import bench

# Tiny sizes and few runs so that a whole main() takes about a second.
TINY = ["--repeat", "1", "--warmup", "0", "--gemm-size", "64", "--progress", "off",
        "--device", "cpu"]


def cases_for(argv, device="cpu"):
    a = bench.build_parser().parse_args(argv)
    bench._defaults(a, torch.device(device))
    return bench.cases_from_args(a, torch.device(device))


# ---------------------------------------------------------------------------------- case list

def test_default_suite():
    cases = cases_for([])
    names = [c.name for c in cases]
    assert len(names) == len(set(names)) == 7 * 3 * 2   # sizes x cells x modes
    sizes = {c.size for c in cases}
    assert sizes == set(bench.DEFAULT_SIZES)
    assert bench.Size(T=100, B=64, H=512) in sizes            # the classic case
    assert {s.B for s in sizes} == {1, 8, 64}
    assert {s.H for s in sizes} == {512, 1024, 2048}
    assert {s.layers for s in sizes} == {1, 4}
    assert {s.bidirectional for s in sizes} == {False, True}
    assert {c.cell for c in cases} == {"lstm", "gru", "rnn"}
    assert {c.mode for c in cases} == {"inference", "training"}
    assert {c.dtype for c in cases} == {"fp32"}
    assert {c.algorithm for c in cases} == {None}
    assert "lstm T100 B64 H512 L1 fp32 infer" in names


def test_options_select_the_cases():
    cases = cases_for(["--cell", "gru,rnn", "--mode", "training", "--dtype", "fp64,bf16",
                       "--T", "7", "--B", "3"])
    assert {c.cell for c in cases} == {"gru", "rnn"}
    assert {c.mode for c in cases} == {"training"}
    assert {c.dtype for c in cases} == {"fp64", "bf16"}
    assert {(c.size.T, c.size.B) for c in cases} == {(7, 3)}
    # B=1 and B=8 collapse onto B=3: duplicates are dropped
    assert len({c.size for c in cases}) == len(bench.DEFAULT_SIZES) - 2
    assert len(cases) == len({c.name for c in cases})


def test_size_overrides_multiply_and_I_follows_H():
    cases = cases_for(["--sizes", "10x2x4x4,5x3x6x8x2xbi", "--H", "16,32", "--cell", "lstm",
                       "--mode", "inference"])
    got = [(c.size.T, c.size.B, c.size.input_size, c.size.H, c.size.layers,
            c.size.bidirectional) for c in cases]
    assert got == [(10, 2, 16, 16, 1, False), (10, 2, 32, 32, 1, False),
                   (5, 3, 6, 16, 2, True), (5, 3, 6, 32, 2, True)]
    assert cases_for(["--sizes", "10x2x4x4", "--I", "9", "--cell", "rnn"])[0].size.input_size == 9


def test_quick_suite_is_small():
    cases = cases_for(["--quick"])
    assert {c.size for c in cases} == set(bench.QUICK_SIZES)
    assert all(c.size.T * c.size.B * c.size.H <= 20 * 8 * 128 for c in cases)
    a = bench.build_parser().parse_args(["--quick"])
    bench._defaults(a, torch.device("cpu"))
    assert a.repeat <= 5 and a.warmup <= 1


@pytest.mark.parametrize("argv", [["--cell", "lstm,foo"], ["--mode", "train"], ["--dtype", "fp8"],
                                  ["--sizes", "1x2x3"], ["--sizes", "1x2x3x0"], ["--H", "0"]])
def test_bad_options_are_rejected(argv, capsys):
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(argv)
    assert "error" in capsys.readouterr().err


def test_algorithm_axis_only_on_cuda_and_only_if_it_exists(monkeypatch):
    if not hasattr(fusedrnn, "algorithm"):
        assert {c.algorithm for c in cases_for([], device="cuda")} == {None}

        @contextlib.contextmanager
        def algorithm(name):
            yield name
        monkeypatch.setattr(fusedrnn, "algorithm", algorithm, raising=False)
    cuda = cases_for(["--cell", "lstm", "--mode", "inference"], device="cuda")
    assert {c.algorithm for c in cuda} == {"stepwise", "persistent", "auto"}
    assert len(cuda) == 3 * len(bench.DEFAULT_SIZES)
    one = cases_for(["--cell", "lstm", "--algorithm", "persistent"], device="cuda")
    assert {c.algorithm for c in one} == {"persistent"}
    assert {c.algorithm for c in cases_for([], device="cpu")} == {None}


def test_flops():
    base = bench.Case("lstm", bench.Size(T=100, B=64, H=512), mode="inference")
    assert base.flops == 2 * 100 * 64 * 4 * 512 * (512 + 512)
    assert bench.Case("lstm", base.size, mode="training").flops == 3 * base.flops
    assert bench.Case("gru", base.size).flops == base.flops // 4 * 3
    assert bench.Case("rnn", base.size).flops == base.flops // 4
    # 2 layers, bidirectional, I != H: layer 1 reads 2H features, both directions count
    c = bench.Case("rnn", bench.Size(T=3, B=2, I=5, H=7, layers=2, bidirectional=True))
    assert c.flops == 2 * (2 * 3 * 2 * 7 * (5 + 7)) + 2 * (2 * 3 * 2 * 7 * (14 + 7))


# ---------------------------------------------------------------------------------- the check

SMALL = bench.Size(T=5, B=3, I=4, H=6, layers=2, bidirectional=True)


@pytest.mark.parametrize("mode", bench.MODES)
@pytest.mark.parametrize("cell", bench.CELLS)
def test_check_passes_when_both_agree(cell, mode):
    case = bench.Case(cell, SMALL, dtype="fp64", mode=mode)
    models = bench.make_models(case, "cpu")
    chk = bench.check_case(case, models)
    assert chk.ok, chk
    assert chk.err < 1e-9
    want = {"output", "h_n"} | ({"c_n"} if cell == "lstm" else set())
    if mode == "training":
        want |= {"grad input"} | {"grad " + n for n, _ in models.ours.named_parameters()}
    assert set(chk.compared) == want


def _wrong_module(monkeypatch, name, change):
    """Replaces fusedrnn.<name> (the class the benchmark builds) by a subclass whose output
    goes through change(y); states are left alone."""
    cls = getattr(fusedrnn, name)

    class Wrong(cls):
        def forward(self, *args, **kwargs):
            y, state = super().forward(*args, **kwargs)
            return change(y), state
    monkeypatch.setattr(fusedrnn, name, Wrong)


@pytest.mark.parametrize("mode", bench.MODES)
def test_check_catches_a_wrong_output(monkeypatch, mode):
    _wrong_module(monkeypatch, "GRU", lambda y: y + 1e-3)
    case = bench.Case("gru", SMALL, dtype="fp32", mode=mode)
    chk = bench.check_case(case, bench.make_models(case, "cpu"))
    assert not chk.ok
    assert chk.err > chk.tol
    r = bench.run_case(case, "cpu", repeat=1, warmup=0)
    assert r["status"] == "MISMATCH"
    assert "MISMATCH" in bench.format_table([r])


def test_check_catches_a_wrong_gradient(monkeypatch):
    # forward values unchanged, gradient doubled: only the training check can see it
    _wrong_module(monkeypatch, "LSTM", lambda y: y.detach() + 2 * (y - y.detach()))
    case = bench.Case("lstm", SMALL, dtype="fp32", mode="inference")
    assert bench.check_case(case, bench.make_models(case, "cpu")).ok
    case = bench.Case("lstm", SMALL, dtype="fp32", mode="training")
    chk = bench.check_case(case, bench.make_models(case, "cpu"))
    assert not chk.ok
    assert chk.worst.startswith("grad ")


def test_main_reports_a_mismatch(monkeypatch, capsys):
    _wrong_module(monkeypatch, "RNN", lambda y: -y)
    rc = bench.main(TINY + ["--sizes", "4x2x3x5", "--cell", "rnn,gru"])
    out = capsys.readouterr().out
    assert rc == 1
    lines = {l.split("  ")[0]: l for l in out.splitlines() if l.startswith(("rnn ", "gru "))}
    assert "MISMATCH" in lines["rnn T4 B2 I3 H5 L1 fp32 infer"]
    assert "MISMATCH" not in lines["gru T4 B2 I3 H5 L1 fp32 infer"]
    assert "case(s) failed the check" in out


def test_a_case_that_cannot_run_is_reported_not_raised(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("kernel exploded")
    monkeypatch.setattr(fusedrnn.LSTM, "forward", boom)
    r = bench.run_case(bench.Case("lstm", SMALL), "cpu", repeat=1, warmup=0)
    assert r["status"] == "ERROR" and "kernel exploded" in r["error"]
    assert "kernel exploded" in bench.format_table([r])


# ---------------------------------------------------------------------------------- timing, runs

def test_time_case_alternates_and_counts_runs():
    case = bench.Case("rnn", bench.Size(T=3, B=2, H=4), mode="training")
    models = bench.make_models(case, "cpu")
    calls = []
    for which, m in (("torch", models.ref), ("fusedrnn", models.ours)):
        m.register_forward_pre_hook(lambda mod, args, w=which: calls.append(w))
    t = bench.time_case(case, models, "cpu", repeat=4, warmup=1)
    assert len(t.torch) == len(t.fusedrnn) == 4
    assert calls == ["torch", "fusedrnn"] + ["torch", "fusedrnn", "fusedrnn", "torch"] * 2
    assert all(p.grad is None for p in models.ours.parameters())   # left clean


def test_json_has_the_expected_keys(tmp_path):
    path = tmp_path / "out.json"
    rc = bench.main(TINY + ["--sizes", "4x2x3x5", "--cell", "lstm", "--json", str(path)])
    assert rc == 0
    doc = json.loads(path.read_text())
    assert set(doc) >= {"machine", "settings", "gemm_gflops", "results"}
    assert set(doc["machine"]) >= {"cpu", "cores", "torch", "build_info", "date", "fusedrnn",
                                   "device"}
    assert doc["machine"]["build_info"] == fusedrnn.build_info()
    assert doc["gemm_gflops"]["fp32"] > 0
    assert [r["name"] for r in doc["results"]] == ["lstm T4 B2 I3 H5 L1 fp32 infer",
                                                   "lstm T4 B2 I3 H5 L1 fp32 train"]
    for r in doc["results"]:
        assert r["status"] == "ok" and r["check"]["ok"]
        assert set(r) >= {"torch_s", "fusedrnn_s", "ratio", "torch_gflops", "fusedrnn_gflops",
                          "torch_frac_gemm", "fusedrnn_frac_gemm", "flops", "torch_times",
                          "fusedrnn_times", "T", "B", "H", "input_size", "layers",
                          "bidirectional", "dtype", "mode", "algorithm", "cell"}
        assert len(r["torch_times"]) == len(r["fusedrnn_times"]) == 1


def test_tiny_quick_run(capsys):
    rc = bench.main(TINY + ["--quick", "--T", "3", "--B", "2", "--H", "8"])
    out = capsys.readouterr().out
    assert rc == 0
    names = [c.name for c in cases_for(["--quick", "--T", "3", "--B", "2", "--H", "8"])]
    assert len(names) == 12
    for name in names:
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        assert " ok " in line and line.rstrip().endswith("%")
    assert "GEMM rate" in out and "torch/fused" in out


def test_list_prints_the_cases(capsys):
    assert bench.main(["--list", "--cell", "rnn", "--mode", "inference"]) == 0
    assert capsys.readouterr().out.split("\n")[0] == "rnn T100 B64 H512 L1 fp32 infer"


def test_plot_without_matplotlib_says_so(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    with pytest.raises(SystemExit):
        bench.main(TINY + ["--sizes", "2x1x2x2", "--plot", str(tmp_path / "p.png")])
    assert "pip install matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


def test_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    results = [{"name": "lstm a", "ratio": 1.5, "device": "cpu"},
               {"name": "gru b", "ratio": 0.5, "device": "cpu"},
               {"name": "rnn c", "status": "ERROR", "error": "x"}]
    bench.write_plot(results, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_bar():
    s = io.StringIO()
    bar = bench.ProgressBar(4, "bench", enabled=True, stream=s)
    for _ in range(4):
        bar.update(1, "x")
    assert "4/4" in s.getvalue() and "#" * 24 in s.getvalue()
    quiet = io.StringIO()
    bench.ProgressBar(4, enabled=False, stream=quiet).update(1)
    assert quiet.getvalue() == ""


def test_serve_cases_and_table(tmp_path, capsys):
    """--serve: loops of single steps for the modules and the cells, checked and timed side by
    side; the JSON holds both medians per case."""
    out = tmp_path / "serve.json"
    rc = bench.main(["--serve", "--cell", "lstm,gru", "--B", "1,3", "--H", "9", "--repeat", "1",
                     "--steps", "3", "--threads", "1", "--progress", "off", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    doc = json.loads(out.read_text())
    names = [r["name"] for r in doc["results"]]
    assert names == [f"{k} T1 B{b} H9 fp32 serve" for k in ("lstm", "gru", "lstmcell", "grucell")
                     for b in (1, 3)]
    for r in doc["results"]:
        assert r["status"] == "ok" and r["check"]["ok"]
        assert r["torch_us"] > 0 and r["fusedrnn_us"] > 0
        assert r["ratio"] == pytest.approx(r["torch_us"] / r["fusedrnn_us"])
        assert r["name"] in text


def test_serve_check_catches_a_wrong_step(monkeypatch):
    """A cell whose state is off by 1e-3 fails the serving check."""
    cls = fusedrnn.GRUCell

    class Wrong(cls):
        def forward(self, *args, **kwargs):
            return super().forward(*args, **kwargs) + 1e-3
    monkeypatch.setattr(fusedrnn, "GRUCell", Wrong)
    from fusedrnn import bench_serve
    r = bench_serve.run_serve_case(bench_serve.ServeCase("grucell", 2, 7), "cpu", steps=2,
                                   rounds=1)
    assert r["status"] == "MISMATCH" and not r["check"]["ok"]
    assert "MISMATCH" in bench_serve.format_serve_table([r])
    ok = bench_serve.run_serve_case(bench_serve.ServeCase("gru", 2, 7), "cpu", steps=2, rounds=1)
    assert ok["status"] == "ok"


def test_variant_cases_and_table(tmp_path, capsys, monkeypatch):
    """--variants: the fused variant cell against its reference loop and torch.nn's closest
    cell, checked and timed side by side; a fused cell that is off fails the check."""
    from fusedrnn import bench_variants as bv
    monkeypatch.setattr(bv, "VARIANT_SIZES", ((3, 2, 7),))
    out = tmp_path / "variants.json"
    rc = bench.main(["--variants", "--repeat", "1", "--threads", "1", "--progress", "off",
                     "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert [r["name"] for r in doc["results"]] == [
        f"{v} T3 B2 H7 fp32 {m}" for v in bv.VARIANTS for m in ("inference", "training")]
    assert bv.VARIANTS == ("gru_reset_before", "mut1", "mut2", "mut3", "ln_lstm", "ln_gru")
    for r in doc["results"]:
        assert r["status"] == "ok" and r["check"]["ok"] and r["name"] in text
        assert r["vs_reference"] == pytest.approx(r["reference_ms"] / r["fused_ms"])
    # The check can fail: the reset-after cell is not the reset-before one.
    orig = bv._callables

    def wrong(case, device, seed):
        fns = orig(case, device, seed)
        fns["fusedrnn"] = fns["torch.nn"]  # the reset-after cell in the fused one's place
        return fns
    monkeypatch.setattr(bv, "_callables", wrong)
    for v in ("gru_reset_before", "mut3", "ln_lstm", "ln_gru"):
        bad = bv.run_variant_case(bv.VariantCase(v, 3, 2, 7, "training"), "cpu", rounds=1)
        assert bad["status"] == "MISMATCH" and "MISMATCH" in bv.format_variant_table([bad])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_memory_of_an_inference_case(capsys):
    """--memory: the peak memory one inference call adds, each side in a fresh process; shown
    in the table. y alone is T*B*H*4 = 1.6 MB here, so neither side can add nothing."""
    case = bench.Case("lstm", bench.Size(T=200, B=16, H=128), mode="inference")
    r = bench.run_case(case, "cpu", repeat=1, warmup=0, memory=True)
    assert r["status"] == "ok"
    for k in ("torch_peak_bytes", "fusedrnn_peak_bytes"):
        assert r[k] >= 200 * 16 * 128 * 4 * 0.9, (k, r[k])
    table = bench.format_table([r])
    assert "peak MB torch/fused" in table
    assert f"{r['torch_peak_bytes'] / 2**20:.1f}/" in table
    train = bench.run_case(bench.Case("lstm", bench.Size(T=3, B=2, H=5), mode="training"),
                           "cpu", repeat=1, warmup=0, memory=True)
    assert "torch_peak_bytes" not in train  # training cases are not measured
