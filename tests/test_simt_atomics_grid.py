"""SIMT layer: atomics under contention (blocks on different OS threads) and the grid barrier of
cooperative launches."""
import pytest
import torch

import fusedrnn
from fusedrnn import _C as C

pytestmark = pytest.mark.skipif(not fusedrnn.build_info()["simt"], reason="SIMT layer not built")


@pytest.fixture(autouse=True)
def _restore():
    yield
    C.simt_set_seed(None)
    C.simt_set_workers(0)


@pytest.mark.parametrize("cooperative", [False, True], ids=["normal", "cooperative"])
# Enough iterations that blocks on different OS threads overlap: a non-atomic add loses updates.
@pytest.mark.parametrize("blocks,threads,iters", [(64, 128, 100), (8, 256, 200)])
def test_atomics_exact_totals(blocks, threads, iters, cooperative):
    c = C._simt_test_atomics(blocks, threads, iters, cooperative)
    g = blocks * threads
    n = g * iters
    assert c["i_add"] == n
    assert c["u_add"] == 2 * n
    assert c["ull_add"] == n << 33
    assert c["f_add"] == float(n)  # integer-valued floats below 2^24 add exactly
    assert c["d_add"] == n * 0.25
    assert c["i_sub"] == -3 * n
    assert c["u_sub"] == (1 << 30) - n
    assert c["i_max"] == g * iters - 1
    assert c["i_min"] == -(g * iters - 1)
    assert c["cas_add"] == n
    assert c["locked_plain"] == n  # plain += under an atomicCAS spin lock
    assert c["exch_sum"] == iters * g * (g + 1) // 2
    assert c["inc"] == n % 1000  # atomicInc wraps to 0 past its limit (999)
    assert c["h_add"] == float(blocks * (threads // 32) * min(iters, 2))


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_atomics_any_worker_count(workers):
    C.simt_set_workers(workers)
    c = C._simt_test_atomics(16, 64, 8, True)
    assert c["i_add"] == 16 * 64 * 8 and c["locked_plain"] == 16 * 64 * 8


def grid_reference(blocks, phases):
    buf = [[b + 1 for b in range(blocks)]]
    for _ in range(phases):
        s = sum(buf[-1])
        buf.append([s + b for b in range(blocks)])
    return torch.tensor(buf)


@pytest.mark.parametrize("seed", [None, 0, 1, 2])
@pytest.mark.parametrize("blocks,threads,phases", [(2, 32, 3), (7, 64, 5), (16, 128, 4)])
def test_grid_barrier_multi_phase_exchange(blocks, threads, phases, seed):
    C.simt_set_seed(seed)
    assert torch.equal(C._simt_test_grid(blocks, threads, phases), grid_reference(blocks, phases))


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_grid_barrier_any_worker_count(workers):
    C.simt_set_workers(workers)
    assert torch.equal(C._simt_test_grid(9, 32, 3), grid_reference(9, 3))


def test_grid_barrier_outside_cooperative_launch_is_an_error():
    with pytest.raises(RuntimeError, match="not cooperative"):
        C._simt_test_grid(4, 32, 2, cooperative=False)
