"""Micro-benchmark of the SIMT layer (a script, not a test): the cost of one launch of
16 blocks x 128 threads with 10 __syncthreads, per worker count.

    python tests/simt_bench.py [--blocks 16] [--threads 128] [--barriers 10] [--reps 50]
"""
import argparse
import statistics

from fusedrnn import _C as C


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=16)
    p.add_argument("--threads", type=int, default=128)
    p.add_argument("--barriers", type=int, default=10)
    p.add_argument("--reps", type=int, default=50)
    a = p.parse_args()
    resumes = a.blocks * a.threads * (a.barriers + 1)
    print(f"{a.blocks} blocks x {a.threads} threads, {a.barriers} barriers "
          f"({resumes} fiber resumes per launch)")
    for workers in (1, 0):
        C.simt_set_workers(workers)
        C._simt_test_bench(a.blocks, a.threads, a.barriers, 3)  # warm the stack pool
        C.simt_reset_stats()
        t = C._simt_test_bench(a.blocks, a.threads, a.barriers, a.reps)
        s = C.simt_stats()
        print(f"workers={C.simt_get_workers()}: min {min(t) * 1e3:.3f} ms, "
              f"median {statistics.median(t) * 1e3:.3f} ms, "
              f"{statistics.median(t) / resumes * 1e9:.1f} ns per resume; "
              f"{s['switches'] // a.reps} resumes/launch")
    C.simt_set_workers(0)


if __name__ == "__main__":
    main()
