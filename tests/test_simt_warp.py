"""SIMT layer: warp shuffles, votes and __syncwarp against their definitions (CUDA programming
guide; source lanes per PTX shfl.sync), including width < 32, partial masks and partial warps."""
import pytest
import torch

import fusedrnn
from fusedrnn import _C as C

pytestmark = pytest.mark.skipif(not fusedrnn.build_info()["simt"], reason="SIMT layer not built")

FULL = 0xFFFFFFFF
PARTIAL = 0x0F0F00FF


@pytest.fixture(autouse=True)
def _restore():
    yield
    C.simt_set_seed(None)


def shfl_reference(op, vals, arg, width, mask, threads, per_lane=0):
    """Expected output and which entries CUDA leaves undefined (source lane not taking part)."""
    out, undefined = vals.clone(), torch.zeros(len(vals), dtype=torch.bool)
    for g in range(len(vals)):
        t = g % threads
        lane = t % 32
        if not mask >> lane & 1:
            continue
        base = g - lane
        lanes_in_warp = min(32, threads - (t - lane))
        group = mask & ((1 << lanes_in_warp) - 1)
        b = (arg + per_lane * lane if op == "idx" else arg) & 31
        lo = lane & ~(width - 1)
        hi = lo + width - 1
        if op == "idx":
            j = lo | (b & (width - 1))
        elif op == "up":
            j = lane - b if lane - b >= lo else None
        elif op == "down":
            j = lane + b if lane + b <= hi else None
        else:
            j = lane ^ b if lane ^ b <= hi else None
        if j is None:
            continue  # keeps its own value
        if group >> j & 1:
            out[g] = vals[base + j]
        else:
            undefined[g] = True
    return out, undefined


ARGS = {"idx": [(3, 0), (5, 7)], "up": [(1, 0), (5, 0)], "down": [(1, 0), (6, 0)],
        "xor": [(1, 0), (7, 0), (16, 0)]}
CASES = [(op, a, p) for op, lst in ARGS.items() for a, p in lst]


def _check(op, x, arg, width, mask, threads, per_lane=0, as_unsigned=False):
    out = C._simt_test_shfl(op, x, arg, width, mask, threads, per_lane, as_unsigned)
    want, undefined = shfl_reference(op, x, arg, width, mask, threads, per_lane)
    assert torch.equal(out[~undefined], want[~undefined])
    if undefined.any():  # documented: all bits set (NaN / -1)
        u = out[undefined]
        assert (u.isnan().all() if u.is_floating_point() else (u == -1).all())


@pytest.mark.parametrize("threads", [64, 48])
@pytest.mark.parametrize("mask", [FULL, PARTIAL], ids=["full", "partial"])
@pytest.mark.parametrize("width", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("op,arg,per_lane", CASES)
def test_shuffle_matches_definition(op, arg, per_lane, width, mask, threads):
    x = torch.randint(-(2**31), 2**31 - 1, (2 * threads,), dtype=torch.int32)
    _check(op, x, arg, width, mask, threads, per_lane)


@pytest.mark.parametrize("dtype", ["int32", "uint32", "int64", "float32", "float64", "float16"])
@pytest.mark.parametrize("width", [8, 32])
@pytest.mark.parametrize("op,arg,per_lane", CASES[::2])
def test_shuffle_value_types(dtype, op, arg, per_lane, width):
    n = 64
    if dtype in ("int32", "uint32"):
        x = torch.randint(-(2**31), 2**31 - 1, (n,), dtype=torch.int32)
    elif dtype == "int64":
        x = torch.randint(-(2**62), 2**62, (n,), dtype=torch.int64)  # needs all 8 bytes
    else:
        x = torch.randn(n, dtype=getattr(torch, dtype)) * 1e3
    _check(op, x, arg, width, FULL, n, per_lane, as_unsigned=dtype == "uint32")


def test_shuffle_warp_reduction():
    x = torch.arange(64, dtype=torch.int32)
    v = x.clone()
    for off in (16, 8, 4, 2, 1):
        v = v + C._simt_test_shfl("xor", v, off, 32, FULL, 64)
    assert torch.equal(v, x.view(2, 32).sum(1).repeat_interleave(32).int())


def vote_reference(op, pred, mask, threads):
    out = torch.full((len(pred),), -1, dtype=torch.int64)
    for g in range(len(pred)):
        t = g % threads
        lane = t % 32
        base = g - lane
        n = min(32, threads - (t - lane))
        live = (1 << n) - 1
        if op == "activemask":
            out[g] = live
            continue
        if not mask >> lane & 1:
            continue
        group = mask & live
        ballot = sum(1 << j for j in range(n) if group >> j & 1 and pred[base + j])
        out[g] = {"ballot": ballot, "any": int(ballot != 0), "all": int(ballot == group)}[op]
    return out


@pytest.mark.parametrize("threads", [64, 48])
@pytest.mark.parametrize("mask", [FULL, PARTIAL], ids=["full", "partial"])
@pytest.mark.parametrize("density", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("op", ["ballot", "any", "all", "activemask"])
def test_votes_match_definition(op, density, mask, threads):
    pred = (torch.rand(2 * threads) < density).int()
    if density == 0.5:
        pred[0], pred[1] = 1, 0
    out = C._simt_test_vote(op, pred, mask, threads)
    assert torch.equal(out, vote_reference(op, pred, mask, threads))


def syncwarp_reference(x, mask):
    out = x.clone()
    for w in range(0, len(x), 32):
        lanes = [l for l in range(32) if mask >> l & 1]
        v = {l: int(x[w + l]) for l in lanes}
        for _ in range(2):
            v = {l: v[lanes[(i + 1) % len(lanes)]] * 2 for i, l in enumerate(lanes)}
        for l in lanes:
            out[w + l] = v[l]
    return out


@pytest.mark.parametrize("seed", [None, 0, 1, 2])
@pytest.mark.parametrize("mask", [FULL, 0x55555555, 0x0000FFFF, 0x80000001])
def test_syncwarp_orders_shared_memory(mask, seed):
    C.simt_set_seed(seed)
    x = torch.randint(-1000, 1000, (128,), dtype=torch.int32)
    assert torch.equal(C._simt_test_syncwarp(x, 128, mask), syncwarp_reference(x, mask))


def test_syncwarp_missing_is_wrong():
    x = torch.randint(-1000, 1000, (128,), dtype=torch.int32)
    assert not torch.equal(C._simt_test_syncwarp(x, 128, FULL, skip_sync=True),
                           syncwarp_reference(x, FULL))
