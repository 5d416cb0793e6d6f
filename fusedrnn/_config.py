"""Which implementation the ops use: `with fusedrnn.backend("simt"): ...`.

"auto" (default): the CUDA kernels for CUDA tensors, the CPU backend for CPU tensors.
"cpu":  the CPU backend (CPU tensors only).
"simt": the CUDA kernels run on CPU threads through the SIMT layer (CPU tensors only).
"cuda": the CUDA kernels (CUDA tensors only).
The choice is per thread (a context variable) and is recorded by each forward call, so the
backward of a call runs on the backend its forward ran on.
"""
import contextlib
import contextvars

BACKENDS = ("auto", "cpu", "simt", "cuda")
_backend = contextvars.ContextVar("fusedrnn_backend", default="auto")


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
