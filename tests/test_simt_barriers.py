"""SIMT layer: block barriers, shared memory, built-ins, the seeded schedule, barrier misuse and
exceptions in kernel threads. Kernels live in csrc/simt/selftest_kernels.h."""
import pytest
import torch

import fusedrnn
from fusedrnn import _C as C

pytestmark = pytest.mark.skipif(not fusedrnn.build_info()["simt"], reason="SIMT layer not built")

SEEDS = [None, 0, 1, 2, 3, 4, 5, 6, 7]


@pytest.fixture(autouse=True)
def _restore():
    yield
    C.simt_set_seed(None)
    C.simt_set_arch("sm_90")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threads", [32, 128, 1024])
def test_tree_reduce_across_barrier_phases(seed, threads):
    C.simt_set_seed(seed)
    x = torch.randint(-1000, 1000, (5 * threads,)).float()  # exact sums in fp32
    out = C._simt_test_reduce(x, threads)
    assert torch.equal(out, x.view(5, threads).sum(1))


@pytest.mark.parametrize("seed", SEEDS)
def test_rotate_orders_reads_and_writes(seed):
    C.simt_set_seed(seed)
    threads, rounds = 96, 5
    x = torch.randperm(3 * threads, dtype=torch.int32)
    out = C._simt_test_rotate(x, threads, rounds)
    idx = (torch.arange(threads) + rounds) % threads
    assert torch.equal(out.view(3, threads), x.view(3, threads)[:, idx])


def test_rotate_without_second_barrier_is_wrong():
    x = torch.randperm(96, dtype=torch.int32)
    out = C._simt_test_rotate(x, 96, 5, skip_second_sync=True)
    assert not torch.equal(out, x[(torch.arange(96) + 5) % 96])


def _neighbor_expected(x, threads):
    v = x.view(-1, threads)
    prev = torch.cat([torch.zeros(v.shape[0], 1), v[:, :-1]], 1)
    return (v + prev).view(-1)


def test_missing_syncthreads_is_caught_by_a_seed():
    threads = 64
    x = torch.rand(4 * threads) + 1
    want = _neighbor_expected(x, threads)
    for seed in SEEDS:  # the correct kernel passes under every schedule
        C.simt_set_seed(seed)
        assert torch.equal(C._simt_test_neighbor(x, threads), want), seed
    # In thread order, thread t-1 always wrote before t reads: the bug hides ...
    C.simt_set_seed(None)
    assert torch.equal(C._simt_test_neighbor(x, threads, skip_sync=True), want)
    # ... and a shuffled schedule exposes it.
    caught = []
    for seed in SEEDS[1:]:
        C.simt_set_seed(seed)
        if not torch.equal(C._simt_test_neighbor(x, threads, skip_sync=True), want):
            caught.append(seed)
    assert caught, "no seed exposed the missing __syncthreads"


def test_schedule_order_in_order_without_seed():
    out = C._simt_test_order(64)
    assert torch.equal(out, torch.arange(64, dtype=torch.int32).expand(2, 64))


def test_schedule_order_seeded_is_a_reproducible_permutation():
    C.simt_set_seed(11)
    a = C._simt_test_order(64)
    b = C._simt_test_order(64)
    C.simt_set_seed(12)
    c = C._simt_test_order(64)
    ident = torch.arange(64, dtype=torch.int32)
    for row in (a[0], a[1], c[0]):
        assert torch.equal(row.sort().values, ident)
        assert not torch.equal(row, ident)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # reshuffled after the barrier


@pytest.mark.parametrize("cooperative", [False, True])
@pytest.mark.parametrize("seed", [None, 3])
def test_shared_memory_is_per_block(cooperative, seed):
    C.simt_set_seed(seed)
    grid, threads, smem = (8, 2), 64, 4096
    vals, bad, align = C._simt_test_smem_isolation(list(grid), threads, smem, cooperative)
    blocks = grid[0] * grid[1]
    b = torch.arange(blocks).repeat_interleave(threads)
    t = torch.arange(threads).repeat(blocks)
    assert torch.equal(vals, b * 1000000 + (t + 1) % threads)
    assert torch.equal(bad, torch.zeros_like(bad))
    assert torch.equal(align, torch.zeros_like(align))  # 16-byte aligned


def test_builtins_2d_3d():
    grid, block = (3, 2, 2), (4, 3, 2)
    out = C._simt_test_builtins(list(grid), list(block))
    rows = []
    for bz in range(grid[2]):
        for by in range(grid[1]):
            for bx in range(grid[0]):
                for tz in range(block[2]):
                    for ty in range(block[1]):
                        for tx in range(block[0]):
                            rows.append([tx, ty, tz, bx, by, bz, *block, *grid])
    assert torch.equal(out, torch.tensor(rows))


MISUSE = {
    "syncthreads_exit": ["__syncthreads", "32 threads exited"],
    "grid_exit": ["grid_sync", "exited"],
    "syncwarp_vs_syncthreads": ["__syncwarp", "lane 0 is at __syncthreads"],
    "mask_excludes_self": ["__shfl_sync", "does not include"],
    "op_mismatch": ["disagree", "__ballot_sync", "__shfl_sync"],
    "bad_width": ["width 3", "power of two"],
    "grid_not_coop": ["grid_sync", "not cooperative"],
    "syncthreads_outside_kernel": ["__syncthreads", "outside a kernel"],
}


@pytest.mark.parametrize("seed", [None, 5])
@pytest.mark.parametrize("kind", sorted(MISUSE))
def test_barrier_misuse_is_an_error(kind, seed):
    C.simt_set_seed(seed)
    with pytest.raises(RuntimeError) as e:
        C._simt_test_disagree(kind)
    for part in MISUSE[kind]:
        assert part in str(e.value)
    # The layer is usable afterwards.
    x = torch.ones(256)
    assert torch.equal(C._simt_test_reduce(x, 128), torch.full((2,), 128.0))


@pytest.mark.parametrize(
    "kind,message",
    [
        ("std", "boom from thread 37 of block 1"),
        ("c10", "c10 error from a kernel thread"),
        ("trap", r"__trap\(\) called by thread \(37,0,0\) of block \(1,0,0\)"),
        ("nested", "dynamic parallelism"),
    ],
)
def test_exception_in_kernel_thread_surfaces_as_runtime_error(kind, message):
    for _ in range(3):  # repeatedly: the aborted fibers and their stacks are reusable
        with pytest.raises(RuntimeError, match=message):
            C._simt_test_throw(kind)
    x = torch.ones(256)
    assert torch.equal(C._simt_test_reduce(x, 128), torch.full((2,), 128.0))


def test_stats_count_launches_blocks_threads_barriers():
    C.simt_reset_stats()
    C._simt_test_reduce(torch.ones(4 * 128), 128)
    s = C.simt_stats()
    assert s["launches"] == 1 and s["blocks"] == 4 and s["threads"] == 512
    assert s["block_barriers"] == 4 * 8  # one before the tree + log2(128) phases, per block
    assert s["switches"] >= 512 * 9
    assert s["seconds"] > 0
