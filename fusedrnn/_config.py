"""Which implementation the ops use: `with fusedrnn.backend("simt"): ...`.

"auto" (default): the CUDA kernels for CUDA tensors, the CPU backend for CPU tensors.
"cpu":  the CPU backend (CPU tensors only).
"simt": the CUDA kernels run on CPU threads through the SIMT layer (CPU tensors only).
"cuda": the CUDA kernels (CUDA tensors only).
The choice is per thread (a context variable) and is recorded by each forward call, so the
backward of a call runs on the backend its forward ran on.

Which algorithm the CUDA kernels use (backends "cuda" and "simt"): `with fusedrnn.algorithm(...)`.
"auto" (default): on CUDA, persistent when W_hh fits on chip and the batch is small (forward
              B <= 48, backward B <= 24: where the performance model predicts it no slower);
              one direction's inference forward as an H200 measured (csrc/auto_measured.h:
              H >= 1024 up to B = 16, GRU up to B = 8, fp32/fp64 LSTM at H >= 512 up to B = 8);
              else stepwise; under the SIMT backend, stepwise (tests pick kernels explicitly).
"persistent": one cooperative launch per layer and direction for the whole sequence, W_hh kept
              in shared memory (csrc/cuda/persistent.h); raises when W_hh does not fit.
"stepwise": the hoisted input GEMM, then one fused kernel per time step.
Also per thread (a context variable), recorded by each forward call for its backward. RNN
layers always run stepwise.
"""
import contextlib
import contextvars

BACKENDS = ("auto", "cpu", "simt", "cuda")
_backend = contextvars.ContextVar("fusedrnn_backend", default="auto")
ALGORITHMS = ("auto", "persistent", "stepwise")
_algorithm = contextvars.ContextVar("fusedrnn_algorithm", default="auto")


def get_backend() -> str:
    """The backend name in effect in this thread."""
    return _backend.get()


@contextlib.contextmanager
def backend(name: str):
    """Context manager that selects the backend of fusedrnn's ops inside its block."""
    if name not in BACKENDS:
        raise ValueError(f"fusedrnn.backend: unknown backend {name!r}; expected one of {BACKENDS}")
    token = _backend.set(name)
    try:
        yield name
    finally:
        _backend.reset(token)


def get_algorithm() -> str:
    """The algorithm name in effect in this thread."""
    return _algorithm.get()


@contextlib.contextmanager
def algorithm(name: str):
    """Context manager that selects the CUDA kernels' algorithm inside its block:
    "persistent", "stepwise" or "auto"."""
    if name not in ALGORITHMS:
        raise ValueError(
            f"fusedrnn.algorithm: unknown algorithm {name!r}; expected one of {ALGORITHMS}")
    token = _algorithm.set(name)
    try:
        yield name
    finally:
        _algorithm.reset(token)
