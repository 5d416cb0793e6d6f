"""Register, spill and shared-memory use of every CUDA kernel (stepwise and persistent), per arch.

Compiles one small .cu that includes the kernel headers of csrc/cuda and instantiates every kernel
for every dtype and precision, with `nvcc -Xptxas -v` for sm_80 and sm_90 (no GPU needed), and prints a row per
(kernel, dtype, arch): threads per block, registers per thread, spill stores / loads (bytes), stack
frame, and shared memory (static as ptxas reports it + the dynamic bytes the launcher requests).
The dynamic size is read from the same headers: for each kernel a probe kernel with a static
__shared__ array of Cfg::kSmemBytes is compiled alongside, and ptxas reports its size.

Exit status: 0 when nothing spills, 1 when any kernel spills, 2 when nvcc is missing or fails.

    python benchmarks/kernel_resources.py [--arch sm_80 --arch sm_90] [--keep DIR] [--json]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")

DTYPES = {"f32": "float", "f64": "double", "f16": "c10::Half", "bf16": "c10::BFloat16"}
# Stepwise kernels per dtype and precision (csrc/cuda/tile_mma.cuh; the launcher picks one per
# call, csrc/cuda/stepwise.h): label -> (storage type, forward Prec, backward Prec).
VARIANTS = {"f32": ("float", "kFfma", "kFfma"), "tf32": ("float", "kTf32", "kTf32"),
            "f64": ("double", "kFfma", "kFfma"), "f16": ("c10::Half", "kHalf", "kTf32x2"),
            "bf16": ("c10::BFloat16", "kHalf", "kTf32x2")}
# (kernel template, config template, params template), as in csrc/cuda/*_kernels.cuh.
KERNELS = [
    ("lstm_forward_step_kernel", "LstmForwardCfg", "LstmForwardParams"),
    ("lstm_backward_step_kernel", "LstmBackwardCfg", "LstmBackwardParams"),
    ("gru_forward_step_kernel", "GruForwardCfg", "GruForwardParams"),
    ("gru_backward_step_kernel", "GruBackwardCfg", "GruBackwardParams"),
    ("rnn_forward_step_kernel", "RnnForwardCfg", "RnnForwardParams"),  # x2: tanh, relu
    ("rnn_backward_step_kernel", "RnnBackwardCfg", "RnnBackwardParams"),
    ("grurb_rz_step_kernel", "GruRbCfg", "GruRbRzParams"),  # GRU, reset gate before
    ("grurb_n_step_kernel", "GruRbCfg", "GruRbNParams"),
    ("grurb_backward_zn_step_kernel", "GruRbCfg", "GruRbBackwardParams"),
    ("grurb_backward_r_step_kernel", "GruRbCfg", "GruRbBackwardParams"),
    ("ln_product_kernel", "LnCfg", "LnProductParams"),  # layer-normalised cells
    ("ln_product_back_kernel", "LnCfg", "LnProductParams"),
]
HEADERS = ["cuda/lstm_kernels.cuh", "cuda/gru_kernels.cuh", "cuda/rnn_kernels.cuh",
           "cuda/grurb_kernels.cuh", "cuda/layer_norm_kernels.cuh", "cuda/persistent_kernels.cuh"]
# The persistent kernels (csrc/cuda/persistent_kernels.cuh): kernel<S, A>(Params<S, A>), A the
# accumulation type. Their shared memory is sized at run time by the plan (persistent.h), so the
# table shows it as "plan".
# (kernel, its parameter type as a format of the template arguments)
PERSISTENT = [("lstm_fwd_kernel", "FwdLaunch<LstmFwdParams<{}>>"),
              ("lstm_bwd_kernel", "BwdLaunch<LstmBwdParams<{}>>"),
              ("gru_fwd_kernel", "FwdLaunch<GruFwdParams<{}>>"),
              ("gru_bwd_kernel", "BwdLaunch<GruBwdParams<{}>>")]
ACC = {"float": "float", "double": "double", "c10::Half": "float", "c10::BFloat16": "float"}


def _setup_module():
    """setup.py of the repository (find_cuda_home, wheel_cuda_includes), imported, not run."""
    sys.path.insert(0, ROOT)
    try:
        import setup as fsetup  # noqa: E402  (guarded by `if __name__ == "__main__"`)
    finally:
        sys.path.pop(0)
    return fsetup


def find_nvcc():
    """(cuda_home, nvcc path) or (None, None)."""
    try:
        home = _setup_module().find_cuda_home()
    except Exception:  # pragma: no cover - a broken setup.py must not hide nvcc
        home = None
    if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
        return home, os.path.join(home, "bin", "nvcc")
    nvcc = shutil.which("nvcc")
    return (os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), nvcc) if nvcc else (None, None)


def include_dirs(cuda_home):
    from torch.utils.cpp_extension import include_paths

    dirs = [CSRC] + include_paths()
    try:
        dirs.append(_setup_module().wheel_cuda_includes(cuda_home))  # cublas & co. headers
    except Exception:
        wi = os.path.join(ROOT, "build", "wheel_include")
        if os.path.isdir(wi):
            dirs.append(wi)
    dirs.append(sysconfig.get_paths()["include"])
    return dirs


def source():
    lines = [f'#include "{h}"' for h in HEADERS]
    lines.append("namespace fusedrnn { namespace kern {")
    probes = []
    for kname, cfg, params in KERNELS:
        for dshort, (ctype, fwd, bwd) in VARIANTS.items():
            backward = "backward" in kname or kname.endswith("_back_kernel")
            c = f"{cfg}<{ctype}, Prec::{bwd if backward else fwd}>"
            if kname == "rnn_forward_step_kernel":  # the activation is a template argument
                for act in ("Tanh", "Relu"):
                    lines.append(f"template __global__ void {kname}<{c}, cells::Act::{act}>"
                                 f"({params}<{ctype}>);")
            else:
                lines.append(f"template __global__ void {kname}<{c}>({params}<{ctype}>);")
            i = len(probes)
            probes.append((kname, dshort))
            # The dynamic shared memory the launcher requests, made visible to ptxas.
            lines.append(
                f"__global__ void frnn_smem_probe_{i}(unsigned char* out) {{\n"
                f"  __shared__ unsigned char s[{c}::kSmemBytes];\n"
                f"  s[threadIdx.x % {c}::kSmemBytes] = 1; __syncthreads();\n"
                f"  out[threadIdx.x] = s[(threadIdx.x * 7) % {c}::kSmemBytes];\n"
                f"}}\n"
                f"static_assert({c}::kThreads > 0, \"\");\n"
                f"__global__ void frnn_threads_probe_{i}_(unsigned char* out) {{\n"
                f"  __shared__ unsigned char t[{c}::kThreads];\n"
                f"  t[threadIdx.x % {c}::kThreads] = 1; __syncthreads();\n"
                f"  out[threadIdx.x] = t[(threadIdx.x * 5) % {c}::kThreads];\n"
                f"}}")
    lines.append("}}  // namespace fusedrnn::kern")
    lines.append("namespace fusedrnn { namespace cuda { namespace persistent_detail {")
    for kname, params in PERSISTENT:
        for ctype in DTYPES.values():
            targs = f"{ctype}, {ACC[ctype]}"
            lines.append(f"template __global__ void {kname}<{targs}>({params.format(targs)});")
    lines.append("} } }")
    return "\n".join(lines) + "\n", probes


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas(text):
    """{(mangled name, arch): dict(regs, spill_st, spill_ld, stack, smem)} from -Xptxas -v."""
    out, cur = {}, None
    for line in text.splitlines():
        m = _ENTRY.search(line)
        if m:
            cur = (m.group(1), m.group(2))
            out[cur] = dict(regs=0, spill_st=0, spill_ld=0, stack=0, smem=0)
            continue
        if cur is None:
            continue
        m = _SPILL.search(line)
        if m:
            out[cur].update(stack=int(m.group(1)), spill_st=int(m.group(2)),
                            spill_ld=int(m.group(3)))
        m = _USED.search(line)
        if m:
            out[cur]["regs"] = int(m.group(1))
            s = _SMEM.search(line)
            out[cur]["smem"] = int(s.group(1)) if s else 0
    return out


def identify(mangled, probes):
    """(kernel, dtype) of a mangled name, or ('probe'|'threads', index)."""
    m = re.search(r"frnn_smem_probe_(\d+)", mangled)
    if m:
        return "probe", int(m.group(1))
    m = re.search(r"frnn_threads_probe_(\d+)_", mangled)
    if m:
        return "threads", int(m.group(1))
    code = {"f": "f32", "d": "f64", "N3c104HalfE": "f16", "N3c108BFloat16E": "bf16"}
    if "persistent_detail" in mangled:
        pk = next((k for k, _ in PERSISTENT if k in mangled), None)
        m = re.search(r"kernelI(f|d|N3c104HalfE|N3c108BFloat16E)", mangled)
        return ("persistent " + pk if pk else None), (code[m.group(1)] if m else "?")
    kname = next((k for k, _, _ in KERNELS if k in mangled), None)
    if kname is None:
        return None, None
    # The tile shape the config alias names, with its storage type in Itanium mangling (f, d,
    # N3c104HalfE, N3c108BFloat16E): TileShape is FFMA, MmaShape tensor cores (fp32: TF32).
    m = re.search(r"(Tile|Mma)ShapeI(f|d|N3c104HalfE|N3c108BFloat16E)", mangled)
    code = {"Tilef": "f32", "Tiled": "f64", "Mmaf": "tf32", "MmaN3c104HalfE": "f16",
            "MmaN3c108BFloat16E": "bf16"}
    a = re.search(r"3ActELi?(\d)E", mangled) or re.search(r"ActE(\d)E", mangled)
    if a:  # the activation template argument of the RNN forward kernel
        kname += "<tanh>" if a.group(1) == "0" else "<relu>"
    return kname, code.get(m.group(1) + m.group(2), "?") if m else "?"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", help="sm_80, sm_90 (default both)")
    ap.add_argument("--keep", help="write the generated .cu and the ptxas log into this folder")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    archs = args.arch or ["sm_80", "sm_90"]

    cuda_home, nvcc = find_nvcc()
    if nvcc is None:
        print("kernel_resources: nvcc not found (set CUDA_HOME)", file=sys.stderr)
        return 2
    src, probes = source()
    work = args.keep or tempfile.mkdtemp(prefix="frnn_res_")
    os.makedirs(work, exist_ok=True)
    cu = os.path.join(work, "kernel_resources.cu")
    with open(cu, "w") as f:
        f.write(src)
    cmd = [nvcc, "-O3", "-std=c++20", "--expt-relaxed-constexpr", "-Xptxas", "-v", "-c", cu,
           "-o", os.path.join(work, "kernel_resources.o")]
    for a in archs:
        n = a.replace("sm_", "")
        cmd += ["-gencode", f"arch=compute_{n},code=sm_{n}"]
    for d in include_dirs(cuda_home):
        cmd += ["-I", d]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if args.keep:
        with open(os.path.join(work, "ptxas.log"), "w") as f:
            f.write(log)
    else:
        shutil.rmtree(work, ignore_errors=True)
    if proc.returncode != 0:
        print(log[-6000:], file=sys.stderr)
        print(f"kernel_resources: nvcc failed ({proc.returncode})", file=sys.stderr)
        return 2

    info = parse_ptxas(log)
    dyn, threads = {}, {}
    for (name, arch), v in info.items():
        kind, idx = identify(name, probes)
        if kind == "probe":
            dyn[(probes[idx], arch)] = v["smem"]
        elif kind == "threads":
            threads[(probes[idx], arch)] = v["smem"]
    rows = []
    for (name, arch), v in info.items():
        kname, dt = identify(name, probes)
        if kname in (None, "probe", "threads"):
            continue
        key = ((kname.split("<")[0], dt), arch)
        pers = kname.startswith("persistent ")
        rows.append(dict(kernel=kname, dtype=dt, arch=arch,
                         threads=256 if pers else threads.get(key, 0),
                         regs=v["regs"], spill_stores=v["spill_st"], spill_loads=v["spill_ld"],
                         stack=v["stack"], smem_static=v["smem"],
                         smem_dynamic="plan" if pers else dyn.get(key, 0)))
    order = {k: i for i, (k, _, _) in enumerate(KERNELS)}
    order.update({"persistent " + k: len(KERNELS) + i for i, (k, _) in enumerate(PERSISTENT)})
    labels = list(VARIANTS)
    rows.sort(key=lambda r: (order[r["kernel"].split("<")[0]], r["kernel"],
                             labels.index(r["dtype"]), r["arch"]))
    # + the second RNN activation
    expected = ((len(KERNELS) + 1) * len(VARIANTS) + len(PERSISTENT) * len(DTYPES)) * len(archs)
    if len(rows) != expected:
        print(f"kernel_resources: found {len(rows)} kernels in the ptxas output, expected "
              f"{expected}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        hdr = (f"{'kernel':<33} {'dtype':<5} {'arch':<6} {'thr':>4} {'regs':>4} {'spill st':>8} "
               f"{'spill ld':>8} {'stack':>5} {'smem st':>7} {'smem dyn':>8}")
        print(hdr)
        print("-" * len(hdr))
        for r in rows:
            print(f"{r['kernel']:<33} {r['dtype']:<5} {r['arch']:<6} {r['threads']:>4} "
                  f"{r['regs']:>4} {r['spill_stores']:>8} {r['spill_loads']:>8} {r['stack']:>5} "
                  f"{r['smem_static']:>7} {r['smem_dynamic']:>8}")
    spills = [r for r in rows if r["spill_stores"] or r["spill_loads"]]
    if spills:
        for r in spills:
            print(f"SPILL: {r['kernel']} {r['dtype']} {r['arch']}: {r['spill_stores']} B stores, "
                  f"{r['spill_loads']} B loads", file=sys.stderr)
        return 1
    # stderr under --json: stdout must stay one JSON document (gpu_check.py reads it).
    print(f"{len(rows)} kernels, no spills", file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
