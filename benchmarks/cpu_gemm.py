"""GFLOP/s of the CPU backend's fp32 GEMM (csrc/cpu/gemm.h) against torch.mm at the LSTM shapes.

    python benchmarks/cpu_gemm.py [--threads N]

"step" rows: C[B,4H] = h[B,H] W_hh^T with W_hh packed once (the per-step recurrent product);
"hoisted" rows: one call C[T*B,4H] = x W_ih^T including the packing of W_ih;
"dx" rows: dx[T*B,H] = da[T*B,4H] W_ih[4H,H]; "dW" rows: dW[4H,H] = da^T x (A transposed)."""
import argparse
import time

import torch

import fusedrnn  # noqa: F401


def rate(fn, flops, min_time=0.3):
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_time:
        fn()
        n += 1
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return flops / best / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"threads={torch.get_num_threads()}")
    print(f"{'shape':<28}{'torch.mm':>10}{'ours':>10}{'ratio':>8}")
    reps = 20
    for B, H in [(1, 512), (8, 128), (8, 512), (64, 512), (8, 1024), (64, 1024), (8, 2048),
                 (64, 2048)]:
        a, w = torch.randn(B, H), torch.randn(4 * H, H)
        c = torch.empty(B, 4 * H)
        wt = w.t()
        flops = 2.0 * B * H * 4 * H
        t_ref = rate(lambda: [torch.mm(a, wt, out=c) for _ in range(reps)], flops * reps)
        t_our = rate(lambda: torch.ops.fusedrnn_testing.cpu_gemm_repeat(a, w, c, reps),
                     flops * reps)
        print(f"{f'step M={B} N={4*H} K={H}':<28}{t_ref:>10.1f}{t_our:>10.1f}{t_our/t_ref:>8.2f}")
    for T, B, H in [(100, 64, 512), (100, 8, 1024), (100, 64, 1024)]:
        M = T * B
        a, w = torch.randn(M, H), torch.randn(4 * H, H)
        c = torch.empty(M, 4 * H)
        flops = 2.0 * M * H * 4 * H
        t_ref = rate(lambda: torch.mm(a, w.t(), out=c), flops)
        t_our = rate(lambda: torch.ops.fusedrnn_testing.cpu_gemm(a, w, c, False, True, 1.0, 0.0,
                                                                 -1), flops)
        print(f"{f'hoisted M={M} N={4*H} K={H}':<28}{t_ref:>10.1f}{t_our:>10.1f}"
              f"{t_our/t_ref:>8.2f}")

    for T, B, H in [(100, 64, 512), (100, 8, 1024)]:
        M, G = T * B, 4 * H
        da, w, x = torch.randn(M, G), torch.randn(G, H), torch.randn(M, H)
        flops = 2.0 * M * G * H
        c = torch.empty(M, H)
        t_ref = rate(lambda: torch.mm(da, w, out=c), flops)
        t_our = rate(lambda: torch.ops.fusedrnn_testing.cpu_gemm(da, w, c, False, False, 1.0, 0.0,
                                                                 -1), flops)
        print(f"{f'dx M={M} N={H} K={G}':<28}{t_ref:>10.1f}{t_our:>10.1f}{t_our/t_ref:>8.2f}")
        c = torch.empty(G, H)
        t_ref = rate(lambda: torch.mm(da.t(), x, out=c), flops)
        t_our = rate(lambda: torch.ops.fusedrnn_testing.cpu_gemm(da, x, c, True, False, 1.0, 0.0,
                                                                 -1), flops)
        print(f"{f'dW M={G} N={H} K={M}':<28}{t_ref:>10.1f}{t_our:>10.1f}{t_our/t_ref:>8.2f}")


if __name__ == "__main__":
    main()
