"""The serving cases of the benchmark (`python -m fusedrnn.bench --serve`): single time steps in
a loop that carries the state, as a decoder or a streaming model calls an RNN.

For every kind (the LSTM, GRU and RNN modules called with T=1; LSTMCell and GRUCell), batch B
and hidden size H (input size = H): torch.nn's module and fusedrnn's with the same weights
first give the same outputs for one step (the main suite's per-dtype tolerance), then a loop
of `steps` calls under torch.inference_mode, each feeding the state the previous call returned,
is timed for both alternately; the median over rounds is reported in microseconds per step.
"""
import statistics
import time
from dataclasses import dataclass

import torch

import fusedrnn

__all__ = ["ServeCase", "SERVE_KINDS", "SERVE_BATCHES", "SERVE_HIDDEN", "serve_cases",
           "run_serve_case", "format_serve_table"]

SERVE_KINDS = ("lstm", "gru", "rnn", "lstmcell", "grucell")
SERVE_BATCHES = (1, 4, 16)
SERVE_HIDDEN = (256, 512, 1024)
_CLASSES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN", "lstmcell": "LSTMCell",
            "grucell": "GRUCell"}


@dataclass(frozen=True)
class ServeCase:
    kind: str
    B: int
    H: int
    dtype: str = "fp32"

    @property
    def name(self):
        return f"{self.kind} T1 B{self.B} H{self.H} {self.dtype} serve"


def serve_cases(kinds=SERVE_KINDS, batches=SERVE_BATCHES, hidden=SERVE_HIDDEN, dtypes=("fp32",)):
    return [ServeCase(k, b, h, d) for k in kinds for h in hidden for b in batches
            for d in dtypes]


def _models(case, device, dtype, seed):
    torch.manual_seed(seed)
    cls = _CLASSES[case.kind]
    ref = getattr(torch.nn, cls)(case.H, case.H, device=device, dtype=dtype)
    ours = getattr(fusedrnn, cls)(case.H, case.H, device=device, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    return {"torch": ref.eval(), "fusedrnn": ours.eval()}


def _initial_state(case, device, dtype):
    h = torch.randn(case.B, case.H, device=device, dtype=dtype)
    cell = case.kind.endswith("cell")
    if case.kind in ("lstm", "lstmcell"):
        c = torch.randn(case.B, case.H, device=device, dtype=dtype)
        return (h, c) if cell else (h[None], c[None])
    return h if cell else h[None]


def _step_fn(case, model):
    """One call: (x, state) -> next state (the output is the state's h for T=1)."""
    if case.kind.endswith("cell"):
        return model
    return lambda x, s: model(x[None], s)[1]


def _flatten(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _flatten(o)]


def run_serve_case(case, device, steps=200, rounds=5, seed=0, tolerance=None):
    """Check, then time one serving case. Returns a JSON-able dict (failures recorded)."""
    from fusedrnn.bench import DTYPES, TOLERANCE, _rel_err, _sync
    device = torch.device(device)
    dtype = DTYPES[case.dtype]
    tol = (tolerance or TOLERANCE)[case.dtype]
    r = {"name": case.name, "kind": case.kind, "B": case.B, "H": case.H, "dtype": case.dtype,
         "steps": steps, "device": str(device), "status": "ok", "error": None, "check": None}
    try:
        models = _models(case, device, dtype, seed)
        x = torch.randn(case.B, case.H, device=device, dtype=dtype)
        s0 = _initial_state(case, device, dtype)
        fns = {w: _step_fn(case, m) for w, m in models.items()}
        with torch.inference_mode():  # every output of one call: (y, state) or the cell's
            out = {w: _flatten(m(x, s0) if case.kind.endswith("cell") else m(x[None], s0))
                   for w, m in models.items()}
        err = max(_rel_err(a, b) for a, b in zip(out["fusedrnn"], out["torch"]))
        r["check"] = {"ok": err <= tol, "err": err, "worst": "output", "tol": tol}
        if err > tol:
            r["status"] = "MISMATCH"

        def loop(fn):
            s = s0
            for _ in range(steps):
                s = fn(x, s)
            return s

        times = {"torch": [], "fusedrnn": []}
        order = ("torch", "fusedrnn")
        with torch.inference_mode():
            for w in order:  # warm-up: first calls allocate and fault pages in
                loop(fns[w])
            for i in range(rounds):
                for w in order if i % 2 == 0 else order[::-1]:
                    _sync(device)
                    t0 = time.perf_counter()
                    loop(fns[w])
                    _sync(device)
                    times[w].append((time.perf_counter() - t0) / steps)
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        r["status"], r["error"] = "ERROR", f"{type(e).__name__}: {e}"
        return r
    t, f = statistics.median(times["torch"]), statistics.median(times["fusedrnn"])
    r.update(torch_us=t * 1e6, fusedrnn_us=f * 1e6, ratio=t / f,
             torch_times=times["torch"], fusedrnn_times=times["fusedrnn"])
    return r


def format_serve_table(results):
    from fusedrnn.bench import align_table, check_text
    head = ["case", "check", "torch.nn us/step", "fusedrnn us/step", "torch/fused"]
    rows = []
    for r in results:
        check = check_text(r.get("check"))
        if r.get("error"):
            rows.append([r["name"], check, "ERROR: " + r["error"][:80]])
            continue
        rows.append([r["name"], check, f"{r['torch_us']:.1f}", f"{r['fusedrnn_us']:.1f}",
                     f"{r['ratio']:.2f}x"])
    return align_table(head, rows)
