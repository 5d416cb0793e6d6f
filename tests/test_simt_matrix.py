"""SIMT layer: the tensor-core and async-copy instructions (mma.sync, ldmatrix, cvt.rna.tf32,
cp.async) against the PTX ISA. The fragment tables below are transcribed from the PTX ISA's
"Matrix Fragments for mma.m16n8k16 / mma.m16n8k8" and the ldmatrix description, independently
of the emulation (csrc/simt/matrix.cpp); every element of every fragment is checked."""
import math

import numpy as np
import pytest
import torch

import fusedrnn
from fusedrnn import _C as C

pytestmark = pytest.mark.skipif(not fusedrnn.build_info()["simt"], reason="SIMT layer not built")

KINDS = ["bf16", "f16", "tf32"]
DTYPE = {"bf16": torch.bfloat16, "f16": torch.float16}


# ---- PTX fragment tables: (lane, element) -> (row, col); g = lane >> 2, t = lane % 4 ----------
def a_coord(kind, lane, i):
    g, t = lane >> 2, lane % 4
    if kind == "tf32":  # four .tf32 registers, one element each
        return (g if i in (0, 2) else g + 8), (t if i in (0, 1) else t + 4)
    row = g if (0 <= i < 2 or 4 <= i < 6) else g + 8  # eight .f16/.bf16 elements, two per register
    col = t * 2 + (i & 1) + (8 if i >= 4 else 0)
    return row, col


def b_coord(kind, lane, i):
    g, t = lane >> 2, lane % 4
    if kind == "tf32":
        return (t if i == 0 else t + 4), g
    return t * 2 + (i & 1) + (8 if i >= 2 else 0), g


def c_coord(lane, i):
    g, t = lane >> 2, lane % 4
    return (g if i < 2 else g + 8), t * 2 + (i & 1)


def k_of(kind):
    return 8 if kind == "tf32" else 16


def bits16(x, kind):
    return int(x.to(DTYPE[kind]).view(torch.int16).item()) & 0xFFFF


def bits32(x):
    return int(np.array([x], dtype=np.float32).view(np.uint32)[0])


def pack(kind, A, B, Cm, a_table=a_coord):
    """Per-lane registers of one case: a [32,4], b [32,2] (uint32 as int64), c [32,4] float."""
    a = np.zeros((32, 4), np.int64)
    b = np.zeros((32, 2), np.int64)
    c = np.zeros((32, 4), np.float32)
    for lane in range(32):
        if kind == "tf32":
            for i in range(4):
                a[lane, i] = bits32(float(A[a_table(kind, lane, i)]))
            for i in range(2):
                b[lane, i] = bits32(float(B[b_coord(kind, lane, i)]))
        else:
            for i in range(8):
                a[lane, i // 2] |= bits16(A[a_table(kind, lane, i)], kind) << (16 * (i % 2))
            for i in range(4):
                b[lane, i // 2] |= bits16(B[b_coord(kind, lane, i)], kind) << (16 * (i % 2))
        for i in range(4):
            c[lane, i] = float(Cm[c_coord(lane, i)])
    return a, b, c


def unpack_d(d):
    D = torch.full((16, 8), float("nan"), dtype=torch.float64)
    for lane in range(32):
        for i in range(4):
            D[c_coord(lane, i)] = float(d[lane, i])
    return D


def as_i32(x):
    return torch.from_numpy(np.asarray(x, np.int64).astype(np.uint32).view(np.int32))


def run_mma(kind, cases, **kw):
    """cases: list of (A [16,K], B [K,8], C [16,8]) float64 tensors -> list of D [16,8]."""
    packed = [pack(kind, *case, **{k: v for k, v in kw.items() if k == "a_table"}) for case in cases]
    a = as_i32(np.stack([p[0] for p in packed]))
    b = as_i32(np.stack([p[1] for p in packed]))
    c = torch.from_numpy(np.stack([p[2] for p in packed]))
    d = C._simt_test_mma(kind, a, b, c, in_place=kw.get("in_place", False))
    return [unpack_d(d[x]) for x in range(len(cases))]


def rand_int(gen, *shape, lo=-8, hi=9):
    return torch.randint(lo, hi, shape, generator=gen).to(torch.float64)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("in_place", [False, True])
def test_mma_is_the_matrix_product(kind, in_place):
    # Small integers: every product and sum is exact in every format, so any misplaced element
    # changes the result.
    gen = torch.Generator().manual_seed(11)
    K = k_of(kind)
    cases = [(rand_int(gen, 16, K), rand_int(gen, K, 8), rand_int(gen, 16, 8)) for _ in range(4)]
    for (A, B, Cm), D in zip(cases, run_mma(kind, cases, in_place=in_place)):
        assert torch.equal(D, A @ B + Cm)


@pytest.mark.parametrize("kind", KINDS)
def test_mma_every_fragment_element(kind):
    # One case per element of A, of B and of C: a single nonzero there, the other operands
    # distinct integers, so the product says exactly where the emulation put that element.
    gen = torch.Generator().manual_seed(12)
    K = k_of(kind)
    Bfull, Afull = rand_int(gen, K, 8, lo=1, hi=30), rand_int(gen, 16, K, lo=1, hi=30)
    cases = []
    for m in range(16):
        for k in range(K):
            A = torch.zeros(16, K, dtype=torch.float64)
            A[m, k] = 1
            cases.append((A, Bfull, torch.zeros(16, 8, dtype=torch.float64)))
    for k in range(K):
        for n in range(8):
            B = torch.zeros(K, 8, dtype=torch.float64)
            B[k, n] = 1
            cases.append((Afull, B, torch.zeros(16, 8, dtype=torch.float64)))
    for m in range(16):
        for n in range(8):
            Cm = torch.zeros(16, 8, dtype=torch.float64)
            Cm[m, n] = m * 8 + n + 1
            cases.append((torch.zeros(16, K, dtype=torch.float64),
                          torch.zeros(K, 8, dtype=torch.float64), Cm))
    for (A, B, Cm), D in zip(cases, run_mma(kind, cases)):
        assert torch.equal(D, A @ B + Cm)


@pytest.mark.parametrize("kind", KINDS)
def test_a_wrong_table_is_caught(kind):
    # The check above has teeth: packing A with two fragment entries swapped gives a different
    # product (this is what a wrong lane mapping in the emulation looks like from outside).
    def swapped(kind_, lane, i):
        j = {1: 2, 2: 1}.get(i, i) if lane == 5 else i
        return a_coord(kind_, lane, j)

    gen = torch.Generator().manual_seed(13)
    K = k_of(kind)
    case = (rand_int(gen, 16, K, lo=1, hi=30), rand_int(gen, K, 8, lo=1, hi=30),
            rand_int(gen, 16, 8))
    (D,) = run_mma(kind, [case], a_table=swapped)
    assert not torch.equal(D, case[0] @ case[1] + case[2])


@pytest.mark.parametrize("kind", KINDS)
def test_mma_random_floats(kind):
    gen = torch.Generator().manual_seed(14)
    K = k_of(kind)
    cases = []
    for _ in range(3):
        A, B = torch.randn(16, K, generator=gen), torch.randn(K, 8, generator=gen)
        if kind == "tf32":  # what the kernels feed: rounded by cvt.rna.tf32
            A, B = tf32_round(A), tf32_round(B)
        else:
            A, B = A.to(DTYPE[kind]).float(), B.to(DTYPE[kind]).float()
        cases.append((A.double(), B.double(), torch.randn(16, 8, generator=gen).double()))
    for (A, B, Cm), D in zip(cases, run_mma(kind, cases)):
        torch.testing.assert_close(D, A @ B + Cm, rtol=1e-6, atol=1e-6)


def test_mma_tf32_ignores_the_low_13_bits():
    # The tensor cores read sign, exponent and 10 mantissa bits of a .tf32 register.
    gen = torch.Generator().manual_seed(15)
    A, B, Cm = rand_int(gen, 16, 8, lo=1, hi=30), rand_int(gen, 8, 8, lo=1, hi=30), rand_int(gen, 16, 8)
    noisy = lambda x: torch.from_numpy(  # noqa: E731  (low bits set, value unchanged above them)
        (x.numpy().astype(np.float32).view(np.uint32) | np.uint32(0x1FFF)).view(np.float32)).double()
    (D,) = run_mma("tf32", [(noisy(A), noisy(B), Cm)])
    assert torch.equal(D, A @ B + Cm)


def tf32_round(x):
    """cvt.rna.tf32.f32 from its definition: the nearer of the two neighbours with 10 mantissa
    bits, ties away from zero (computed on values, not with the emulation's bit trick)."""
    out = []
    for v in x.flatten().tolist():
        v = float(np.float32(v))
        if not math.isfinite(v) or v == 0:
            out.append(v)
            continue
        e = math.frexp(abs(v))[1]  # |v| = f * 2**e, f in [0.5, 1)
        ulp = 2.0 ** (max(e, -125) - 11)
        lo = math.floor(abs(v) / ulp) * ulp
        hi = lo + ulp
        r = hi if abs(v) - lo >= hi - abs(v) else lo
        out.append(math.copysign(r, v))
    return torch.tensor(out, dtype=torch.float32).reshape(x.shape)


def test_to_tf32_rounds_to_nearest_ties_away():
    gen = torch.Generator().manual_seed(16)
    x = torch.cat([torch.randn(500, generator=gen) * 10.0 ** torch.randint(-30, 30, (500,), generator=gen),
                   torch.tensor([1.0, -1.0, 0.0, -0.0, 3.0e-39, -2.5e-40])])
    bits = x.numpy().view(np.uint32).copy()
    ties = torch.from_numpy(((bits[:100] & np.uint32(0xFFFFE000)) | np.uint32(0x1000)).view(np.float32))
    below = torch.from_numpy(((bits[:100] & np.uint32(0xFFFFE000)) | np.uint32(0x0FFF)).view(np.float32))
    x = torch.cat([x, ties, below])
    got = C._simt_test_tf32(x).numpy().view(np.float32)
    want = tf32_round(x).numpy()
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    special = torch.tensor([float("inf"), float("-inf"), float("nan")])
    got = C._simt_test_tf32(special).numpy().view(np.float32)
    assert got[0] == np.inf and got[1] == -np.inf and np.isnan(got[2])


# ---- ldmatrix ---------------------------------------------------------------------------------
def ldmatrix_expected(tile, row_off, num, trans):
    """Lane l, register i: row l/4, columns 2(l%4), 2(l%4)+1 of matrix i, whose row r starts at
    lane 8i+r's address (.trans: rows 2(l%4), 2(l%4)+1 of column l/4), low half first."""
    out = np.full((32, 4), -1, np.int64)
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for i in range(num):
            def elem(r, c):
                return int(tile[row_off[8 * i + r] + c]) & 0xFFFF
            lo, hi = (elem(2 * t, g), elem(2 * t + 1, g)) if trans else (elem(g, 2 * t), elem(g, 2 * t + 1))
            out[lane, i] = lo | hi << 16
    return as_i32(out)


@pytest.mark.parametrize("num", [1, 2, 4])
@pytest.mark.parametrize("trans", [False, True])
def test_ldmatrix(num, trans):
    gen = torch.Generator().manual_seed(20 + num)
    rows = 48
    tile = torch.randint(-32768, 32767, (rows * 8,), generator=gen, dtype=torch.int32).to(torch.int16)
    # Each lane points at a random row (rows are 8 words = 16 bytes): scattered, not consecutive.
    row_off = (torch.randperm(rows, generator=gen)[:32] * 8).to(torch.int32)
    got = C._simt_test_ldmatrix(tile, row_off, num, trans)
    assert torch.equal(got, ldmatrix_expected(tile.tolist(), row_off.tolist(), num, trans))


def test_ldmatrix_address_checks():
    tile = torch.arange(256, dtype=torch.int16)
    off = torch.arange(32, dtype=torch.int32) * 8 % 256
    with pytest.raises(RuntimeError, match="16-byte aligned"):
        C._simt_test_ldmatrix(tile, off + 4, 4)  # rows 8 bytes off
    far = off.clone()
    far[20] = 256  # one row past the end of shared memory, passed by lane 20
    with pytest.raises(RuntimeError, match="inside the block's dynamic shared memory"):
        C._simt_test_ldmatrix(tile, far, 4)
    C._simt_test_ldmatrix(tile, far, 2)  # .x2 reads lanes 0-15's addresses only


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("ld", [16, 24])
def test_ldmatrix_feeds_mma(dtype, ld):
    # The staging every tensor-core kernel uses: A row-major and W [n][k] in shared memory, one
    # ldmatrix.x4 for A's fragment, one .x2 for B = W^T's: the product a @ w^T.
    gen = torch.Generator().manual_seed(30)
    a, w = torch.randn(16, 16, generator=gen).to(dtype), torch.randn(8, 16, generator=gen).to(dtype)
    d = C._simt_test_ldmatrix_mma(a, w, ld)
    torch.testing.assert_close(d.double(), a.double() @ w.double().T, rtol=1e-6, atol=1e-6)


def test_mma_needs_the_whole_warp():
    z = torch.zeros(1, 32, 4, dtype=torch.int32)
    with pytest.raises(RuntimeError, match="needs all 32 lanes"):
        C._simt_test_mma("bf16", z, torch.zeros(1, 32, 2, dtype=torch.int32), z.float(), exit_lane=7)


# ---- cp.async ---------------------------------------------------------------------------------
@pytest.mark.parametrize("nbytes", [4, 8, 16])
@pytest.mark.parametrize("wait_n", [0, 1, 2])
def test_cp_async_groups(nbytes, wait_n):
    groups, words = 3, nbytes // 4
    src = torch.arange(1, groups * 32 * words + 2, dtype=torch.int32) * 7
    before, mid, after = C._simt_test_cp_async(src, nbytes, groups, wait_n)
    first = src[: groups * 32 * words].view(groups * 32, words)[:, 0]
    # Nothing is visible before a wait (fresh shared memory reads as all ones).
    assert torch.equal(before, torch.full_like(before, -1))
    # wait_group n: all but the newest n groups done.
    done = (groups - wait_n) * 32
    assert torch.equal(mid[:done], first[:done])
    assert torch.equal(mid[done:], torch.full_like(mid[done:], -1))
    assert torch.equal(after, src[: groups * 32 * words])


def test_cp_async_zero_fill():
    src = torch.arange(1, 2 * 32 * 4 + 2, dtype=torch.int32)
    _, _, after = C._simt_test_cp_async(src, 16, 2, 0, zero_every=5)
    want = src[: 2 * 32 * 4].view(64, 4).clone()
    want[torch.arange(64) % 5 == 0] = 0
    assert torch.equal(after.view(64, 4), want)


def test_cp_async_alignment():
    src = torch.arange(1, 32 * 4 + 8, dtype=torch.int32)
    with pytest.raises(RuntimeError, match="aligned to 16"):
        C._simt_test_cp_async(src, 16, 1, 0, misalign=True)
    C._simt_test_cp_async(src, 4, 1, 0, misalign=True)  # 4-byte copies need 4-byte alignment only
