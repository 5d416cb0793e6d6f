"""Benchmark: fusedrnn against torch.nn, side by side in one process.

    python -m fusedrnn.bench                      # the default suite (long on a CPU)
    python -m fusedrnn.bench --quick              # a small suite, well under a minute on a CPU
    python -m fusedrnn.bench --cell lstm --H 256,1024 --mode inference --json out.json
    python -m fusedrnn.bench --serve              # single steps in a loop (fusedrnn.bench_serve)
    python -m fusedrnn.bench --variants           # cells torch.nn lacks (fusedrnn.bench_variants)

For every case (cell, sizes, dtype, mode[, algorithm]) it builds a torch.nn module and the
fusedrnn module of the same class with the same weights (load_state_dict), first checks that
both give the same outputs (and, in training mode, the same gradients) within a per-dtype
tolerance, then times them alternately after warm-up and reports the median.

Timing: CUDA events on a GPU (and CUDA-graph replay of the inference forward where kernel
launches dominate, see --cuda-graphs), time.perf_counter on a CPU. "inference" is the forward
under torch.no_grad(); "training" is forward + backward of the output (input gradient included).

The check's tolerance on max|fusedrnn - torch.nn| / max(1, max|torch.nn|), per output and
gradient: fp64 1e-9, fp32 1e-4 (2e-2 on CUDA, where fp32 may run as TF32), fp16 2e-2, bf16 8e-2.

FLOPs count the GEMMs only: forward 2*T*B*G*H*(I_l + H) per layer and direction (G = 4 LSTM,
3 GRU, 1 RNN; I_l = I on the first layer, H*directions after), training = 3 x forward.
"% GEMM" is achieved GFLOP/s over the rate of one large square matmul in the same dtype on the
same device, measured at start: the better of torch.matmul and (fp32 on a CPU) fusedrnn's own
GEMM, which the CPU backend uses.

Exit status: 0 if every case matched, 1 if any case mismatched or failed to run.
"""
import argparse
import contextlib
import dataclasses
import datetime
import itertools
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import torch

import fusedrnn

__all__ = ["Size", "Case", "DEFAULT_SIZES", "QUICK_SIZES", "build_cases", "parse_sizes",
           "apply_overrides", "make_models", "check_case", "time_case", "gemm_rate",
           "run_case", "format_table", "machine_info", "main"]

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
CELLS = tuple(GATES)
MODES = ("inference", "training")
DTYPES = {"fp32": torch.float32, "fp64": torch.float64, "fp16": torch.float16,
          "bf16": torch.bfloat16}
ALGORITHMS = ("stepwise", "persistent", "auto")
# Per-dtype tolerance of the check: max|fusedrnn - torch.nn| / max(1, max|torch.nn|), per tensor.
TOLERANCE = {"fp64": 1e-9, "fp32": 1e-4, "fp16": 2e-2, "bf16": 8e-2}
# On CUDA, fp32 RNNs and matmuls may run in TF32 (cuDNN's RNNs do by default): 10 mantissa bits,
# like fp16, so fp32 on CUDA gets fp16's tolerance.
TOLERANCE_CUDA = {**TOLERANCE, "fp32": TOLERANCE["fp16"]}


@dataclass(frozen=True)
class Size:
    """One point of the suite. I=None means I = H."""
    T: int
    B: int
    H: int
    I: int | None = None
    layers: int = 1
    bidirectional: bool = False

    @property
    def input_size(self):
        return self.H if self.I is None else self.I


# The classic T=100, B=64, I=H=512 plus small batch, large hidden, 4 layers, bidirectional.
DEFAULT_SIZES = (
    Size(T=100, B=64, H=512),
    Size(T=100, B=1, H=512),
    Size(T=100, B=8, H=512),
    Size(T=100, B=64, H=1024),
    Size(T=100, B=64, H=2048),
    Size(T=100, B=64, H=512, layers=4),
    Size(T=100, B=64, H=512, bidirectional=True),
)
QUICK_SIZES = (
    Size(T=20, B=8, H=128),
    Size(T=20, B=8, H=128, layers=2, bidirectional=True),
)


@dataclass(frozen=True)
class Case:
    cell: str
    size: Size
    dtype: str = "fp32"
    mode: str = "inference"
    algorithm: str | None = None  # fusedrnn.algorithm(...) name, None: not selected

    @property
    def name(self):
        s = self.size
        parts = [self.cell, f"T{s.T}", f"B{s.B}"]
        if s.I is not None and s.I != s.H:
            parts.append(f"I{s.I}")
        parts += [f"H{s.H}", f"L{s.layers}"]
        if s.bidirectional:
            parts.append("bi")
        parts += [self.dtype, "train" if self.mode == "training" else "infer"]
        if self.algorithm:
            parts.append(self.algorithm)
        return " ".join(parts)

    @property
    def flops(self):
        """GEMM FLOPs of one timed call (forward, or forward + backward = 3 x forward)."""
        s, G = self.size, GATES[self.cell]
        D = 2 if s.bidirectional else 1
        fwd = 0
        for layer in range(s.layers):
            I_l = s.input_size if layer == 0 else s.H * D
            fwd += D * 2 * s.T * s.B * G * s.H * (I_l + s.H)
        return fwd * (3 if self.mode == "training" else 1)


# ---------------------------------------------------------------------------------- case list

def _csv(text, allowed=None, conv=str, what="value"):
    items = [conv(v.strip()) for v in str(text).split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"empty list of {what}s")
    if allowed is not None:
        bad = [v for v in items if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(str, bad))}; choose from {', '.join(allowed)}")
    return items


def _positive_ints(text):
    vals = _csv(text, conv=int, what="integer")
    if any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text}")
    return vals


def parse_sizes(text):
    """'TxBxIxH[xLAYERS][xbi]' points separated by commas, e.g. '100x64x512x512,50x8x256x256x2xbi'.
    A point with I == H keeps I = H when --H overrides H."""
    sizes = []
    for item in _csv(text, what="size"):
        fields = item.lower().split("x")
        bidir = fields[-1] in ("bi", "bidir", "bidirectional")
        if bidir:
            fields = fields[:-1]
        try:
            nums = [int(f) for f in fields]
        except ValueError:
            nums = []
        if len(nums) not in (4, 5) or any(n <= 0 for n in nums):
            raise argparse.ArgumentTypeError(
                f"bad size {item!r}: expected TxBxIxH[xLAYERS][xbi] with positive integers")
        T, B, I, H = nums[:4]
        sizes.append(Size(T=T, B=B, I=None if I == H else I, H=H,
                          layers=nums[4] if len(nums) == 5 else 1, bidirectional=bidir))
    return sizes


def apply_overrides(sizes, T=None, B=None, I=None, H=None, layers=None):
    """Replaces a field in every size point by each of the given values (lists; None keeps it);
    duplicates are dropped, order kept. I follows H unless I is given."""
    out = []
    for s in sizes:
        for t, b, i, h, l in itertools.product(T or [s.T], B or [s.B], I or [s.I], H or [s.H],
                                               layers or [s.layers]):
            new = Size(T=t, B=b, H=h, I=None if i is None or i == h else i, layers=l,
                       bidirectional=s.bidirectional)
            if new not in out:
                out.append(new)
    return out


def build_cases(cells=CELLS, sizes=DEFAULT_SIZES, dtypes=("fp32",), modes=MODES,
                algorithms=(None,)):
    """The cross product, in the order size, cell, dtype, algorithm, mode."""
    for name, seq, allowed in (("cell", cells, CELLS), ("dtype", dtypes, DTYPES),
                               ("mode", modes, MODES)):
        bad = [v for v in seq if v not in allowed]
        if bad:
            raise ValueError(f"unknown {name} {bad}; choose from {list(allowed)}")
    return [Case(cell=c, size=s, dtype=d, mode=m, algorithm=a)
            for s in sizes for c in cells for d in dtypes for a in algorithms for m in modes]


# ---------------------------------------------------------------------------------- one case

_TORCH_CLASSES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
_FUSED_CLASSES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


@dataclass
class Models:
    ref: torch.nn.Module      # torch.nn
    ours: torch.nn.Module     # fusedrnn, same weights
    x: torch.Tensor           # [T, B, I]
    hx: object                # h0, or (h0, c0)
    grad_out: torch.Tensor    # dL/dy of the training step


def make_models(case, device, seed=0):
    """torch.nn and fusedrnn modules of the case with the same weights, and the inputs."""
    s, dtype = case.size, DTYPES[case.dtype]
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    kw = dict(num_layers=s.layers, bidirectional=s.bidirectional)
    ref = _TORCH_CLASSES[case.cell](s.input_size, s.H, **kw).to(device=device, dtype=dtype)
    ours = getattr(fusedrnn, _FUSED_CLASSES[case.cell])(s.input_size, s.H, **kw)
    ours = ours.to(device=device, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    D = 2 if s.bidirectional else 1

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)

    x = rnd(s.T, s.B, s.input_size)
    h0 = rnd(s.layers * D, s.B, s.H, scale=0.5)
    hx = (h0, rnd(s.layers * D, s.B, s.H, scale=0.5)) if case.cell == "lstm" else h0
    grad_out = rnd(s.T, s.B, s.H * D)
    if case.mode == "training":
        x.requires_grad_(True)
        ref.train(), ours.train()
    else:
        ref.eval(), ours.eval()
    return Models(ref, ours, x, hx, grad_out)


def _algorithm_ctx(case):
    if case.algorithm is None:
        return contextlib.nullcontext()
    return fusedrnn.algorithm(case.algorithm)


def _zero_grads(models):
    models.ref.zero_grad(set_to_none=True)
    models.ours.zero_grad(set_to_none=True)
    models.x.grad = None


def make_step(case, models, which):
    """A no-argument callable running one timed call of `which` ("torch" or "fusedrnn")."""
    m = models.ref if which == "torch" else models.ours
    x, hx, gy = models.x, models.hx, models.grad_out
    ctx = _algorithm_ctx if which == "fusedrnn" else (lambda case: contextlib.nullcontext())
    if case.mode == "inference":
        def step():
            with torch.no_grad(), ctx(case):
                return m(x, hx)
    else:
        def step():
            with ctx(case):
                out = m(x, hx)
                out[0].backward(gy)
            return out
    return step


def _flatten_outputs(out):
    y, state = out
    states = state if isinstance(state, tuple) else (state,)
    names = ("h_n", "c_n")
    return [("output", y)] + [(names[i], t) for i, t in enumerate(states)]


def _rel_err(actual, expected):
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if a.shape != e.shape:
        return float("inf")
    if a.numel() == 0:
        return 0.0
    if not torch.isfinite(a).all() or not torch.isfinite(e).all():
        return 0.0 if torch.equal(a.isnan(), e.isnan()) and torch.allclose(
            a.nan_to_num(), e.nan_to_num()) else float("inf")
    return ((a - e).abs().max() / max(1.0, e.abs().max().item())).item()


@dataclass
class Check:
    ok: bool
    err: float          # the largest error over the compared tensors
    worst: str          # the tensor with that error
    tol: float
    compared: tuple = ()  # the names of the compared tensors


def tolerance(case, device):
    """The check's tolerance of a case on a device (see TOLERANCE, TOLERANCE_CUDA)."""
    return (TOLERANCE_CUDA if torch.device(device).type == "cuda" else TOLERANCE)[case.dtype]


def check_case(case, models):
    """Runs both once on the same inputs and compares the outputs (training mode: also the input
    and parameter gradients). Error per tensor: max|fusedrnn - torch.nn| / max(1, max|torch.nn|).
    """
    tol = tolerance(case, models.x.device)
    results = {}
    for which in ("torch", "fusedrnn"):
        _zero_grads(models)
        tensors = dict(_flatten_outputs(make_step(case, models, which)()))
        if case.mode == "training":
            m = models.ref if which == "torch" else models.ours
            tensors["grad input"] = models.x.grad
            for name, p in m.named_parameters():
                tensors["grad " + name] = p.grad
        results[which] = {k: v.detach().clone() if v is not None else None
                          for k, v in tensors.items()}
    _zero_grads(models)
    worst, err = "", 0.0
    ref, ours = results["torch"], results["fusedrnn"]
    for name in ref:
        a, e = ours.get(name), ref[name]
        if a is None or e is None:
            this = 0.0 if a is None and e is None else float("inf")
        else:
            this = _rel_err(a, e)
        if this > err or not worst:
            worst, err = name, this
    return Check(ok=err <= tol, err=err, worst=worst, tol=tol, compared=tuple(ref))


# ---------------------------------------------------------------------------------- timing

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cuda_graph(step, warmup=3):
    """Captures step() into a CUDA graph (after warm-up on a side stream); returns its replay."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    torch.cuda.synchronize()
    return graph.replay


def launch_bound(case):
    """Whether kernel launches likely dominate: little GEMM work per time step (< 2^27 FLOPs)."""
    per_step = case.flops / case.size.T / (3 if case.mode == "training" else 1)
    return per_step / case.size.layers < 2 ** 27


def _timer(device):
    """Returns time_one(fn) -> seconds of one call, with CUDA events or perf_counter."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def time_one(fn):
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
    else:
        def time_one(fn):
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
    return time_one


@dataclass
class Timing:
    torch: list         # seconds of each timed call
    fusedrnn: list
    graphs: bool        # CUDA-graph replay used

    @property
    def torch_median(self):
        return statistics.median(self.torch)

    @property
    def fusedrnn_median(self):
        return statistics.median(self.fusedrnn)


def time_case(case, models, device, repeat=20, warmup=3, max_time=None, cuda_graphs="auto"):
    """Times torch.nn and fusedrnn alternately (the order flips every round) after `warmup`
    rounds; stops after `repeat` rounds or, past 3 rounds, once `max_time` seconds are spent."""
    device = torch.device(device)
    steps = {w: make_step(case, models, w) for w in ("torch", "fusedrnn")}
    graphs = False
    if device.type == "cuda" and case.mode == "inference" and (
            cuda_graphs == "always" or (cuda_graphs == "auto" and launch_bound(case))):
        try:
            steps = {w: _cuda_graph(fn) for w, fn in steps.items()}
            graphs = True
        except Exception:  # capture unsupported by one of them: time both eagerly
            torch.cuda.synchronize()
            steps = {w: make_step(case, models, w) for w in ("torch", "fusedrnn")}
    grads = case.mode == "training"
    order = ("torch", "fusedrnn")
    for i in range(warmup):
        for w in order if i % 2 == 0 else order[::-1]:
            if grads:
                _zero_grads(models)
            steps[w]()
    _sync(device)
    time_one = _timer(device)
    times = {"torch": [], "fusedrnn": []}
    t_start = time.perf_counter()
    for i in range(max(1, repeat)):
        for w in order if i % 2 == 0 else order[::-1]:
            if grads:
                _zero_grads(models)
            _sync(device)
            times[w].append(time_one(steps[w]))
        if max_time is not None and i >= 2 and time.perf_counter() - t_start > max_time:
            break
    _zero_grads(models)
    return Timing(torch=times["torch"], fusedrnn=times["fusedrnn"], graphs=graphs)


def _vm_hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _memory_child(spec):
    """In a fresh process (peak_memory): bytes by which the peak resident set grows during one
    call of spec["which"] on the case's inputs (models and inputs built first)."""
    case = Case(spec["cell"], Size(**spec["size"]), spec["dtype"], spec["mode"],
                spec["algorithm"])
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    step = make_step(case, make_models(case, "cpu", seed=spec["seed"]), spec["which"])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    base = _vm_hwm()
    step()
    print(json.dumps({"peak": _vm_hwm() - base}))


def peak_memory(case, device, seed=0):
    """{"torch": bytes, "fusedrnn": bytes}: the peak memory one call of each side adds, or None
    where it cannot be measured. CUDA: torch.cuda.max_memory_allocated over the call, in this
    process. CPU (Linux): growth of the peak resident set (VmHWM) during the first call in a
    fresh process per side, so no cache of an earlier call hides it; it counts every allocation,
    torch's and fusedrnn's alike."""
    device = torch.device(device)
    out = {}
    if device.type == "cuda":
        models = make_models(case, device, seed=seed)
        for which in ("torch", "fusedrnn"):
            step = make_step(case, models, which)
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            step()
            torch.cuda.synchronize(device)
            out[which] = torch.cuda.max_memory_allocated(device) - base
        return out
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    import subprocess
    for which in ("torch", "fusedrnn"):
        spec = {"cell": case.cell, "size": dataclasses.asdict(case.size), "dtype": case.dtype,
                "mode": case.mode, "algorithm": case.algorithm, "which": which, "seed": seed,
                "threads": torch.get_num_threads()}
        code = f"from fusedrnn.bench import _memory_child; _memory_child({spec!r})"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0:
            return None
        out[which] = json.loads(r.stdout.strip().splitlines()[-1])["peak"]
    return out


def _own_cpu_gemm(a, b):
    """c = a @ b through fusedrnn's own fp32 CPU GEMM (csrc/cpu/gemm.h), or None without it."""
    if a.device.type != "cpu" or a.dtype != torch.float32:
        return None
    try:
        op = torch.ops.fusedrnn_testing.cpu_gemm
    except (AttributeError, RuntimeError):
        return None
    c = torch.empty(a.shape[0], b.shape[1])
    return lambda: op(a, b, c, False, False, 1.0, 0.0, -1)


def gemm_rate(dtype, device, n=None, min_time=0.25, max_runs=20):
    """GFLOP/s of one large square matmul in `dtype` on `device` (median of runs): the better
    of torch.matmul and, for fp32 on the CPU, fusedrnn's own GEMM (which the CPU backend uses
    and which outruns torch's BLAS on some CPUs), so that "% GEMM" is against the best GEMM
    available in the process."""
    device, dtype = torch.device(device), DTYPES.get(dtype, dtype)
    if n is None:
        n = 4096 if device.type == "cuda" else (
            2048 if dtype in (torch.float32, torch.float64) else 1024)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = 0.0
    for fn in (lambda: torch.matmul(a, b), _own_cpu_gemm(a, b)):
        if fn is None:
            continue
        fn()
        _sync(device)
        time_one = _timer(device)
        times, t0 = [], time.perf_counter()
        while len(times) < max_runs and (len(times) < 3 or time.perf_counter() - t0 < min_time):
            times.append(time_one(fn))
        best = max(best, 2 * n ** 3 / statistics.median(times) / 1e9)
    return best


# ---------------------------------------------------------------------------------- results

def run_case(case, device, repeat=20, warmup=3, max_time=None, cuda_graphs="auto",
             gemm_gflops=None, seed=0, memory=False):
    """Check, then time one case. Returns a JSON-able dict; failures are recorded, not raised."""
    r = {"name": case.name, "cell": case.cell, **dataclasses.asdict(case.size),
         "input_size": case.size.input_size, "dtype": case.dtype, "mode": case.mode,
         "algorithm": case.algorithm, "device": str(device), "flops": case.flops,
         "status": "ok", "error": None, "check": None}
    try:
        models = make_models(case, device, seed=seed)
        chk = check_case(case, models)
        r["check"] = dataclasses.asdict(chk)
        if not chk.ok:
            r["status"] = "MISMATCH"
        t = time_case(case, models, device, repeat=repeat, warmup=warmup, max_time=max_time,
                      cuda_graphs=cuda_graphs)
    except Exception as e:  # noqa: BLE001 - a case that cannot run is reported, not fatal
        r["status"], r["error"] = "ERROR", f"{type(e).__name__}: {e}"
        return r
    r.update(torch_s=t.torch_median, fusedrnn_s=t.fusedrnn_median,
             ratio=t.torch_median / t.fusedrnn_median, cuda_graphs=t.graphs,
             torch_times=t.torch, fusedrnn_times=t.fusedrnn,
             torch_gflops=case.flops / t.torch_median / 1e9,
             fusedrnn_gflops=case.flops / t.fusedrnn_median / 1e9)
    if memory and case.mode == "inference":
        mem = peak_memory(case, device, seed=seed)
        if mem:
            r["torch_peak_bytes"], r["fusedrnn_peak_bytes"] = mem["torch"], mem["fusedrnn"]
    if gemm_gflops:
        r["gemm_gflops"] = gemm_gflops
        r["torch_frac_gemm"] = r["torch_gflops"] / gemm_gflops
        r["fusedrnn_frac_gemm"] = r["fusedrnn_gflops"] / gemm_gflops
    return r


def _fmt_ms(s):
    return f"{s * 1e3:.3f}" if s < 0.01 else f"{s * 1e3:.2f}" if s < 1 else f"{s * 1e3:.0f}"


def format_table(results):
    """The results as a text table."""
    head = ["case", "check", "torch.nn ms", "fusedrnn ms", "torch/fused",
            "GFLOP/s torch", "GFLOP/s fused", "%GEMM torch", "%GEMM fused"]
    memory = any("torch_peak_bytes" in r for r in results)
    if memory:
        head.append("peak MB torch/fused")
    rows = []
    for r in results:
        chk = r.get("check")
        check = "-" if chk is None else (f"ok {chk['err']:.0e}" if chk["ok"] else
                                         f"MISMATCH {chk['err']:.1e} ({chk['worst']})")
        if r.get("error"):
            rows.append([r["name"], check, "ERROR: " + r["error"][:80]])
            continue
        pct = (lambda k: f"{100 * r[k]:.1f}%" if k in r else "-")
        rows.append([r["name"] + (" [graph]" if r.get("cuda_graphs") else ""), check,
                     _fmt_ms(r["torch_s"]), _fmt_ms(r["fusedrnn_s"]), f"{r['ratio']:.2f}x",
                     f"{r['torch_gflops']:.1f}", f"{r['fusedrnn_gflops']:.1f}",
                     pct("torch_frac_gemm"), pct("fusedrnn_frac_gemm")])
        if memory:
            rows[-1].append(f"{r['torch_peak_bytes'] / 2**20:.1f}/"
                            f"{r['fusedrnn_peak_bytes'] / 2**20:.1f}"
                            if "torch_peak_bytes" in r else "-")
    return align_table(head, rows)


def align_table(head, rows):
    """head and rows (lists of strings; a row may stop early at an "ERROR: ..." cell) as text
    columns: the first two left-aligned, the rest right-aligned, a rule under the head."""
    widths = [max([len(head[i])] + [len(row[i]) for row in rows
                                    if len(row) > i and not row[i].startswith("ERROR")])
              for i in range(len(head))]
    lines = []
    for row in [head] + rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [c.rjust(widths[i + 2]) if not c.startswith("ERROR") else c
                  for i, c in enumerate(row[2:])]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * max(len(l) for l in lines))
    return "\n".join(lines)


def machine_info(device):
    """CPU model, cores, GPU, torch and fusedrnn versions, fusedrnn.build_info(), date."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    device = torch.device(device)
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "fusedrnn": fusedrnn.__version__, "build_info": fusedrnn.build_info(),
            "device": str(device), "gpu": None,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cudnn"] = torch.backends.cudnn.version()
    return info


class ProgressBar:
    """A tiny progress bar on stderr (shown only when stderr is a terminal, unless forced)."""

    def __init__(self, total, desc="", enabled=None, width=24, stream=None):
        self.total, self.desc, self.width, self.n = max(1, total), desc, width, 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.t0 = time.perf_counter()

    def update(self, n=1, note=""):
        self.n += n
        if not self.enabled:
            return
        frac = min(1.0, self.n / self.total)
        fill = int(frac * self.width)
        el = time.perf_counter() - self.t0
        eta = el / frac - el if frac > 0 else 0
        line = (f"\r{self.desc} [{'#' * fill}{'.' * (self.width - fill)}] {self.n}/{self.total}"
                f" {el:.0f}s<{eta:.0f}s {note}")
        self.stream.write(line[:120].ljust(120))
        self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\r" + " " * 120 + "\r")
            self.stream.flush()


def write_plot(results, path):
    """A horizontal bar chart of torch.nn time / fusedrnn time per case."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in results if r.get("ratio")]
    names, ratios = [r["name"] for r in ok], [r["ratio"] for r in ok]
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(ok) + 1.5))
    colors = ["tab:green" if v >= 1 else "tab:red" for v in ratios]
    ax.barh(range(len(ok)), ratios, color=colors)
    for i, v in enumerate(ratios):
        ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
    ax.set_yticks(range(len(ok)), names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlabel("speed-up: torch.nn time / fusedrnn time (>1: fusedrnn faster)")
    dev = ok[0]["device"] if ok else ""
    ax.set_title(f"fusedrnn vs torch.nn ({dev})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------- CLI

def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m fusedrnn.bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("suite")
    g.add_argument("--quick", action="store_true",
                   help="a small suite (T=20 B=8 H=128: 1 layer, and 2 layers bidirectional; "
                        "repeat 5, warm-up 1 unless given)")
    g.add_argument("--serve", action="store_true",
                   help="the serving cases instead (fusedrnn.bench_serve): loops of single steps "
                        "(T=1) carrying the state, modules and cells, B 1,4,16 x H 256,512,1024 "
                        "(--B/--H replace them; --cell lstm includes LSTMCell, gru GRUCell; "
                        "--quick: B 1,16 x H 512); microseconds per step")
    g.add_argument("--variants", action="store_true",
                   help="the variant cells instead (fusedrnn.bench_variants): GRU with the reset "
                        "gate before the product, MUT1-3 and the layer-normalised LSTM, fused, "
                        "against their plain-PyTorch reference loops and torch.nn's closest "
                        "cell; T=100, (B, H) (64, 512), (8, 256), "
                        "(1, 512) (--quick: T=20 B=8 H=128; --mode selects modes)")
    g.add_argument("--steps", type=int, default=None,
                   help="steps per timed loop of --serve (default 200, 50 with --quick)")
    g.add_argument("--cell", type=lambda s: _csv(s, CELLS, what="cell"), default=list(CELLS),
                   help="cells, comma-separated (default lstm,gru,rnn)")
    g.add_argument("--sizes", type=parse_sizes, default=None,
                   help="size points TxBxIxH[xLAYERS][xbi], comma-separated, replacing the "
                        "suite's (e.g. 100x64x512x512,100x8x256x256x2xbi)")
    for name, what in (("T", "sequence length"), ("B", "batch size"),
                       ("I", "input size (default: = H)"), ("H", "hidden size"),
                       ("layers", "number of layers")):
        g.add_argument(f"--{name}", type=_positive_ints, default=None,
                       help=f"{what}: replaces it in every size point; a comma-separated list "
                            f"multiplies the points")
    g.add_argument("--dtype", type=lambda s: _csv(s, DTYPES, what="dtype"), default=["fp32"],
                   help="dtypes, comma-separated, of fp32,fp64,fp16,bf16 (default fp32)")
    g.add_argument("--mode", type=lambda s: _csv(s, MODES, what="mode"), default=list(MODES),
                   help="inference (no_grad forward), training (forward + backward); "
                        "default both")
    g.add_argument("--algorithm", type=lambda s: _csv(s, ALGORITHMS, what="algorithm"),
                   default=None,
                   help="fusedrnn.algorithm(...) names to compare on CUDA, comma-separated "
                        "(default: all of stepwise,persistent,auto if fusedrnn.algorithm exists; "
                        "ignored on CPU and when it does not exist)")
    t = p.add_argument_group("timing")
    t.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    t.add_argument("--repeat", type=int, default=None,
                   help="timed rounds per case, median reported (default 50 on CUDA, 10 on "
                        "CPU, 5 with --quick)")
    t.add_argument("--warmup", type=int, default=None,
                   help="untimed rounds first (default 5 on CUDA, 2 on CPU, 1 with --quick)")
    t.add_argument("--max-time", type=float, default=None,
                   help="stop timing a case after this many seconds (at least 3 rounds; "
                        "default 20 on CPU, none on CUDA)")
    t.add_argument("--cuda-graphs", choices=("auto", "always", "never"), default="auto",
                   help="CUDA-graph replay of the inference forward: auto (when launches "
                        "dominate: < 2^27 GEMM FLOPs per step and layer), always, never")
    t.add_argument("--seed", type=int, default=0, help="seed of weights and inputs")
    t.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads(N) for the CPU (default: torch's choice)")
    t.add_argument("--gemm-size", type=int, default=None, metavar="N",
                   help="N of the N x N x N matmul measuring the GEMM rate (default 4096 on "
                        "CUDA, 2048 on CPU, 1024 for fp16/bf16 on CPU)")
    o = p.add_argument_group("output")
    o.add_argument("--memory", action="store_true",
                   help="also the peak memory one inference call adds, per side (CUDA: "
                        "max_memory_allocated; CPU: peak RSS growth in a fresh process each)")
    o.add_argument("--json", metavar="FILE", default=None,
                   help="write all results and machine info to FILE as JSON")
    o.add_argument("--plot", metavar="FILE.png", default=None,
                   help="bar chart of the torch/fusedrnn ratios (needs matplotlib)")
    o.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")
    o.add_argument("--list", action="store_true", help="print the cases and exit")
    return p


def cases_from_args(a, device):
    """The case list the parsed options select."""
    sizes = a.sizes if a.sizes is not None else list(QUICK_SIZES if a.quick else DEFAULT_SIZES)
    sizes = apply_overrides(sizes, T=a.T, B=a.B, I=a.I, H=a.H, layers=a.layers)
    algorithms = [None]
    if device.type == "cuda" and hasattr(fusedrnn, "algorithm"):
        algorithms = a.algorithm or list(ALGORITHMS)
    return build_cases(cells=a.cell, sizes=sizes, dtypes=a.dtype, modes=a.mode,
                       algorithms=algorithms)


def _load_warning(device):
    """A note when other processes keep the CPU busy (CPU timings are then unreliable)."""
    if device.type != "cpu" or not hasattr(os, "getloadavg"):
        return ""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= cores:
        return ""
    return (f"note: load average {load:.1f} on {cores} cores: other processes compete for the "
            f"CPU, timings will be noisy (multi-threaded ops suffer most; try --threads 1)")


def _print_machine(device):
    """Prints what runs where (and a note when the CPU is busy); returns machine_info."""
    info = machine_info(device)
    print(f"fusedrnn {info['fusedrnn']} ({info['build_info']}), torch {info['torch']}, "
          f"{info['gpu'] or info['cpu']} ({info['cores']} cores, {info['torch_threads']} threads)"
          f", device {device}")
    load = _load_warning(device)
    if load:
        print(load)
    return info


def _report_failures(results):
    """Prints the cases that mismatched or did not run; returns them."""
    bad = [r for r in results if r["status"] != "ok"]
    if bad:
        print(f"\n{len(bad)} case(s) failed the check or did not run: "
              + "; ".join(f"{r['name']}: {r['status']}" for r in bad))
    return bad


def _defaults(a, device):
    cuda = device.type == "cuda"
    if a.repeat is None:
        a.repeat = 5 if a.quick else (50 if cuda else 10)
    if a.warmup is None:
        a.warmup = 1 if a.quick else (5 if cuda else 2)
    if a.max_time is None and not cuda:
        a.max_time = 20.0


def main(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    _defaults(a, device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.serve:
        return _main_serve(a, device)
    if a.variants:
        return _main_variants(a, device)
    cases = cases_from_args(a, device)
    if a.list:
        for c in cases:
            print(c.name)
        return 0
    if a.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plot needs matplotlib, an optional extra: pip install matplotlib")

    info = _print_machine(device)
    gemm = {d: gemm_rate(d, device, n=a.gemm_size) for d in a.dtype}
    print("GEMM rate (best of torch.matmul and fusedrnn's CPU GEMM): "
          + ", ".join(f"{d} {v:.1f} GFLOP/s" for d, v in gemm.items()))
    print(f"{len(cases)} cases, median of up to {a.repeat} runs after {a.warmup} warm-up"
          + (f", at most ~{a.max_time:g} s each" if a.max_time else ""))

    bar = ProgressBar(len(cases), "bench", enabled={"on": True, "off": False}.get(a.progress))
    results = []
    for case in cases:
        bar.update(0, case.name)
        results.append(run_case(case, device, repeat=a.repeat, warmup=a.warmup,
                                max_time=a.max_time, cuda_graphs=a.cuda_graphs,
                                gemm_gflops=gemm[case.dtype], seed=a.seed,
                                memory=a.memory))
        bar.update(1, case.name)
    bar.close()
    print(format_table(results))
    bad = _report_failures(results)
    if a.json:
        settings = {k: v for k, v in vars(a).items() if k not in ("sizes",)}
        settings["sizes"] = [dataclasses.asdict(s) for s in a.sizes] if a.sizes else None
        doc = {"machine": info, "settings": settings, "gemm_gflops": gemm, "results": results}
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        print(f"wrote {a.json}")
    if a.plot:
        write_plot(results, a.plot)
        print(f"wrote {a.plot}")
    return 1 if bad else 0


def _write_json(a, info, results):
    """--json of the serving and variant cases: the machine, the settings, the results."""
    if not a.json:
        return
    settings = {k: v for k, v in vars(a).items() if k not in ("sizes",)}
    with open(a.json, "w") as f:
        json.dump({"machine": info, "settings": settings, "results": results}, f, indent=1,
                  default=str)
    print(f"wrote {a.json}")


def check_text(chk):
    """A table's check column: '-', 'ok 1e-07' or 'MISMATCH 1.2e-03'."""
    if chk is None:
        return "-"
    return f"ok {chk['err']:.0e}" if chk["ok"] else f"MISMATCH {chk['err']:.1e}"


def _main_serve(a, device):
    from fusedrnn import bench_serve as sv
    kinds = [k for k in sv.SERVE_KINDS if k.replace("cell", "") in a.cell]
    batches = a.B or ((1, 16) if a.quick else sv.SERVE_BATCHES)
    hidden = a.H or ((512,) if a.quick else sv.SERVE_HIDDEN)
    cases = sv.serve_cases(kinds, batches, hidden, a.dtype)
    if a.list:
        for c in cases:
            print(c.name)
        return 0
    steps = a.steps or (50 if a.quick else 200)
    info = _print_machine(device)
    print(f"{len(cases)} serving cases: loops of {steps} single steps carrying the state, "
          f"median of {a.repeat} rounds")
    tol = TOLERANCE_CUDA if device.type == "cuda" else TOLERANCE
    bar = ProgressBar(len(cases), "serve", enabled={"on": True, "off": False}.get(a.progress))
    results = []
    for case in cases:
        bar.update(0, case.name)
        results.append(sv.run_serve_case(case, device, steps=steps, rounds=a.repeat,
                                         seed=a.seed, tolerance=tol))
        bar.update(1, case.name)
    bar.close()
    print(sv.format_serve_table(results))
    bad = _report_failures(results)
    _write_json(a, info, results)
    return 1 if bad else 0


def _main_variants(a, device):
    from fusedrnn import bench_variants as bv
    sizes = ((20, 8, 128),) if a.quick else bv.VARIANT_SIZES
    cases = bv.variant_cases(sizes=sizes, modes=a.mode)
    if a.list:
        for c in cases:
            print(c.name)
        return 0
    info = _print_machine(device)
    print(f"{len(cases)} variant-cell cases, median of {a.repeat} rounds")
    tol = (TOLERANCE_CUDA if device.type == "cuda" else TOLERANCE)["fp32"]
    bar = ProgressBar(len(cases), "variants", enabled={"on": True, "off": False}.get(a.progress))
    results = []
    for case in cases:
        bar.update(0, case.name)
        results.append(bv.run_variant_case(case, device, rounds=a.repeat, seed=a.seed,
                                           tolerance=tol))
        bar.update(1, case.name)
    bar.close()
    print(bv.format_variant_table(results))
    bad = _report_failures(results)
    _write_json(a, info, results)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
