"""The CPU backend's own fp32 GEMM (csrc/cpu/gemm.h) against torch.mm, through the test hook
torch.ops.fusedrnn_testing.cpu_gemm: odd sizes, both transposes, alpha/beta (beta = 0 must not
read C), leading dimensions larger than the width, every instruction set this CPU has, 1 and 2
threads."""

import pytest
import torch

import fusedrnn  # noqa: F401  (loads the extension, which registers the hook)

ISAS = {"blas": 0, "avx2": 1, "avx512": 2}
ODD = [1, 2, 7, 15, 17, 33, 129, 300]


def _isa_available(isa):
    c = torch.zeros(1, 1)
    return torch.ops.fusedrnn_testing.cpu_gemm(torch.ones(1, 1), torch.ones(1, 1), c, False, False,
                                               1.0, 0.0, ISAS[isa])


def _operand(rows, cols, gen, pad):
    """[rows, cols] view of a wider buffer (row stride cols + pad) holding fresh random values."""
    base = torch.randn(rows, cols + pad, generator=gen)
    return base[:, :cols]


def _check(isa, M, N, K, ta, tb, alpha, beta, pad, gen, bias=False, stream=False, packed=True):
    a = _operand(K, M, gen, pad) if ta else _operand(M, K, gen, pad)
    b = _operand(N, K, gen, pad) if tb else _operand(K, N, gen, pad)
    c = _operand(M, N, gen, pad)
    if beta == 0.0:
        c.fill_(float("nan"))  # beta = 0 must overwrite, not scale, C
    c0 = c.clone()
    opa = a.t() if ta else a
    opb = b.t() if tb else b
    expect = alpha * (opa.double() @ opb.double())
    if beta != 0.0:
        expect += beta * c0.double()
    bvec = torch.randn(N, generator=gen) if bias else None
    if bias:
        expect += bvec.double()
    base = c._base if c._base is not None else c
    guard = base[:, N:].clone()
    assert torch.ops.fusedrnn_testing.cpu_gemm(a, b, c, ta, tb, alpha, beta, ISAS[isa], bvec,
                                               stream, packed)
    tol = 1e-5 * max(K, 1) ** 0.5 * 4
    torch.testing.assert_close(c.double(), expect, rtol=tol, atol=tol)
    # the columns past N (the padding of the leading dimension) are untouched
    assert torch.equal(base[:, N:], guard)


@pytest.fixture(params=["blas", "avx2", "avx512"])
def isa(request):
    if not _isa_available(request.param):
        pytest.skip(f"this CPU has no {request.param}")
    return request.param


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_odd_sizes(isa, threads, ta, tb):
    gen = torch.Generator().manual_seed(1000 * ISAS[isa] + 10 * threads + 2 * ta + tb)
    for M, N, K in [(1, 1, 1), (1, 300, 129), (300, 1, 33), (17, 33, 15), (15, 129, 300),
                    (129, 17, 1)]:
        _check(isa, M, N, K, ta, tb, 1.0, 0.0, 0, gen)
    for _ in range(6):  # fresh random odd sizes, alpha/beta and leading-dimension padding
        M, N, K = (int(ODD[i]) for i in torch.randint(len(ODD), (3,), generator=gen))
        alpha = float(torch.empty(1).uniform_(-2, 2, generator=gen))
        beta = [0.0, 1.0, -0.5][int(torch.randint(3, (1,), generator=gen))]
        pad = int(torch.randint(0, 5, (1,), generator=gen))
        bias = bool(torch.randint(2, (1,), generator=gen))
        _check(isa, M, N, K, ta, tb, alpha, beta, pad, gen, bias)


def test_large_blocked(isa, threads):
    """Sizes that cross the K chunk, the row block and the parallel threshold."""
    gen = torch.Generator().manual_seed(7 + ISAS[isa])
    _check(isa, 8, 2048, 1031, False, True, 1.0, 1.0, 3, gen)   # per-step recurrent shape
    _check(isa, 611, 515, 260, False, True, 0.5, 0.0, 0, gen, True)  # hoisted input projection
    _check(isa, 260, 130, 1500, True, False, 1.0, 0.0, 1, gen)  # weight gradient (da^T x)
    # K over several slices (beta and bias applied once, by the first) with M over a row block
    _check(isa, 300, 70, 1100, True, False, -0.5, -0.5, 2, gen, True)
    _check(isa, 300, 70, 1100, False, False, 1.5, 1.0, 0, gen, True)
    # A in place with K over kKSliceDirect (2048): three slices, over two row blocks
    _check(isa, 70, 40, 4200, False, True, 0.5, -0.5, 1, gen, True)
    _check(isa, 9, 33, 2049, False, False, 1.0, 1.0, 0, gen)


def test_streamed_output(isa, threads):
    """With the stream hint, outputs of 16 MB and more take non-temporal stores for their full,
    aligned rows: aligned and unaligned rows, a partial last panel, one and two K chunks, beta 0
    (with bias) and 1."""
    gen = torch.Generator().manual_seed(11 + ISAS[isa])
    _check(isa, 2053, 2048, 300, False, True, 1.0, 0.0, 0, gen, True, True)  # aligned rows
    _check(isa, 2051, 2049, 700, False, False, 0.5, 0.0, 0, gen, False, True)  # 2 K chunks
    _check(isa, 2050, 2050, 600, False, True, 1.0, 1.0, 2, gen, True, True)


@pytest.mark.parametrize("tb", [False, True])
def test_thin_unpacked(isa, threads, tb):
    """Fewer than 32 rows on an unpacked B (a single time step's products): the thin kernels
    (gemm_thin.h) on AVX2/AVX-512, the BLAS path otherwise. Every row count (passes of 4 or 8
    rows and the remainders), odd N and K (vector tails, partial column blocks), alpha/beta/bias,
    padded leading dimensions, and a B of more than 2 MB, which two threads split by columns."""
    gen = torch.Generator().manual_seed(500 + 10 * ISAS[isa] + 2 * threads + tb)
    for M in range(1, 32):
        _check(isa, M, 300, 129, False, tb, 1.0, 0.0, 0, gen, packed=False)
    for N, K in [(1, 1), (7, 5), (17, 33), (65, 16), (129, 300), (64, 8), (2, 257)]:
        M = int(torch.randint(1, 32, (1,), generator=gen))
        alpha = float(torch.empty(1).uniform_(-2, 2, generator=gen))
        beta = [0.0, 1.0, -0.5][int(torch.randint(3, (1,), generator=gen))]
        pad = int(torch.randint(0, 5, (1,), generator=gen))
        _check(isa, M, N, K, False, tb, alpha, beta, pad, gen, bias=True, packed=False)
    _check(isa, 13, 1031, 700, False, tb, 1.0, 1.0, 3, gen, bias=True, packed=False)
    # More than 4 rows go column block by column block (kThinBlockFloats): several blocks and a
    # partial last one, at 64 columns (K = 1500) and at 640 (K = 100).
    _check(isa, 21, 333, 1500, False, tb, 1.0, 0.0, 1, gen, bias=True, packed=False)
    _check(isa, 9, 700, 100, False, tb, -0.5, 1.0, 0, gen, packed=False)


def test_zero_k(isa):
    c = torch.randn(3, 5)
    a, b = torch.empty(3, 0), torch.empty(0, 5)
    assert torch.ops.fusedrnn_testing.cpu_gemm(a, b, c, False, False, 1.0, 0.0, ISAS[isa])
    assert torch.equal(c, torch.zeros(3, 5))
