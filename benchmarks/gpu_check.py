"""The benchmark and report half of scripts/gpu_check.sh: fusedrnn against torch.nn (cuDNN).

    python benchmarks/gpu_check.py --out DIR [--quick] [--budget SECONDS] [--device cuda]
                                   [--build-seconds S] [--build-log F] [--tests-log F]

Writes DIR/report.md and DIR/report.json, and prints a short table last; with --smoke GROUP
only that smoke check (DIR/smoke-GROUP.json, which a later run's report shows). Parts:
  smoke      (--smoke flags|cluster, gpu_check.sh's first step after the build, a process a
             group) each new persistent forward path once against the stepwise forward on the
             same inputs; last line "exchange: flags" / "cluster: auto", or where a case failed
             "exchange: barrier" / "cluster: off" (FUSEDRNN_PERSISTENT_EXCHANGE / _CLUSTER).
  static     ptxas registers/spills/shared memory of every kernel (benchmarks/kernel_resources.py,
             needs nvcc) and the SASS facts of the built library (benchmarks/sass.py: local
             memory, HMMA count, load widths); both need no GPU.
  versions   card, SM count, driver, torch, CUDA, cuDNN, and the TF32 switches torch gives cuDNN
             and cuBLAS (fp32 cases run with torch's defaults; the report states them).
  benchmark  cases in priority order until the time budget is spent: fastrnns' T=100 B=64
             I=H=512, then small-batch inference (B=1,4,16; H=256,512,1024; a bidirectional
             layer at B=1,8, H=256, training too; two stacked layers at B=1,8, H=512), after
             training at B=8 H=512 and B=16 H=256, then
             the rest of the default suite; LSTM, GRU, RNN; fp32, bf16, fp16; inference and
             training; the
             stepwise and persistent algorithms where both apply. Each case is checked against
             torch.nn before it is timed (fusedrnn.bench.run_case); cases left for lack of time
             are listed as such.
  kernels    one call of fusedrnn and of torch.nn per representative case under torch.profiler:
             kernel name, count, mean microseconds.
  cluster    the persistent forward on one thread-block cluster against the grid-barrier one,
             side by side (µs a step, T=100), with the model's predictions for both
             (benchmarks/perf_model.py): the check of the plan's choice between them.
  wavefront  the layers of a stack in one launch (fusedrnn::lstm_forward_stack) against the
             same layers one at a time (the single-layer op, persistent), side by side (µs for
             the stack, T=100), with the model's predictions for both.
  phases     where a persistent forward step's time goes: one traced launch
             (fusedrnn_persistent.set_trace: clock64 marks per block and step) per case, the
             median cycles of each phase over blocks and steps, beside the untraced µs a step.
Without a GPU (or --device cpu, which exercises the same code on the CPU with tiny sizes) the
benchmark runs only where asked; the static part always runs.
"""
import argparse
import contextlib
import datetime
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import torch  # noqa: E402

import fusedrnn  # noqa: E402
from fusedrnn import bench  # noqa: E402
from fusedrnn.bench import Case, Size  # noqa: E402

PERSISTENT_CELLS = ("lstm", "gru")  # the cells with a persistent kernel


def case_list(quick, device):
    """(priority group, Case) in the order they run."""
    if device.type != "cuda":  # a smoke run of the whole pipeline on the CPU
        sizes = {"fastrnns": [Size(T=5, B=3, H=16)], "small-batch": [Size(T=5, B=1, H=8)],
                 "default": []}
        dtypes, algos = ("fp32",), (None,)
    else:
        small = [Size(T=100, B=b, H=h) for b in (1, 4, 16) for h in (256, 512, 1024)]
        if quick:
            small = [Size(T=100, B=b, H=h) for b in (1, 16) for h in (256, 1024)]
        # a bidirectional layer, inference and training: both directions in one persistent
        # launch a pass
        small += [Size(T=100, B=b, H=256, bidirectional=True) for b in (1, 8)]
        # stacked layers in inference: one wavefront launch
        small += [Size(T=100, B=b, H=512, layers=2) for b in (1, 8)]
        rest = [] if quick else [s for s in bench.DEFAULT_SIZES if s != Size(T=100, B=64, H=512)]
        # training at small batch (the persistent backward), before the long inference list
        train = [Size(T=100, B=8, H=512), Size(T=100, B=16, H=256)][:1 if quick else 2]
        sizes = {"fastrnns": [Size(T=100, B=64, H=512)], "small-train": train,
                 "small-batch": small, "default": rest}
        dtypes, algos = ("fp32", "bf16", "fp16"), ("stepwise", "persistent")
    out = []
    for group, group_sizes in sizes.items():
        group_dtypes = dtypes if group != "default" else dtypes[:2]
        for s in group_sizes:
            modes = ("inference",) if group == "small-batch" and not s.bidirectional \
                else ("training",) if group == "small-train" else bench.MODES
            for cell in bench.CELLS:
                for dt in group_dtypes:
                    for algo in algos:
                        if algo == "persistent" and cell not in PERSISTENT_CELLS:
                            continue
                        if algo is not None and cell not in PERSISTENT_CELLS:
                            algo = None  # RNN: stepwise only, no algorithm to choose
                        for mode in modes:
                            out.append((group, Case(cell=cell, size=s, dtype=dt, mode=mode,
                                                    algorithm=algo)))
    return out


def versions(device):
    info = bench.machine_info(device)
    info["tf32"] = {
        "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "torch.backends.cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
    for _, good, _, var in SMOKE_DECIDES.values():  # the fallback switches, as this run has them
        info[var] = os.environ.get(var) or good
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(sm_count=p.multi_processor_count, capability=f"{p.major}.{p.minor}",
                    memory_gib=round(p.total_memory / 2 ** 30, 1))
        try:
            q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm",
                                "--format=csv,noheader"], capture_output=True, text=True,
                               timeout=20)
            info["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
        except (OSError, subprocess.SubprocessError) as e:
            info["nvidia_smi"] = f"unavailable: {e}"
    return info


def static_part(ptxas_json=None):
    """ptxas report (read from ptxas_json when gpu_check.sh ran it alongside the tests) and SASS
    facts; each part records its own error instead of failing."""
    res = {}
    if ptxas_json:
        try:
            with open(ptxas_json) as f:
                res["ptxas"] = json.load(f)
        except (OSError, ValueError) as e:
            res["ptxas"] = {"error": f"{ptxas_json}: {e}"}
    else:
        try:
            r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks",
                                                             "kernel_resources.py"), "--json"],
                               capture_output=True, text=True, timeout=600)
            res["ptxas"] = json.loads(r.stdout) if r.returncode in (0, 1) and r.stdout.strip() \
                else {"error": (r.stderr or r.stdout).strip()[-800:]}
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            res["ptxas"] = {"error": str(e)}
    try:
        import sass

        res["sass"] = sass.report()
        if not res["sass"]:
            res["sass"] = {"error": "no CUDA kernels in the built library (CPU-only build?)"}
    except Exception as e:  # noqa: BLE001 - reported, the check goes on
        res["sass"] = {"error": f"{type(e).__name__}: {e}"}
    return res


def kernel_table(case, device, seed=0):
    """{which: [(kernel, count, mean_us)]} of one call each of torch.nn and fusedrnn."""
    from torch.profiler import ProfilerActivity, profile

    models = bench.make_models(case, device, seed=seed)
    out = {}
    for which in ("torch", "fusedrnn"):
        step = bench.make_step(case, models, which)
        step()  # warm: module load, handles, first-call allocations
        bench._sync(device)
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            step()
            bench._sync(device)
        rows = {}
        for e in prof.events():
            dev = getattr(e, "device_type", None)
            on_gpu = dev is not None and "CUDA" in str(dev)
            if device.type == "cuda" and not on_gpu:
                continue
            if device.type != "cuda" and (on_gpu or not e.name.startswith(("fusedrnn::", "aten::"))):
                continue
            # A kernel event's time range is the kernel's own span on the GPU; an op's is its
            # host time (the CPU smoke run).
            us = e.time_range.elapsed_us()
            n, tot = rows.get(e.name, (0, 0.0))
            rows[e.name] = (n + 1, tot + float(us or 0.0))
        out[which] = sorted(((k, n, tot / n) for k, (n, tot) in rows.items()),
                            key=lambda r: -r[1] * r[2])[:15]
    return out


def median_seconds(fn, device, reps):
    """Median wall time of fn() over reps calls after one warm call, synchronised each call."""
    fn()
    bench._sync(device)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        bench._sync(device)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


CLUSTER_CASES = [("lstm", "bf16", 1, 256), ("lstm", "bf16", 8, 256), ("lstm", "bf16", 8, 448),
                 ("lstm", "bf16", 8, 512), ("lstm", "bf16", 16, 256), ("gru", "bf16", 8, 256),
                 ("lstm", "fp32", 8, 256),
                 # no cluster fits; where the model has the flag words' bytes (twice h's) over
                 # L2 bandwidth cost more than the barrier (fp32) or about the same (bf16)
                 ("lstm", "bf16", 16, 1024), ("lstm", "fp32", 16, 1024)]


PREC = {"bf16": torch.bfloat16, "fp32": torch.float32}


def persistent_forward(cell, prec, B, H, T, device, algorithm="persistent"):
    """A call of fusedrnn's one-layer forward (inference, algorithm "persistent" unless told) on
    fresh inputs uniform in [-0.1, 0.1) (seed 0): T steps, B rows, I = H."""
    G = 4 if cell == "lstm" else 3
    g = torch.Generator(device="cpu").manual_seed(0)
    mk = lambda *shape: (torch.rand(*shape, generator=g) * 0.2 - 0.1).to(device, PREC[prec])  # noqa: E731
    x, h0, c0 = mk(T, B, H), mk(B, H), mk(B, H)
    w_ih, w_hh, b = mk(G * H, H), mk(G * H, H), mk(G * H)
    op = getattr(torch.ops.fusedrnn, f"{cell}_forward")
    args = (x, h0, c0, w_ih, w_hh, b, b) if cell == "lstm" else (x, h0, w_ih, w_hh, b, b)
    # lstm_forward takes w_hr before the algorithm, gru_forward does not
    extra = (None, None) if cell == "lstm" else (None,)
    backend = "cuda" if device.type == "cuda" else "simt"
    return lambda: op(*args, False, backend, *extra, algorithm)


# The smoke check (--smoke GROUP, gpu_check.sh's first step after the build, a process a group):
# each persistent forward path no GPU has run yet, one call against the stepwise forward on the
# same inputs (its kernels measured correct on a GPU before), after a control case on the grid
# barrier (measured before too). (path, cell, prec, B, H, cluster knob, flags) as
# cluster_vs_grid's tuning. A process a group, as a hang ends in the watchdog's device-side
# assert (csrc/cuda/watchdog.h, 10 s), which loses the process's CUDA context for what follows.
SMOKE_CONTROL = ("grid, grid barrier", "lstm", "bf16", 8, 512, -1, -1)
SMOKE_CASES = {
    "flags": [SMOKE_CONTROL,
              ("grid, flag words", "lstm", "bf16", 8, 512, -1, 0),
              ("grid, flag words", "gru", "bf16", 8, 512, -1, 0),
              ("grid, flag words", "lstm", "fp32", 8, 512, -1, 0)],
    "cluster": [SMOKE_CONTROL,
                ("cluster", "lstm", "bf16", 8, 256, 1, 0),
                ("cluster", "gru", "bf16", 8, 256, 1, 0),
                ("cluster, a warp a tile pair", "lstm", "bf16", 8, 512, 1, 0)],
}
# what a group decides (its last line), from whether all its cases but the control passed;
# gpu_check.sh sets the variable to the second value where they did not
SMOKE_DECIDES = {"flags": ("exchange", "flags", "barrier", "FUSEDRNN_PERSISTENT_EXCHANGE"),
                 "cluster": ("cluster", "auto", "off", "FUSEDRNN_PERSISTENT_CLUSTER")}
SMOKE_TOL = {"bf16": 2e-2, "fp32": 5e-3}  # max |y - y_stepwise|; inputs and weights in ±0.1


def fallback_on(group):
    """Whether this run has the group's fallback switch set (gpu_check.sh after a failed smoke
    check, or by hand): FUSEDRNN_PERSISTENT_EXCHANGE=barrier / FUSEDRNN_PERSISTENT_CLUSTER=off."""
    _, _, fallback, var = SMOKE_DECIDES[group]
    return os.environ.get(var) == fallback


def smoke(device, group, T=50):
    """[{group, path, case, ok, err, tol, ms} or {..., error}]: SMOKE_CASES[group], each one
    persistent forward (T steps; on a CPU through the SIMT layer at toy sizes, T = 3) against the
    stepwise one."""
    cuda = device.type == "cuda"
    P = torch.ops.fusedrnn_persistent
    out = []
    for path, cell, prec, B, H, knob, flags in SMOKE_CASES[group]:
        if not cuda:
            B, H, T = 2, 16, 3
        row = {"group": group, "path": path, "case": f"{cell} {prec} B={B} H={H} T={T}",
               "tol": SMOKE_TOL[prec]}
        try:
            ref = persistent_forward(cell, prec, B, H, T, device, "stepwise")()[0].float()
            P.set_tuning(0, 0, 0, knob, flags)
            t = time.perf_counter()
            y = persistent_forward(cell, prec, B, H, T, device)()[0].float()
            bench._sync(device)
            row["ms"] = (time.perf_counter() - t) * 1e3
            row["err"] = (y - ref).abs().max().item()
            row["ok"] = bool(torch.isfinite(y).all().item()) and row["err"] <= row["tol"]
        except Exception as e:  # noqa: BLE001  (reported; the next case still runs)
            row["ok"], row["error"] = False, f"{type(e).__name__}: {str(e)[:300]}"
        finally:
            with contextlib.suppress(Exception):
                P.set_tuning(0, 0, 0, 0)
        out.append(row)
        print(f"smoke: {path}: {row['case']}: " + ("ok" if row["ok"] else "FAILED") +
              (f" (max error {row['err']:.1e}, tolerance {row['tol']:.0e})" if "err" in row
               else f" ({row.get('error')})"), flush=True)
    return out


def cluster_vs_grid(device, T=100, reps=20):
    """[{case, plan: cluster blocks / preferred, cluster_us, grid_us, barrier_us, model_*_us}]
    per step of the persistent forward (fp32 with TF32 allowed), forced onto one cluster, onto
    the grid (the flag-word exchange where it applies: fp32/bf16, h staged whole) and onto the
    grid with a grid barrier a step (barrier_us; the test-only tuning of persistent_plan, which
    both backends share). On a CPU the same code runs through the SIMT layer at toy sizes (a
    smoke run: times not meaningful)."""
    import perf_model

    cuda = device.type == "cuda"
    P = torch.ops.fusedrnn_persistent
    out = []
    cases = CLUSTER_CASES if cuda else [("lstm", "bf16", 2, 16), ("gru", "bf16", 2, 16)]
    for cell, prec, B, H in cases:
        T_ = T if cuda else 3
        plan = P.plan_for(cell, B, H, PREC[prec], 132, 232448, 1024, 16) if not cuda else None
        run = persistent_forward(cell, prec, B, H, T_, device)
        row = {"case": f"{cell} {prec} B={B} H={H}"}
        # a cluster fits (plan_for's cluster_blocks; on a GPU the model, which sizes as the
        # plan does on sm_90)
        fits = plan[10] > 0 if plan is not None else perf_model.cluster_config(cell, B, H, prec)[3]
        old_tf32 = torch.backends.cudnn.allow_tf32
        try:
            torch.backends.cudnn.allow_tf32 = True  # fp32 RNNs on TF32, torch's default
            for name, knob, flags in (("cluster", 1, 0), ("grid", -1, 0), ("barrier", -1, -1)):
                # not timed: no cluster fits (knob 1 would time the grid), or a fallback switch
                # of this run turned the path off (it would time the fallback under its name)
                if (name == "cluster" and (not fits or fallback_on("cluster"))) or \
                        (name == "grid" and fallback_on("flags")):
                    row[f"{name}_us"] = None
                    continue
                P.set_tuning(0, 0, 0, knob, flags)
                row[f"{name}_us"] = median_seconds(run, device, reps if cuda else 1) / T_ * 1e6
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {e}"
        finally:
            P.set_tuning(0, 0, 0, 0)
            torch.backends.cudnn.allow_tf32 = old_tf32
        if cuda or plan is not None:
            row["model_cluster_us"] = perf_model.cluster_step(cell, B, H, prec) * 1e6 \
                if perf_model.cluster_config(cell, B, H, prec)[3] else None
            row["model_grid_us"] = perf_model.persistent_step(cell, "fwd", B, H, prec,
                                                              exchange="flags") * 1e6
            row["model_barrier_us"] = perf_model.persistent_step(cell, "fwd", B, H, prec) * 1e6
            row["plan_prefers_cluster"] = perf_model.cluster_preferred(cell, B, H, prec)
        out.append(row)
    return out


PHASE_CASES = [("lstm", "bf16", 1, 256), ("lstm", "bf16", 8, 256), ("lstm", "bf16", 8, 512),
               ("lstm", "fp32", 8, 512), ("gru", "bf16", 8, 512), ("lstm", "bf16", 16, 1024),
               # the grid forward of the third case with a grid barrier a step instead of the
               # flag words: where the wait moves from "tile" (the polls) to "barrier"
               ("lstm", "bf16", 8, 512, "grid barrier")]
PHASE_VARIANTS = {"grid": 0, "grid barrier": -1}  # a case's fifth element: the tuning's flags
# The gaps between persistent_kernels.cuh's six marks (FwdMark), in order.
PHASES = ["tile", "product", "consume", "arrive", "barrier"]


def phases(device, T=100, reps=10):
    """[{case, blocks, prefers_cluster, us_step, step_cycles, cycles: {phase: median}}]: the
    persistent forward (the plan's own path; fp32 with TF32 allowed) once untraced for its µs a
    step, once traced (marks per block and step: SM cycles on a GPU, nanoseconds through the
    SIMT layer). Phases: tile (h_{t-1} staged or there, prefetch retired; with the flag words
    also the polls until the words arrive, i.e. the wait), product (the warps' products and
    their partial sums' barrier), consume (the cell updates), arrive (cluster: the push and the
    arrival; grid: the next prefetch issued), barrier (the wait; 0 with the flag words). Medians
    over blocks and the steady steps 1..T-2; step_cycles: start to start. A case with a fifth
    element runs the grid forward (PHASE_VARIANTS: "grid" its own exchange, "grid barrier" a
    grid barrier a step)."""
    import perf_model

    cuda = device.type == "cuda"
    P = torch.ops.fusedrnn_persistent
    out = []
    cases = PHASE_CASES if cuda else [("lstm", "bf16", 2, 16), ("gru", "fp32", 3, 16),
                                      ("lstm", "bf16", 2, 16, "grid"),
                                      ("lstm", "bf16", 2, 16, "grid barrier")]
    for cell, prec, B, H, *variant in cases:
        T_ = T if cuda else 6
        run = persistent_forward(cell, prec, B, H, T_, device)
        row = {"case": f"{cell} {prec} B={B} H={H}" + "".join(f" ({v})" for v in variant),
               "prefers_cluster": perf_model.cluster_preferred(cell, B, H, prec) and not variant}
        old_tf32 = torch.backends.cudnn.allow_tf32
        try:
            torch.backends.cudnn.allow_tf32 = True
            if variant:  # the grid forward: its own exchange, or a grid barrier a step
                P.set_tuning(0, 0, 0, -1, PHASE_VARIANTS[variant[0]])
            row["us_step"] = median_seconds(run, device, reps if cuda else 1) / T_ * 1e6
            P.set_trace(True)
            try:
                run()
                bench._sync(device)
            finally:
                P.set_trace(False)
            m = P.last_trace().cpu().double()
            steady = m[:, 1:T_ - 1]
            gaps = steady.diff(dim=2)
            row["blocks"] = int(m.shape[0])
            row["cycles"] = {n: gaps[..., i].median().item() for i, n in enumerate(PHASES)}
            row["step_cycles"] = (m[:, 2:T_ - 1, 0] - m[:, 1:T_ - 2, 0]).median().item()
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {e}"
        finally:
            torch.backends.cudnn.allow_tf32 = old_tf32
            if variant:
                P.set_tuning(0, 0, 0, 0)
        out.append(row)
    return out


WAVE_CASES = [("lstm", "bf16", 8, 256, 4), ("lstm", "bf16", 1, 512, 2), ("lstm", "bf16", 8, 512, 2),
              ("lstm", "bf16", 8, 512, 4), ("gru", "bf16", 8, 512, 4), ("lstm", "fp32", 8, 512, 2)]


def wavefront_vs_layers(device, T=100, reps=20):
    """[{case, chunks, wave_us, layers_us, model_*_us}]: a stack's inference through the stack
    op (wavefront launches where the dispatch takes them) and its layers one at a time (the
    single-layer op), persistent, fp32 with TF32 allowed. On a CPU the same code runs through
    the SIMT layer at toy sizes (a smoke run: times not meaningful)."""
    import perf_model

    cuda = device.type == "cuda"
    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}
    ops = torch.ops.fusedrnn
    backend = "cuda" if cuda else "simt"
    out = []
    for cell, prec, B, H, L in (WAVE_CASES if cuda else [("lstm", "fp32", 2, 16, 2)]):
        T_ = T if cuda else 3
        G = 4 if cell == "lstm" else 3
        g = torch.Generator(device="cpu").manual_seed(0)
        mk = lambda *shape: (torch.rand(*shape, generator=g) * 0.2 - 0.1).to(device, dt[prec])  # noqa: E731
        x, h0, c0 = mk(T_, B, H), mk(L, B, H), mk(L, B, H)
        w = [mk(*shape) for _ in range(L) for shape in ((G * H, H), (G * H, H), (G * H,), (G * H,))]

        def wave():
            if cell == "lstm":
                return ops.lstm_forward_stack(x, h0, c0, w, True, backend, None, "persistent")
            return ops.gru_forward_stack(x, h0, w, True, backend, None, "persistent")

        def layers():
            y = x
            for l in range(L):
                wl = w[4 * l:4 * l + 4]
                if cell == "lstm":
                    y = ops.lstm_forward(y, h0[l], c0[l], *wl, False, backend, None, None,
                                         "persistent", False)[0]
                else:
                    y = ops.gru_forward(y, h0[l], *wl, False, backend, None, "persistent",
                                        False)[0]
            return y

        row = {"case": f"{cell} {prec} B={B} H={H} layers={L}",
               "chunks": "+".join(map(str, perf_model.stack_chunks(cell, B, H, prec, L)))}
        old_tf32 = torch.backends.cudnn.allow_tf32
        try:
            torch.backends.cudnn.allow_tf32 = True  # fp32 RNNs on TF32, torch's default
            for name, fn in (("wave", wave), ("layers", layers)):
                row[f"{name}_us"] = median_seconds(fn, device, reps if cuda else 1) * 1e6
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {e}"
        finally:
            torch.backends.cudnn.allow_tf32 = old_tf32
        row["model_wave_us"] = perf_model.stack_time(cell, B, H, prec, L, T_) * 1e6
        row["model_layers_us"] = perf_model.stack_time(cell, B, H, prec, L, T_, wave=False) * 1e6
        out.append(row)
    return out


STEP_CASES = [(cell, prec, B, H) for cell in ("lstm", "gru") for prec in ("bf16", "fp32")
              for B in (1, 8, 16) for H in (256, 512, 1024)]


def per_step(device, T0=50, T1=550, reps=10):
    """[{case, mode, fused_us, stepwise_us, torch_us, fused_fixed_us, ...}]: the time of one more
    step of a layer (fusedrnn persistent and stepwise, torch.nn on cuDNN), from two sequence
    lengths timed side by side,
    (t(T1) - t(T0)) / (T1 - T0), so launches, the input GEMMs' fixed part and host work drop out;
    the fixed part is t(T0) - T0 * step. Inference (no_grad) and training (forward + backward).
    fp32 with torch's TF32 default. The model's predictions (benchmarks/perf_model.py) beside.
    On a CPU: a smoke run at toy sizes through the SIMT layer (times not meaningful)."""
    import perf_model

    cuda = device.type == "cuda"
    out = []
    cases = STEP_CASES if cuda else [("lstm", "fp32", 2, 16)]
    if not cuda:
        T0, T1, reps = 2, 4, 1
    for cell, prec, B, H in cases:
        dt = bench.DTYPES[prec]
        torch.manual_seed(0)
        mods = {"fused": (fusedrnn.LSTM if cell == "lstm" else fusedrnn.GRU)(H, H),
                "torch": (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(H, H)}
        mods["torch"].load_state_dict(mods["fused"].state_dict())
        for m in mods.values():
            m.to(device, dt)
        mods["stepwise"] = mods["fused"]  # the same module on the stepwise kernels
        xs = {T: torch.randn(T, B, H, device=device, dtype=dt) for T in (T0, T1)}

        def ctx(which):
            stack = contextlib.ExitStack()
            if which != "torch":
                if not cuda:
                    stack.enter_context(fusedrnn.backend("simt"))
                stack.enter_context(fusedrnn.algorithm(
                    "persistent" if which == "fused" else "stepwise"))
            return stack

        for mode in ("inference", "training"):
            row = {"case": f"{cell} {prec} B={B} H={H}", "mode": mode}
            try:
                for which, m in mods.items():
                    def call(x, m=m, which=which):
                        with ctx(which):
                            if mode == "inference":
                                with torch.no_grad():
                                    m(x)
                            else:
                                m(x)[0].sum().backward()
                    t = {T: median_seconds(lambda x=x: call(x), device, reps)
                         for T, x in xs.items()}
                    step = (t[T1] - t[T0]) / (T1 - T0)
                    row[f"{which}_us"] = step * 1e6
                    row[f"{which}_fixed_us"] = (t[T0] - T0 * step) * 1e6
                row["ratio"] = row["torch_us"] / row["fused_us"] if row["fused_us"] > 0 else None
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{type(e).__name__}: {e}"[:300]
            try:
                if mode == "inference":
                    row["model_us"] = perf_model.persistent_step(cell, "fwd", B, H, prec, "v3") * 1e6
                else:
                    row["model_us"] = (perf_model.persistent_step(cell, "fwd", B, H, prec, "v3")
                                       + perf_model.persistent_step(cell, "bwd", B, H, prec)) * 1e6
            except Exception as e:  # noqa: BLE001
                row["model_error"] = f"{type(e).__name__}: {e}"[:200]
            out.append(row)
    return out


def fmt_ms(s):
    return "-" if s is None else bench._fmt_ms(s)


def short_table(results):
    head = f"{'case':46} {'check':>8} {'torch ms':>9} {'fused ms':>9} {'cuDNN/fused':>11}"
    lines = [head, "-" * len(head)]
    for r in results:
        chk = r.get("check") or {}
        status = "ok" if r["status"] == "ok" else r["status"]
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else "-"
        lines.append(f"{r['name'][:46]:46} {status[:8]:>8} {fmt_ms(r.get('torch_s')):>9} "
                     f"{fmt_ms(r.get('fusedrnn_s')):>9} {ratio:>11}")
    return "\n".join(lines)


def markdown(doc):
    v = doc["versions"]
    L = [f"# fusedrnn GPU check: {v.get('gpu') or 'no GPU'}, {v['date'][:10]}", ""]
    L.append(f"- card: {v.get('gpu')} (sm {v.get('capability')}, {v.get('sm_count')} SMs, "
             f"{v.get('memory_gib')} GiB); nvidia-smi: {v.get('nvidia_smi')}")
    L.append(f"- torch {v['torch']} (CUDA {v['torch_cuda']}), cuDNN {v.get('cudnn')}, "
             f"Python {v['python']}, fusedrnn {v['fusedrnn']} {v['build_info']}")
    L.append(f"- TF32: {v['tf32']} (torch's defaults, unchanged: fp32 cuDNN RNNs may use TF32)")
    if doc.get("build"):
        L.append(f"- build: {doc['build']}")
    if doc.get("tests"):
        L.append(f"- CUDA tests: {doc['tests']}")
    L.append("- fallback switches: " + ", ".join(f"{var}={v.get(var, good)}"
                                                 for _, good, _, var in SMOKE_DECIDES.values()))
    if doc.get("smoke"):
        L += ["", "## Smoke check (each new persistent forward path against the stepwise "
              "forward; a process a group)", "",
              "| group | path | case | result | max error | tolerance | ms |",
              "|---|---|---|---|---:|---:|---:|"]
        for r in doc["smoke"]:
            res = "ok" if r["ok"] else ("FAILED" + (f": {r['error'][:160]}" if r.get("error") else ""))
            err = f"{r['err']:.1e}" if "err" in r else "-"
            ms = f"{r['ms']:.1f}" if "ms" in r else "-"
            L.append(f"| {r.get('group', '-')} | {r['path']} | {r['case']} | {res} | {err} | "
                     f"{r['tol']:.0e} | {ms} |")
    L += ["", "## Benchmark (torch.nn time / fusedrnn time; > 1 means fusedrnn is faster)", "",
          "| group | case | check | torch.nn ms | fusedrnn ms | ratio | graphs |",
          "|---|---|---|---:|---:|---:|---|"]
    for r in doc["results"]:
        chk = r.get("check") or {}
        c = "-" if not chk else (f"ok {chk['err']:.0e}" if chk["ok"] else
                                 f"MISMATCH {chk['err']:.1e} ({chk['worst']})")
        if r.get("error"):
            c = f"{r['status']}: {r['error'][:120]}"
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
        L.append(f"| {r['group']} | {r['name']} | {c} | {fmt_ms(r.get('torch_s'))} | "
                 f"{fmt_ms(r.get('fusedrnn_s'))} | {ratio} | {'yes' if r.get('cuda_graphs') else ''} |")
    if doc.get("not_run"):
        L += ["", f"Not run for lack of time ({len(doc['not_run'])}): " + "; ".join(doc["not_run"])]
    L += ["", "## Kernels of one call (name, count, mean µs)", ""]
    for name, tab in doc.get("kernels", {}).items():
        L.append(f"### {name}")
        if "error" in tab:
            L += [f"error: {tab['error']}", ""]
            continue
        for which, rows in tab.items():
            L += ["", f"{which}:", "", "| kernel | count | mean µs |", "|---|---:|---:|"]
            L += [f"| `{k[:90]}` | {n} | {us:.1f} |" for k, n, us in rows]
        L.append("")
    if doc.get("cluster"):
        f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        L += ["## Persistent forward: one cluster vs the grid (µs a step; model in brackets)", "",
              "grid: the flag-word exchange (no grid barrier); grid barrier: a barrier a step "
              "(as before 2026-12-05).", "",
              "| case | plan prefers | cluster | grid | grid barrier | error |",
              "|---|---|---:|---:|---:|---|"]
        for r in doc["cluster"]:
            L.append(f"| {r['case']} | {r.get('plan_prefers_cluster')} | "
                     f"{f(r.get('cluster_us'))} ({f(r.get('model_cluster_us'))}) | "
                     f"{f(r.get('grid_us'))} ({f(r.get('model_grid_us'))}) | "
                     f"{f(r.get('barrier_us'))} ({f(r.get('model_barrier_us'))}) | "
                     f"{r.get('error', '')[:120]} |")
        L.append("")
    if doc.get("wavefront"):
        f = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
        L += ["## Stacked layers: wavefront launches vs one layer at a time (µs for the stack, "
              "T=100; model in brackets)", "",
              "| case | layers a launch (model) | wavefront | one at a time | error |",
              "|---|---|---:|---:|---|"]
        for r in doc["wavefront"]:
            L.append(f"| {r['case']} | {r.get('chunks')} | {f(r.get('wave_us'))} "
                     f"({f(r.get('model_wave_us'))}) | {f(r.get('layers_us'))} "
                     f"({f(r.get('model_layers_us'))}) | {r.get('error', '')[:120]} |")
        L.append("")
    if doc.get("per_step"):
        f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        L += ["## One more step (µs): the slope between two sequence lengths, fusedrnn "
              "persistent vs torch.nn (model in brackets)", "",
              "| case | mode | fusedrnn | fusedrnn stepwise | torch.nn | torch/fused | "
              "fixed part fused / torch | error |", "|---|---|---:|---:|---:|---:|---|---|"]
        for r in doc["per_step"]:
            L.append(f"| {r['case']} | {r['mode']} | {f(r.get('fused_us'))} "
                     f"({f(r.get('model_us'))}) | {f(r.get('stepwise_us'))} | "
                     f"{f(r.get('torch_us'))} | {f(r.get('ratio'))} | "
                     f"{f(r.get('fused_fixed_us'))} / {f(r.get('torch_fixed_us'))} | "
                     f"{r.get('error', '')[:120]} |")
        L.append("")
    if doc.get("phases"):
        f = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
        L += ["## Where a persistent forward step goes (clock marks: median cycles a phase over "
              "blocks and steps 1..T-2; SIMT: ns)", "",
              "| case | blocks | plan prefers cluster | µs a step (untraced) | step | " +
              " | ".join(PHASES) + " | error |", "|---|---:|---|---:|---:|" +
              "---:|" * len(PHASES) + "---|"]
        for r in doc["phases"]:
            c = r.get("cycles") or {}
            L.append(f"| {r['case']} | {r.get('blocks', '-')} | {r.get('prefers_cluster')} | "
                     f"{r.get('us_step', 0):.2f} | {f(r.get('step_cycles'))} | " +
                     " | ".join(f(c.get(n)) for n in PHASES) + f" | {r.get('error', '')[:120]} |")
        L.append("")
    s = doc["static"]
    L += ["## Static checks (no GPU needed)", ""]
    if isinstance(s.get("sass"), list):
        import sass

        L += [sass.markdown(s["sass"]), ""]
    else:
        L += [f"SASS: {s.get('sass')}", ""]
    p = s.get("ptxas")
    if isinstance(p, list):
        L += ["| ptxas kernel | dtype | arch | threads | regs | spill st/ld | stack | smem "
              "static/dynamic |", "|---|---|---|---:|---:|---|---:|---|"]
        for r in p:
            L.append(f"| {r.get('kernel')} | {r.get('dtype')} | {r.get('arch')} | "
                     f"{r.get('threads')} | {r.get('regs')} | {r.get('spill_stores')}/"
                     f"{r.get('spill_loads')} | {r.get('stack')} | {r.get('smem_static')}/"
                     f"{r.get('smem_dynamic')} |")
    else:
        L.append(f"ptxas: {p}")
    return "\n".join(L) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for report.md and report.json")
    ap.add_argument("--quick", action="store_true", help="fewer cases (the 5-minute check)")
    ap.add_argument("--budget", type=float, default=300.0,
                    help="seconds for the benchmark cases (the rest are listed as not run)")
    ap.add_argument("--device", default=None, help="default: cuda if available")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--build-seconds", default=None)
    ap.add_argument("--build-log", default=None)
    ap.add_argument("--tests-log", default=None)
    ap.add_argument("--ptxas-json", default=None,
                    help="benchmarks/kernel_resources.py --json output (else it is run here)")
    ap.add_argument("--no-static", action="store_true", help="skip ptxas and SASS")
    ap.add_argument("--resume", default=None,
                    help="an earlier report.json: its measured cases are taken over, not rerun")
    ap.add_argument("--table-only", action="store_true",
                    help="print the short table of OUT/report.json (a run stopped at its limit)")
    ap.add_argument("--smoke", choices=sorted(SMOKE_CASES), default=None,
                    help="only the smoke check of a group of paths: OUT/smoke-GROUP.json, and "
                         "last what to use ('exchange: flags' / 'cluster: auto' when all its "
                         "cases passed, else 'exchange: barrier' / 'cluster: off')")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    if a.table_only:
        with open(os.path.join(a.out, "report.json")) as f:
            print(short_table(json.load(f)["results"]))
        return 0
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    t0 = time.perf_counter()
    if a.smoke:
        rows = smoke(device, a.smoke)
        with open(os.path.join(a.out, f"smoke-{a.smoke}.json"), "w") as f:
            json.dump(rows, f, indent=1)
        what, good, fallback, _ = SMOKE_DECIDES[a.smoke]
        ok = all(r["ok"] for r in rows[1:])  # the control decides nothing
        print(f"{what}: {good if ok else fallback}", flush=True)
        return 0 if all(r["ok"] for r in rows) else 1

    doc = {"versions": versions(device), "results": [], "not_run": [], "kernels": {}}
    if a.build_seconds:
        doc["build"] = f"{a.build_seconds} s ({a.build_log or 'log not kept'})"
    if a.tests_log and os.path.exists(a.tests_log):
        with open(a.tests_log, errors="replace") as f:
            tail = [l.strip() for l in f.read().splitlines() if l.strip()]
        doc["tests"] = tail[-1] if tail else "no output"
    for group in sorted(SMOKE_CASES):  # gpu_check.sh's smoke check of this run
        path = os.path.join(a.out, f"smoke-{group}.json")
        if os.path.exists(path):
            with open(path) as f:
                doc.setdefault("smoke", []).extend(json.load(f))
    doc["static"] = {}

    def save():
        # After every case: a run killed at its limit (a hung kernel) still leaves its report.
        with open(os.path.join(a.out, "report.json"), "w") as f:
            json.dump(doc, f, indent=1, default=str)
        with open(os.path.join(a.out, "report.md"), "w") as f:
            f.write(markdown(doc))

    cuda = device.type == "cuda"
    repeat = a.repeat or (10 if a.quick else 20)
    cases = case_list(a.quick, device)
    deadline = t0 + a.budget

    def sections():
        reps = [c for g, c in cases if g == "fastrnns" and c.cell == "lstm" and c.dtype in
                ("fp32", "bf16") and c.algorithm in (None, "stepwise")]
        reps += [c for g, c in cases if g == "small-batch" and c.cell == "lstm" and c.size.B == 1
                 and c.dtype == "bf16" and c.algorithm == "persistent"][:1]
        for c in reps:
            try:
                with bench._algorithm_ctx(c):
                    doc["kernels"][c.name] = kernel_table(c, device)
            except Exception as e:  # noqa: BLE001
                doc["kernels"][c.name] = {"error": f"{type(e).__name__}: {e}"}
        save()
        for key, fn in (("per_step", per_step), ("phases", phases), ("cluster", cluster_vs_grid),
                        ("wavefront", wavefront_vs_layers)):
            try:
                doc[key] = fn(device)
            except Exception as e:  # noqa: BLE001  (e.g. a build without the SIMT test ops)
                doc[key] = [{"case": "all", "mode": "-", "error": f"{type(e).__name__}: {e}"}]
            save()
            print(f"{key}: done at {time.perf_counter() - t0:.0f} s", flush=True)

    prev = {}
    if a.resume:  # a follow-up run: the comparisons first, then the cases the earlier run left
        with open(a.resume) as f:  # measured ones (ok, n/a, mismatch) are taken over
            prev = {r["name"]: r for r in json.load(f)["results"]
                    if r["status"] in ("ok", "n/a", "MISMATCH")}
        doc["resumed_from"] = f"{a.resume} ({len(prev)} cases)"
        sections()
    for i, (group, case) in enumerate(cases):
        if case.name in prev:
            r = dict(prev[case.name], group=group, run="earlier")
            doc["results"].append(r)
            continue
        if time.perf_counter() > deadline:
            doc["not_run"] = [c.name for _, c in cases[i:] if c.name not in prev]
            break
        r = bench.run_case(case, device, repeat=repeat, warmup=3 if cuda else 1,
                           max_time=5.0, cuda_graphs="auto")
        r["group"] = group
        # An explicit persistent case whose W_hh does not fit on chip: not applicable, not a
        # failure (fusedrnn raises that clear error by design).
        if r["status"] == "ERROR" and "does not fit on chip" in (r.get("error") or ""):
            r["status"] = "n/a"
        for k in ("torch_times", "fusedrnn_times"):
            r.pop(k, None)
        doc["results"].append(r)
        save()
        print(f"[{i + 1}/{len(cases)}] {r['name']}: {r['status']}"
              + (f" {r['ratio']:.2f}x" if "ratio" in r else f" {r.get('error') or ''}"),
              flush=True)

    if not a.resume:
        sections()
    save()
    # Static facts last: they need no GPU, so the device's time goes to measuring first.
    doc["static"] = {} if a.no_static else static_part(a.ptxas_json)
    save()
    bad = [r for r in doc["results"] if r["status"] not in ("ok", "n/a")]
    sass_rows = doc["static"].get("sass")
    local = [r for r in sass_rows if r["LDL"] or r["STL"]] if isinstance(sass_rows, list) else []
    print(f"\nwrote {a.out}/report.md and report.json ({time.perf_counter() - t0:.0f} s)")
    print(f"static: SASS {'%d kernels, %d with local memory, HMMA in %d' % (len(sass_rows), len(local), sum(1 for r in sass_rows if r['HMMA'])) if isinstance(sass_rows, list) else sass_rows}")
    print(f"{doc['versions'].get('gpu') or 'no GPU'}; TF32 {doc['versions']['tf32']}")
    print(short_table(doc["results"]))
    if doc["not_run"]:
        print(f"{len(doc['not_run'])} case(s) not run for lack of time")
    return 1 if bad or local else 0


if __name__ == "__main__":
    sys.exit(main())
