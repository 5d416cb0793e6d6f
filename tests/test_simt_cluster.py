"""SIMT layer: thread-block clusters (csrc/simt/cluster.h, reached through csrc/cuda/cluster.h) —
the launch and its checks, ranks, distributed shared memory and the cluster barrier, with the
semantics of the CUDA guide and the PTX ISA (barrier.cluster.arrive/wait, mapa)."""
import pytest
import torch

import fusedrnn
from fusedrnn import _C as C

pytestmark = pytest.mark.skipif(not fusedrnn.build_info()["simt"], reason="SIMT layer not built")


@pytest.fixture(autouse=True)
def _restore():
    C.simt_set_arch("sm_90")
    yield
    C.simt_set_seed(None)
    C.simt_set_arch("sm_90")


def exchange_expected(n, phases):
    """out[p][k] of k_exchange: v_k = k + 1, then per phase v_k = k + mean(v)."""
    v = [float(k + 1) for k in range(n)]
    out = []
    for _ in range(phases):
        m = sum(v) / n
        v = [k + m for k in range(n)]
        out.append(v)
    return torch.tensor(out, dtype=torch.float32)


@pytest.mark.parametrize("blocks,threads", [(2, 32), (5, 64), (8, 33), (16, 128)])
@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_exchange_through_peer_shared_memory(blocks, threads, seed):
    """Each phase every block pushes its value into every peer's shared memory, meets the cluster
    barrier and reads what all pushed: exact under any schedule, 16 blocks included."""
    C.simt_set_seed(seed)
    C.simt_reset_stats()
    out = C._simt_test_cluster_exchange(blocks, threads, 6)
    torch.testing.assert_close(out, exchange_expected(blocks, 6), rtol=1e-6, atol=1e-6)
    s = C.simt_stats()
    assert s["blocks"] == blocks and s["cluster_barriers"] == 6 + 1 and s["grid_barriers"] == 0


@pytest.mark.parametrize("mode", [1, 2], ids=["no_barrier", "one_buffer"])
def test_broken_exchange_is_caught_by_a_seed(mode):
    """The same exchange with its barrier removed, or single-buffered (a fast block's next push
    overwrites a slot a slow block has not read): some seeded schedule gives a wrong result
    (without any barrier a block may also exit while a peer still maps its shared memory:
    that is an error)."""
    wrong = 0
    for seed in range(1, 9):
        C.simt_set_seed(seed)
        try:
            out = C._simt_test_cluster_exchange(4, 64, 5, mode)
        except RuntimeError as e:
            assert mode == 1 and "which has exited" in str(e)
            wrong += 1
            continue
        wrong += not torch.allclose(out, exchange_expected(4, 5), rtol=1e-6, atol=1e-6)
    assert wrong > 0


@pytest.mark.parametrize("grid,cluster", [([8], [4]), ([4, 2], [2, 2]), ([2, 2, 4], [1, 2, 2]),
                                          ([6, 1, 1], [6, 1, 1]), ([3], [1])])
def test_ranks_and_block_indices(grid, cluster):
    """rank = the block's position in its cluster, x fastest; every block index appears once;
    a peer's shared memory (read through the mapping) holds the peer's rank. Cluster dims
    (1,1,1): every block is a cluster of one (as a launch without clusters on the device), its
    barrier the block's."""
    out = C._simt_test_cluster_ranks(grid, cluster)
    g = (grid + [1, 1])[:3]
    c = (cluster + [1, 1])[:3]
    n = c[0] * c[1] * c[2]
    seen = set()
    for row in out.tolist():
        rank, size, x, y, z, peer = row
        assert size == n
        assert rank == x % c[0] + c[0] * (y % c[1] + c[1] * (z % c[2]))
        assert peer == (rank + 1) % n
        seen.add((x, y, z))
    assert len(seen) == g[0] * g[1] * g[2]


@pytest.mark.parametrize("kind,message", [
    (0, "arrive twice"),
    (1, "wait without a barrier.cluster.arrive"),
    (2, "rank 2 of a cluster of 2"),
    (3, "outside the calling block's dynamic shared memory"),
    (4, "which has exited"),
    (5, "wait at the cluster barrier for threads of the cluster that never arrive"),
])
def test_misuse_is_an_error(kind, message):
    with pytest.raises(RuntimeError, match=message):
        C._simt_test_cluster_misuse(kind)


def test_exited_threads_do_not_block_the_barrier():
    """barrier.cluster.wait waits for the non-exited threads: a block that left early does not
    hold the others."""
    assert C._simt_test_cluster_misuse(6) == 7


@pytest.mark.parametrize("grid,cluster,non_portable,message", [
    ([8], [3], True, r"gridDim \(8,1,1\) is not a multiple of the cluster dims \(3,1,1\)"),
    ([32], [32], True, "a cluster of 32 blocks exceeds the sm_90 maximum of 16"),
    ([16], [16], False, "exceeds the portable size of 8"),
    ([4], [0], True, "zero dimension"),
])
def test_launch_checks(grid, cluster, non_portable, message):
    with pytest.raises(RuntimeError, match=message):
        C._simt_test_cluster_launch(grid, cluster, non_portable)


def test_launch_limits_pass():
    C._simt_test_cluster_launch([16], [16], True)
    C._simt_test_cluster_launch([8], [8], False)
    C._simt_test_cluster_launch([4, 4], [2, 4], False)


def test_no_clusters_before_sm90():
    C.simt_set_arch("sm_80")
    assert C._simt_max_cluster_size() == 0
    with pytest.raises(RuntimeError, match="thread-block clusters need sm_90"):
        C._simt_test_cluster_launch([4], [2], True)
    C.simt_set_arch("sm_90")
    assert C._simt_max_cluster_size() == 16


# ---------------------------------------------------------------- mbarriers and st.async
@pytest.mark.parametrize("blocks,threads", [(2, 32), (5, 64), (16, 128)])
@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_mbarrier_exchange(blocks, threads, seed):
    """The exchange on mbarriers with transaction counts and st.async instead of the cluster
    barrier (simt/mbarrier.h, the PTX ISA's semantics): a block arms its barrier for the n words
    of a phase, every block st.asyncs its value into every block's buffer with a complete-tx, and
    the readers wait for the phase's parity. Exact under any schedule; no cluster barrier but the
    two around the loop."""
    C.simt_set_seed(seed)
    C.simt_reset_stats()
    out = C._simt_test_mbar_exchange(blocks, threads, 7)
    torch.testing.assert_close(out, exchange_expected(blocks, 7), rtol=1e-6, atol=1e-6)
    assert C.simt_stats()["cluster_barriers"] == 2


@pytest.mark.parametrize("seed", [None, 1, 2])
@pytest.mark.parametrize("phases", [2, 5])
def test_mbarrier_wrong_parity_is_caught(seed, phases):
    """Broken on purpose, the wait's parity flipped: it returns before the peers' bytes (fresh
    buffers read as NaN), or sleeps on a phase that already completed until one that never
    comes (reported as a deadlock), or the block re-arms a barrier whose phase never completed
    (an arrival the PTX ISA leaves undefined: an error). Never the right result."""
    C.simt_set_seed(seed)
    try:
        out = C._simt_test_mbar_exchange(4, 32, phases, 1)
        right = torch.allclose(out, exchange_expected(4, phases), rtol=1e-6, atol=1e-6)
    except RuntimeError as e:
        assert "mbarrier" in str(e) or "barrier disagreement" in str(e), e
        right = False
    assert not right


def test_mbarrier_phase_that_never_completes_is_reported():
    """Broken on purpose: armed for one word more than arrives, no phase completes; the wait is
    reported like a barrier disagreement, not a hang."""
    with pytest.raises(RuntimeError, match="mbarrier phase that can never complete"):
        C._simt_test_mbar_exchange(3, 32, 2, 2)


@pytest.mark.parametrize("kind,message", [
    (0, "never initialised"), (1, "count 0"), (2, "no pending arrival"),
    (3, "outside shared memory"), (4, "never initialised"), (5, "peer block's mbarrier")])
def test_mbarrier_misuse(kind, message):
    with pytest.raises(RuntimeError, match=message):
        C._simt_test_mbar_misuse(kind)
