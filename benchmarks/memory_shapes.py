"""Resident memory of a loop of LSTM calls whose shapes change every call: torch.nn vs fusedrnn.

    python benchmarks/memory_shapes.py [--set small|large] [--rounds N] [--mode inference|training]

Each implementation runs in its own fresh process (so neither sees the other's freed memory):
it builds one LSTM, then cycles through a set of (T, B) shapes for --rounds rounds, and reports
the resident set size (VmRSS) before the first call and after each round. "extra" is the RSS after
the last round minus the RSS before the first call (the model built, nothing run): what the loop
leaves resident, allocators' caches and heap growth included. "over warm" subtracts instead
the RSS after one call of the first shape; that baseline differs between the two (torch.nn's
first call grows glibc's heap by ~20 MB that fusedrnn's big buffers grow only later, over
several shapes), so it is printed for reference only.
Sets: small = 20 shapes of T 10-100, B 1-64 at H=256; large = 16 shapes whose forward
activations take ~1-300 MB at H=512 (a grid: some sizes coincide); random = 16 shapes of T
20-200, B 1-256 at H=512.
"""
import argparse
import json
import os
import subprocess
import sys

SETS = {
    "small": dict(H=256, shapes=[(10 + 5 * i, 1 + 3 * i) for i in range(20)]),
    "large": dict(H=512, shapes=[(int(20 + 180 * (i % 4) / 3), [1, 16, 64, 256][i // 4])
                                 for i in range(16)]),
    # T in 20..200 and B in 1..256 drawn once (seeded): sizes rarely coincide, unlike "large",
    # whose B = 1, 16, 64, 256 makes some [T*B, H] tensors exactly the size of others' gates.
    "random": dict(H=512, shapes=[(20 + (97 * i) % 181, 1 + (61 * i + 17) % 256)
                                  for i in range(16)]),
}


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(impl, which, rounds, mode):
    import torch

    import fusedrnn

    torch.manual_seed(0)
    cfg = SETS[which]
    H = cfg["H"]
    cls = torch.nn.LSTM if impl == "torch" else fusedrnn.LSTM
    m = cls(H, H)
    train = mode == "training"

    def call(T, B):
        x = torch.randn(T, B, H, requires_grad=train)
        if train:
            y, _ = m(x)
            y.sum().backward()
            m.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                m(x)

    start = rss_mb()
    call(*cfg["shapes"][0])
    warm = rss_mb()
    per_round = []
    for _ in range(rounds):
        for T, B in cfg["shapes"]:
            call(T, B)
        per_round.append(rss_mb())
    print(json.dumps(dict(impl=impl, start=start, warm=warm, rounds=per_round,
                          extra=per_round[-1] - start, over_warm=per_round[-1] - warm)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=SETS, default="small")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mode", choices=("inference", "training"), default="training")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.set, a.rounds, a.mode)
    res = {}
    for impl in ("torch", "fusedrnn"):
        r = subprocess.run([sys.executable, __file__, "--child", impl, "--set", a.set, "--rounds",
                            str(a.rounds), "--mode", a.mode], capture_output=True, text=True,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if r.returncode != 0:
            print(r.stderr[-2000:], file=sys.stderr)
            return 1
        res[impl] = json.loads(r.stdout.strip().splitlines()[-1])
    for impl, d in res.items():
        rounds = " ".join(f"{v:.0f}" for v in d["rounds"])
        print(f"{impl:8} start {d['start']:.0f} MB, warm {d['warm']:.0f} MB, after each round "
              f"{rounds} MB: extra {d['extra']:+.0f} MB (over warm {d['over_warm']:+.0f} MB)")
    t, f = res["torch"]["extra"], res["fusedrnn"]["extra"]
    print(f"fusedrnn extra / torch.nn extra: {f / t:.2f}" if t > 0 else "torch.nn extra <= 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
