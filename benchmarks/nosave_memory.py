"""Peak memory and time of a no_grad forward, saving (the behaviour before issue #21 item 2) and
not saving (now) the activations backward would need, side by side in one run.

    python benchmarks/nosave_memory.py [--backend cpu|simt] [--size T,B,H] [--reps N]

Memory: each case in its own fresh process. "before" forces the Functions to pass save=True
(what every forward did before), "after" is the default no_grad forward (save=False). Time: one
process alternating before and after forwards (so that load from elsewhere hits both alike),
the fastest of --reps each. Reported:
  big peak  the CPU backend's own allocation statistics (csrc/cpu/big_buffer.h: buffers from
            1 MB up, as mapped; y, gates, cells and scratch of the CPU backend are all such)
  RSS peak  growth of the process's peak resident set during one forward (VmHWM, reset through
            /proc/self/clear_refs): every allocation, whoever made it
  time      the fastest of --reps forwards (after one warm-up), alternating with the other case:
            wall clock, and the CPU time of all the process's threads (less sensitive to other
            processes sharing the cores, though spinning threads count in it).
"""
import argparse
import json
import os
import subprocess
import sys
import time

MB = 1 << 20


def vm_hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_hwm():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def setup(cell, T, B, H):
    import torch

    import fusedrnn
    torch.manual_seed(0)
    m = (fusedrnn.LSTM if cell == "lstm" else fusedrnn.GRU)(H, H)
    return m, torch.randn(T, B, H)


def set_mode(mode):
    from fusedrnn import functional as F
    if not hasattr(F, "_real_needs_backward"):
        F._real_needs_backward = F._needs_backward
    # before: the save=True forward of every call before the flag
    F._needs_backward = (lambda *t: True) if mode == "before" else F._real_needs_backward


def child_time(cell, backend, T, B, H, reps):
    import torch

    import fusedrnn
    m, x = setup(cell, T, B, H)
    best = {"before": float("inf"), "after": float("inf")}
    cpu = dict(best)
    with fusedrnn.backend(backend), torch.no_grad():
        m(x)  # warm-up (thread pool started)
        for _ in range(reps):
            for mode in best:
                set_mode(mode)
                t0, c0 = time.perf_counter(), time.process_time()
                m(x)
                best[mode] = min(best[mode], time.perf_counter() - t0)
                cpu[mode] = min(cpu[mode], time.process_time() - c0)
    return {"wall": best, "cpu": cpu}


def child(cell, mode, backend, T, B, H, reps):
    import torch

    import fusedrnn
    set_mode(mode)
    m, x = setup(cell, T, B, H)
    C = fusedrnn._ops._C
    with fusedrnn.backend(backend), torch.no_grad():
        m(x)  # warm-up: weights packed, thread pool started
        # Memory of one more forward, after the warm-up's buffers were released.
        reset_hwm()
        rss_base = vm_hwm()
        C.cpu_reset_peak()
        live0 = C.cpu_cache_stats()["live"]
        y, _ = m(x)
        big = C.cpu_cache_stats()["peak"] - live0
        rss = vm_hwm() - rss_base
    return {"big_peak": big, "rss_peak": rss, "y_bytes": y.numel() * y.element_size()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--size", default="100,64,512", help="T,B,H (I = H)")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args()
    T, B, H = (int(v) for v in a.size.split(","))
    if a.child:
        if a.child[1] == "time":
            print(json.dumps(child_time(a.child[0], a.backend, T, B, H, a.reps)))
        else:
            print(json.dumps(child(a.child[0], a.child[1], a.backend, T, B, H, a.reps)))
        return
    # The buffer cache would hide nothing here (one forward measured), but keep it out.
    env = dict(os.environ, FUSEDRNN_CPU_CACHE_MB="0")
    print(f"no_grad forward, backend {a.backend}, T={T} B={B} I=H={H} fp32, "
          f"{os.cpu_count()} CPUs, fastest of {a.reps}")
    print(f"{'cell':5} {'':7} {'big peak MB':>12} {'RSS peak MB':>12} {'wall ms':>9} "
          f"{'CPU ms':>9}")
    def run(cell, what):
        out = subprocess.run([sys.executable, __file__, "--backend", a.backend, "--size", a.size,
                              "--reps", str(a.reps), "--child", cell, what],
                             env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    for cell in ("lstm", "gru"):
        res = {mode: run(cell, mode) for mode in ("before", "after")}
        times = run(cell, "time")
        for mode, r in res.items():
            print(f"{cell:5} {mode:7} {r['big_peak'] / MB:12.1f} {r['rss_peak'] / MB:12.1f} "
                  f"{times['wall'][mode] * 1e3:9.2f} {times['cpu'][mode] * 1e3:9.2f}")
        print(f"{'':5} {'y':7} {res['after']['y_bytes'] / MB:12.1f}   (the output itself)")


if __name__ == "__main__":
    main()
