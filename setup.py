"""Build of fusedrnn._C.

CUDAExtension when nvcc and a CUDA build of torch are both present, else CppExtension.
Whether a GPU is visible decides nothing.

Environment:
  FUSEDRNN_FORCE_CUDA=1   fail loudly if the CUDA part cannot be built
  FUSEDRNN_SKIP_CUDA=1    build CPU-only (the SIMT layer is still built)
  TORCH_CUDA_ARCH_LIST    overrides the default archs "8.0;9.0"
  CUDA_HOME               the toolkit; guessed (the folder with lib64/libcudart.so) when unset
  MAX_JOBS                parallel compile jobs (ninja)

Incremental: objects and the linked library live in build/<python>-<torch>-<cuda archs|cpu>/ (not in the
temporary folders an editable `pip install -e .` would use), so a re-run compiles only the
translation units whose sources or headers changed (ninja's dependency files) and relinks only
when an object changed; nothing changed means nothing is compiled.
"""
import glob
import os
import re
import shutil
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;9.0"


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _has_cudart(home):
    return bool(home) and any(
        os.path.exists(os.path.join(home, d, "libcudart.so")) for d in ("lib64", "lib")
    )


def find_cuda_home():
    """The toolkit folder that holds both bin/nvcc and lib64/libcudart.so.

    torch guesses CUDA_HOME from the nvcc on PATH; a wrapper script in /usr/local/bin makes that
    guess /usr/local, which has no libcudart. Resolve symlinks and wrappers instead.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = os.path.realpath(nvcc)
        candidates.append(os.path.dirname(os.path.dirname(real)))
        try:  # a shell wrapper that execs the real nvcc
            with open(real, "rb") as f:
                head = f.read(4096).decode("utf-8", "replace")
            for tok in head.split():
                if tok.endswith("/bin/nvcc"):
                    candidates.append(os.path.dirname(os.path.dirname(tok)))
        except OSError:
            pass
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for c in candidates:
        if c and _has_cudart(c) and os.path.exists(os.path.join(c, "bin", "nvcc")):
            return os.path.realpath(c)
    return None


def wheel_cuda_includes(cuda_home):
    """Headers ATen's CUDA headers include (cublas, cusparse, ...) that the toolkit lacks.

    They ship in the nvidia/*/include folders of the pip wheels torch depends on. Those folders also
    hold copies of the runtime headers of another patch release, so instead of adding them to the
    include path we link only the missing headers into build/wheel_include.
    """
    out = os.path.join(ROOT, "build", "wheel_include")
    have = set(os.listdir(os.path.join(cuda_home, "include")))
    dirs = []
    for p in sys.path:
        dirs += glob.glob(os.path.join(p, "nvidia", "*", "include"))
    os.makedirs(out, exist_ok=True)
    for d in dirs:
        for name in os.listdir(d):
            src, dst = os.path.join(d, name), os.path.join(out, name)
            if name in have or os.path.lexists(dst):
                continue
            os.symlink(src, dst)
    return out


def _headers():
    """Every header under csrc/: any change to one makes the extension out of date (ninja then
    recompiles only the translation units that include it)."""
    out = []
    for ext in ("h", "cuh"):
        out += glob.glob(os.path.join(ROOT, "csrc", "**", f"*.{ext}"), recursive=True)
    return sorted(out)


def persistent_build_ext(base, tag):
    """base with build_temp / build_lib fixed under build/<tag>/.

    setuptools' editable install points both at fresh temporary folders on every run, which made
    every `pip install -e .` a full rebuild. Kept folders let ninja see what is up to date, and
    let distutils skip the link when no object is newer than the library.
    """

    class PersistentBuildExt(base):
        def finalize_options(self):
            super().finalize_options()
            root = os.path.join(ROOT, "build", tag)
            self.build_temp = os.path.join(root, "temp")
            self.build_lib = os.path.join(root, "lib")

    return PersistentBuildExt


def plan():
    """What this environment builds: a dict with with_cuda, why_not (the reason for CPU-only),
    cuda_home, archs (TORCH_CUDA_ARCH_LIST or the default), tag (the build folder's name under
    build/) and sources. Shared with scripts/build_plan.py, which announces the build."""
    import torch

    force, skip = _flag("FUSEDRNN_FORCE_CUDA"), _flag("FUSEDRNN_SKIP_CUDA")
    if force and skip:
        sys.exit("FUSEDRNN_FORCE_CUDA and FUSEDRNN_SKIP_CUDA are both set")
    cuda_home = None if skip else find_cuda_home()
    why_not = None
    if skip:
        why_not = "FUSEDRNN_SKIP_CUDA=1"
    elif torch.version.cuda is None:
        why_not = f"torch {torch.__version__} is not a CUDA build"
    elif cuda_home is None:
        why_not = "no CUDA toolkit with bin/nvcc and lib64/libcudart.so found (set CUDA_HOME)"
    with_cuda = why_not is None
    if force and not with_cuda:
        sys.exit(f"FUSEDRNN_FORCE_CUDA=1 but CUDA cannot be built: {why_not}")
    archs = (os.environ.get("TORCH_CUDA_ARCH_LIST") or DEFAULT_ARCHS) if with_cuda else ""

    csrc = os.path.join(ROOT, "csrc")
    rel = lambda p: os.path.relpath(p, ROOT)
    sources = [rel(p) for p in sorted(glob.glob(os.path.join(csrc, "**", "*.cpp"), recursive=True))]
    if with_cuda:
        sources += [rel(p) for p in sorted(glob.glob(os.path.join(csrc, "**", "*.cu"), recursive=True))]

    return dict(with_cuda=with_cuda, why_not=why_not, cuda_home=cuda_home, archs=archs,
                tag=build_tag(torch.__version__, with_cuda, archs), sources=sources)


def build_tag(torch_version, with_cuda, archs):
    """The build folder's name under build/. What changes every object gets its own folder
    (Python, torch, CUDA or not, archs), so switching back and forth costs nothing."""
    py = f"py{sys.version_info[0]}{sys.version_info[1]}"
    torch_tag = torch_version.replace("+", "_")
    if isinstance(archs, str):
        archs = re.split(r"[;, ]+", archs)
    arch_tag = "sm" + "_".join(a.replace(".", "") for a in archs if a)
    return f"{py}-torch{torch_tag}-" + (f"cuda-{arch_tag}" if with_cuda else "cpu")


def main():
    import torch
    from torch.utils import cpp_extension as ce

    pl = plan()
    with_cuda, archs, tag, sources = pl["with_cuda"], pl["archs"], pl["tag"], pl["sources"]
    cuda_home = pl["cuda_home"]
    if not with_cuda:
        print(f"fusedrnn: building CPU-only ({pl['why_not']})", file=sys.stderr)
    if with_cuda:
        os.environ["CUDA_HOME"] = cuda_home
        ce.CUDA_HOME = cuda_home  # torch computed its own guess at import time
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs

    csrc = os.path.join(ROOT, "csrc")
    define = [
        f'-DFUSEDRNN_TORCH_VERSION="{torch.__version__}"',
        f'-DFUSEDRNN_ARCHS="{archs}"',
    ]
    if with_cuda:
        define.append("-DFUSEDRNN_WITH_CUDA=1")
    cxx = ["-O3", "-std=c++20", "-fopenmp"] + define
    include_dirs = [csrc]
    # --exclude-libs,ALL: where the compiler links libstdc++ statically (a GCC built to, as on
    # one H200 machine's image), keep that copy wholly private. Python's -Bsymbolic-functions
    # otherwise binds our calls to our copy while its data (the locale's facet ids) resolve to
    # the process's libstdc++.so: every number formatted into an error message then crashed.
    # With the usual shared libstdc++ it changes nothing.
    kwargs = dict(extra_link_args=["-fopenmp", "-Wl,--exclude-libs,ALL"])
    if with_cuda:
        include_dirs.append(wheel_cuda_includes(cuda_home))
        nvcc = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"] + define
        kwargs["extra_compile_args"] = {"cxx": cxx, "nvcc": nvcc}
        ext = ce.CUDAExtension("fusedrnn._C", sources, include_dirs=include_dirs, **kwargs)
    else:
        kwargs["extra_compile_args"] = {"cxx": cxx}
        ext = ce.CppExtension("fusedrnn._C", sources, include_dirs=include_dirs, **kwargs)
    # setup.py itself too: a changed flag must rebuild (ninja then sees the changed commands).
    ext.depends = _headers() + [os.path.join(ROOT, "setup.py")]

    setup(
        ext_modules=[ext],
        cmdclass={
            "build_ext": persistent_build_ext(ce.BuildExtension.with_options(use_ninja=True), tag)
        },
    )


if __name__ == "__main__":
    main()
