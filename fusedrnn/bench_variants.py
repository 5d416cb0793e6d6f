"""The variant cells of the benchmark (`python -m fusedrnn.bench --variants`): cells torch.nn
does not have, fused, against the same cell written step by step in plain PyTorch
(fusedrnn.reference, what a user would otherwise run) and against torch.nn's closest cell.

Cells: GRU with the reset gate before the recurrent product (Cho et al. 2014:
fusedrnn.GRU(reset_after=False); closest torch.nn cell: torch.nn.GRU, reset after), and MUT1,
MUT2, MUT3 (Jozefowicz et al. 2015: fusedrnn.MUT1/2/3; closest: torch.nn.GRU of the same size,
its own weights, for time only) and the layer-normalised LSTM and GRU (Ba et al. 2016:
fusedrnn.LayerNormLSTM / LayerNormGRU; closest: torch.nn.LSTM / GRU, for time only). For every
(T, B, H) (input size = H) and mode, the fused module first gives the reference's outputs (and,
in training, its input gradient) within the main suite's fp32 tolerance (the layer-normalised
cells: LN_TOLERANCE, see there), then the three are
timed alternately; the median over rounds is reported in milliseconds. "inference" is the
forward under torch.no_grad(), "training" forward + backward of the output's sum.
"""
import statistics
import time
from dataclasses import dataclass

import torch

import fusedrnn
from fusedrnn import reference

__all__ = ["VariantCase", "VARIANTS", "VARIANT_SIZES", "variant_cases", "run_variant_case",
           "format_variant_table"]

VARIANTS = ("gru_reset_before", "mut1", "mut2", "mut3", "ln_lstm", "ln_gru")
VARIANT_SIZES = ((100, 64, 512), (100, 8, 256), (100, 1, 512))
MODES = ("inference", "training")
# The layer-normalised LSTM's recurrence amplifies rounding: at initialisation the gate norms
# give the recurrent term unit variance whatever W_hh's scale, and two fp32 computations of
# T=100 steps drift apart. Measured at B=8 H=256: the plain-PyTorch fp32 loop is 6e-4 from an
# fp64 run, fusedrnn's CPU backend 3e-4 (the difference grows from 4e-7 at the first step).
# So the check allows the drift the fp32 reference itself has.
LN_TOLERANCE = 2e-3


@dataclass(frozen=True)
class VariantCase:
    variant: str
    T: int
    B: int
    H: int
    mode: str

    @property
    def name(self):
        return f"{self.variant} T{self.T} B{self.B} H{self.H} fp32 {self.mode}"


def variant_cases(variants=VARIANTS, sizes=VARIANT_SIZES, modes=MODES):
    return [VariantCase(v, T, B, H, m) for v in variants for (T, B, H) in sizes for m in modes]


def _callables(case, device, seed):
    """name -> fn(x) returning (y, h_n): the fused module, the reference loop, torch.nn's."""
    torch.manual_seed(seed)
    if case.variant == "ln_lstm":
        fused = fusedrnn.LayerNormLSTM(case.H, case.H, device=device)
        w = tuple(getattr(fused, n) for n in ("weight_ih_l0", "weight_hh_l0", "gain_ih_l0",
                                              "gain_hh_l0", "gain_cell_l0", "bias_l0",
                                              "bias_cell_l0"))

        def ref_ln(x):
            z = x.new_zeros(x.shape[1], case.H)
            y, h, c = reference.layer_norm_lstm_layer(x, z, z, *w)
            return y, (h[None], c[None])
        return {"fusedrnn": fused, "reference": ref_ln,
                "torch.nn": torch.nn.LSTM(case.H, case.H, device=device)}
    closest = torch.nn.GRU(case.H, case.H, device=device)
    if case.variant == "ln_gru":
        fused = fusedrnn.LayerNormGRU(case.H, case.H, device=device)
        w = tuple(getattr(fused, n) for n in ("weight_ih_l0", "weight_hh_l0", "gain_ih_l0",
                                              "gain_hh_l0", "bias_ih_l0", "bias_hh_l0"))

        def ref_ln_gru(x):
            y, h = reference.layer_norm_gru_layer(x, x.new_zeros(x.shape[1], case.H), *w)
            return y, h[None]
        return {"fusedrnn": fused, "reference": ref_ln_gru, "torch.nn": closest}
    if case.variant.startswith("mut"):
        k = int(case.variant[3:])
        fused = getattr(fusedrnn, f"MUT{k}")(case.H, case.H, device=device)
        w = (fused.weight_ih_l0, fused.weight_hh_l0, fused.bias_l0)

        def ref(x):
            h0 = x.new_zeros(x.shape[1], case.H)
            y, h = reference.mut_layer(x, h0, *w, variant=k)
            return y, h[None]
        return {"fusedrnn": fused, "reference": ref, "torch.nn": closest}
    fused = fusedrnn.GRU(case.H, case.H, device=device, reset_after=False)
    closest.load_state_dict(fused.state_dict())
    w = (fused.weight_ih_l0, fused.weight_hh_l0, fused.bias_ih_l0, fused.bias_hh_l0)

    def ref(x):
        h0 = x.new_zeros(x.shape[1], case.H)
        y, h = reference.gru_layer(x, h0, *w, reset_after=False)
        return y, h[None]
    return {"fusedrnn": fused, "reference": ref, "torch.nn": closest}


def run_variant_case(case, device, rounds=5, seed=0, tolerance=1e-4):
    """Check, then time one case. Returns a JSON-able dict (failures recorded)."""
    if case.variant.startswith("ln_"):
        tolerance = max(tolerance, LN_TOLERANCE)
    from fusedrnn.bench import _rel_err, _sync
    device = torch.device(device)
    r = {"name": case.name, "variant": case.variant, "T": case.T, "B": case.B, "H": case.H,
         "mode": case.mode, "device": str(device), "status": "ok", "error": None, "check": None}
    train = case.mode == "training"
    try:
        fns = _callables(case, device, seed)
        x = torch.randn(case.T, case.B, case.H, device=device, requires_grad=train)

        def run(fn):  # -> (y, h_n[, c_n][, x.grad])
            if not train:
                with torch.no_grad():
                    y, h = fn(x)
                return (y,) + (tuple(h) if isinstance(h, tuple) else (h,))
            x.grad = None
            y, h = fn(x)
            y.sum().backward()
            return (y,) + (tuple(h) if isinstance(h, tuple) else (h,)) + (x.grad,)

        got, want = run(fns["fusedrnn"]), run(fns["reference"])
        err = max(_rel_err(a, b) for a, b in zip(got, want))
        r["check"] = {"ok": err <= tolerance, "err": err, "tol": tolerance}
        if err > tolerance:
            r["status"] = "MISMATCH"
        order = list(fns)
        times = {k: [] for k in order}
        for k in order:  # warm-up
            run(fns[k])
        for i in range(rounds):
            for k in order if i % 2 == 0 else order[::-1]:
                _sync(device)
                t0 = time.perf_counter()
                run(fns[k])
                _sync(device)
                times[k].append(time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        r["status"], r["error"] = "ERROR", f"{type(e).__name__}: {e}"
        return r
    med = {k: statistics.median(v) for k, v in times.items()}
    r.update(fused_ms=med["fusedrnn"] * 1e3, reference_ms=med["reference"] * 1e3,
             torch_ms=med["torch.nn"] * 1e3, vs_reference=med["reference"] / med["fusedrnn"],
             vs_torch=med["torch.nn"] / med["fusedrnn"], times=times)
    return r


def format_variant_table(results):
    from fusedrnn.bench import align_table, check_text
    head = ["case", "check", "fused ms", "reference ms", "ref/fused", "torch.nn closest ms",
            "closest/fused"]
    rows = []
    for r in results:
        check = check_text(r.get("check"))
        if r.get("error"):
            rows.append([r["name"], check, "ERROR: " + r["error"][:80]])
            continue
        rows.append([r["name"], check, f"{r['fused_ms']:.2f}", f"{r['reference_ms']:.2f}",
                     f"{r['vs_reference']:.2f}x", f"{r['torch_ms']:.2f}",
                     f"{r['vs_torch']:.2f}x"])
    return align_table(head, rows)
