"""Says what `pip install -e .` is about to build and roughly how long it will take here.

Usage: python scripts/build_plan.py [--jobs N] [--log PATH]

Reads the same decision setup.py makes (setup.plan(): CUDA or CPU-only, archs, build folder),
asks ninja which objects are out of date (a dry run of the previous build's build.ninja), and
estimates the wall time from that build's .ninja_log (seconds per object) or, for a first build,
from the core-seconds a full build measured on this project's machine (2-core AMD EPYC).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Core-seconds of a first build, measured on a 2-core AMD EPYC (Zen 4), gcc 12, nvcc 13.0
# (2026-12-02, with the tensor-core kernels: a fresh clone's CUDA build for sm_80+sm_90 667 s
# alone, 730 core-seconds of .cpp and 520 of .cu; before them CPU-only 250-350 s, CUDA 551 s):
# the CPU backend + SIMT layer, and each CUDA arch on top (the .cu translation units).
CPU_CORE_S = 730
CUDA_CORE_S_PER_ARCH = 260
CPP_TU_S = 21            # one .cpp translation unit, on average
CUDA_TU_S_PER_ARCH = 29  # one .cu translation unit, per arch


def ninja_log_seconds(temp):
    """{object path: seconds} from the last run of each object in temp/.ninja_log."""
    out = {}
    try:
        with open(os.path.join(temp, ".ninja_log")) as f:
            for line in f:
                if line.startswith("#"):
                    continue
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 4:
                    out[parts[3]] = (int(parts[1]) - int(parts[0])) / 1000.0
    except OSError:
        pass
    return out


def dry_run(temp):
    """The output of `ninja -n` over a copy of the build's state, or None without a build.

    On a copy because ninja deletes a .ninja_log written by another ninja version ("build log
    version is too old/newer; starting over"), even in a dry run, and a lost log makes the next
    build recompile everything. build.ninja names every file by absolute path, so the copy
    checks the real objects. Same ninja as the build: the venv's (scripts/setup.sh puts it first
    on PATH), else PATH's."""
    import tempfile

    ninja = shutil.which("ninja", path=os.path.dirname(sys.executable)) or shutil.which("ninja")
    if not ninja or not os.path.exists(os.path.join(temp, "build.ninja")):
        return None
    with tempfile.TemporaryDirectory() as scratch:
        for f in ("build.ninja", ".ninja_log", ".ninja_deps"):
            if os.path.exists(os.path.join(temp, f)):
                shutil.copy2(os.path.join(temp, f), scratch)
        r = subprocess.run([ninja, "-C", scratch, "-n", "-d", "explain"], capture_output=True,
                           text=True)
    return r


def stale_objects(temp):
    """Outputs a ninja dry run would rebuild, or None when there is no previous build."""
    r = dry_run(temp)
    if r is None:
        return None
    outs = []
    for line in (r.stdout + r.stderr).splitlines():
        # "[3/7] c++ ... -c src.cpp -o /abs/path/x.o <flags>": the object follows -o.
        m = re.search(r"\s-o\s+(\S+)", line) if line.startswith("[") else None
        if m:
            outs.append(m.group(1))
    return outs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--log", default=".venv/fusedrnn-build.log")
    a = ap.parse_args()

    import setup  # ROOT/setup.py: main() runs only as a script

    pl = setup.plan()
    n_cu = sum(s.endswith(".cu") for s in pl["sources"])
    n_cpp = len(pl["sources"]) - n_cu
    archs = [x for x in pl["archs"].replace(",", ";").split(";") if x]
    if pl["with_cuda"]:
        what = (f"CUDA kernels for sm_{', sm_'.join(x.replace('.', '') for x in archs)} "
                f"({n_cu} .cu files) + CPU backend and SIMT layer ({n_cpp} .cpp files)")
    else:
        what = f"CPU-only: CPU backend and SIMT layer ({n_cpp} .cpp files; {pl['why_not']})"
    temp = os.path.join(ROOT, "build", pl["tag"], "temp")
    jobs = max(1, a.jobs)
    print(f"fusedrnn build: {what}, {jobs} parallel jobs, objects in build/{pl['tag']}/")

    stale = stale_objects(temp)
    if stale is None:
        core_s = CPU_CORE_S + (CUDA_CORE_S_PER_ARCH * len(archs) if pl["with_cuda"] else 0)
        # 2 cores measured; more cores help until the longest translation units dominate.
        est = max(core_s / jobs, core_s / 8)
        print(f"  first build here: about {est / 60:.0f} min with {jobs} jobs "
              f"(~{core_s / 60:.0f} core-minutes); later runs compile only what changed")
    elif not stale:
        print("  up to date: nothing to compile (a re-run of setup only re-installs, seconds)")
    else:
        secs = ninja_log_seconds(temp)
        n_arch = max(1, len(archs))
        # Objects without a timing (the log was lost): the measured averages per file kind.
        guess = lambda o: CUDA_TU_S_PER_ARCH * n_arch if o.endswith(".cuda.o") else CPP_TU_S
        per = [secs.get(o, guess(o)) for o in stale]
        core_s = sum(per)
        est = max(core_s / jobs, max(per))
        when = f"{est:.0f} s" if est < 90 else f"{est / 60:.0f} min"
        print(f"  {len(stale)} object(s) out of date: about {when} "
              f"(from the last build's timings)")
    if pl["with_cuda"]:
        print("  CPU-only instead (no CUDA kernels): FUSEDRNN_SKIP_CUDA=1; one arch only: "
              "TORCH_CUDA_ARCH_LIST=9.0")
    print(f"  compiler output: {a.log}")


if __name__ == "__main__":
    main()
