"""SIMT layer: launch checks as the device makes them (each message names the limit), the
architecture and seed settings, intrinsics, and the compile-time ban on static __shared__."""
import os
import shutil
import subprocess

import pytest
import torch

import fusedrnn
from fusedrnn import _C as C

pytestmark = pytest.mark.skipif(not fusedrnn.build_info()["simt"], reason="SIMT layer not built")
CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")


@pytest.fixture(autouse=True)
def _restore():
    yield
    C.simt_set_seed(None)
    C.simt_set_arch("sm_90")


BAD = [
    # (grid, block, smem, message fragments)
    ((1, 1, 1), (1025, 1, 1), 0, ["blockDim.x = 1025", "1024"]),
    ((1, 1, 1), (1, 1025, 1), 0, ["blockDim.y = 1025", "1024"]),
    ((1, 1, 1), (1, 1, 65), 0, ["blockDim.z = 65", "64"]),
    ((1, 1, 1), (32, 33, 1), 0, ["1056 threads", "1024 threads per block"]),
    ((1, 1, 1), (16, 16, 8), 0, ["2048 threads", "1024 threads per block"]),
    ((2**31, 1, 1), (1, 1, 1), 0, ["gridDim.x = 2147483648", "2147483647"]),
    ((1, 65536, 1), (1, 1, 1), 0, ["gridDim.y = 65536", "65535"]),
    ((1, 1, 65536), (1, 1, 1), 0, ["gridDim.z = 65536", "65535"]),
    ((0, 1, 1), (32, 1, 1), 0, ["zero-sized grid"]),
    ((1, 1, 1), (32, 0, 1), 0, ["zero-sized block"]),
    ((1, 1, 1), (32, 1, 1), 49153, ["49153 bytes", "49152 bytes (48 KB)", "FRNN_SET_MAX_DYNAMIC_SMEM"]),
]


@pytest.mark.parametrize("grid,block,smem,parts", BAD)
def test_launch_limit_errors(grid, block, smem, parts):
    with pytest.raises(RuntimeError) as e:
        C._simt_test_launch(list(grid), list(block), smem)
    for p in parts:
        assert p in str(e.value)


@pytest.mark.parametrize(
    "grid,block,smem",
    [((2**31 - 1, 1, 1), (1, 1, 1), 0), ((1, 65535, 65535), (1024, 1, 1), 0),
     ((1, 1, 1), (1, 1, 64), 0), ((1, 1, 1), (1024, 1, 1), 49152), ((1, 1, 1), (8, 8, 16), 0)],
)
def test_launch_at_the_limits_passes_the_checks(grid, block, smem):
    C._simt_test_launch(list(grid), list(block), smem, check_only=True)


def test_launch_at_the_limits_runs():
    C._simt_test_launch([2, 1, 1], [1024, 1, 1], 49152)
    C._simt_test_launch([1, 1, 2], [1, 1, 64], 0)


def test_dynamic_smem_opt_in():
    C._simt_test_launch([2], [64], 100000, optin=100000)
    with pytest.raises(RuntimeError, match="opted-in maximum of 100000"):
        C._simt_test_launch([2], [64], 100001, optin=100000)
    with pytest.raises(RuntimeError, match="49152"):  # the opt-in is per kernel and was reset
        C._simt_test_launch([2], [64], 100000)


@pytest.mark.parametrize("arch,limit", [("sm_80", 166912), ("sm_90", 232448)])
def test_dynamic_smem_architecture_limit(arch, limit):
    C.simt_set_arch(arch)
    C._simt_test_launch([1], [32], limit, optin=limit)
    with pytest.raises(RuntimeError, match=f"{arch} opt-in limit of {limit}"):
        C._simt_test_launch([1], [32], limit, optin=limit + 1)
    with pytest.raises(RuntimeError, match=f"{arch} limit of {limit} bytes per block"):
        C._simt_test_launch([1], [32], limit + 1, optin=None)


def test_arch_switch_rechecks_an_earlier_opt_in():
    C._simt_test_launch([1], [32], 200000, optin=200000)  # fine on sm_90
    C.simt_set_arch("sm_80")
    with pytest.raises(RuntimeError, match="sm_80 limit of 166912"):
        C._simt_test_launch([1], [32], 200000, optin=-1)  # -1: keep the sm_90 opt-in


COOP = [
    # (arch, threads per block, smem, capacity, limiting resource)
    ("sm_90", 1024, 0, 132 * 2, "threads per SM"),
    ("sm_80", 1024, 0, 108 * 2, "threads per SM"),
    ("sm_90", 96, 0, 132 * 21, "threads per SM"),  # 3 warps: 2048 // 96 = 21
    ("sm_90", 32, 0, 132 * 32, "blocks per SM"),
    ("sm_80", 32, 0, 108 * 32, "blocks per SM"),
    ("sm_90", 128, 100000, 132 * 2, "shared memory per SM"),  # 233472 // (100000 + 1024)
    ("sm_90", 128, 200000, 132 * 1, "shared memory per SM"),
    ("sm_80", 128, 60000, 108 * 2, "shared memory per SM"),  # 167936 // 61024
]


@pytest.mark.parametrize("arch,threads,smem,capacity,why", COOP)
def test_cooperative_co_residency(arch, threads, smem, capacity, why):
    C.simt_set_arch(arch)
    optin = smem if smem > 49152 else None
    C._simt_test_launch([capacity], [threads], smem, cooperative=True, optin=optin, check_only=True)
    with pytest.raises(RuntimeError) as e:
        C._simt_test_launch([capacity + 1], [threads], smem, cooperative=True, optin=optin,
                            check_only=True)
    for p in ["co-resident capacity", arch, f"= {capacity}", why]:
        assert p in str(e.value)
    # Not cooperative: the same grid is fine.
    C._simt_test_launch([capacity + 1], [threads], smem, optin=optin, check_only=True)


def test_cooperative_too_large_fails_before_running():
    with pytest.raises(RuntimeError, match="co-resident capacity of sm_90"):
        C._simt_test_launch([265], [1024], 0, cooperative=True)
    C._simt_test_launch([8], [256], 0, cooperative=True)


def test_arch_and_seed_settings():
    assert C.simt_get_arch() == "sm_90"
    C.simt_set_arch("sm_80")
    assert C.simt_get_arch() == "sm_80"
    with pytest.raises(RuntimeError, match="unknown architecture 'sm_70'.*sm_80, sm_90"):
        C.simt_set_arch("sm_70")
    assert C.simt_get_arch() == "sm_80"
    assert C.simt_get_seed() is None
    for s in (0, 12345, -7, 2**63 - 1):
        C.simt_set_seed(s)
        assert C.simt_get_seed() == s
    C.simt_set_seed(None)
    assert C.simt_get_seed() is None


def test_intrinsics():
    x = torch.cat([torch.tensor([0, 1, -1, 2**31 - 1, -(2**31), 6, 7, 8, -3, -4]),
                   torch.randint(-(2**31), 2**31 - 1, (54,))]).int()
    out = C._simt_test_intrinsics(x)
    for i, v in enumerate(x.tolist()):
        u = v & 0xFFFFFFFF
        want = [bin(u).count("1"), (u & -u).bit_length(), 32 - u.bit_length(),
                int(f"{u:032b}"[::-1], 2), min(u, 7), max(v, -3)]
        assert out[i].tolist() == want, v


def _compile(tmp_path, body):
    src = tmp_path / "k.cpp"
    src.write_text('#include "simt/simt.h"\n' + body + "\n")
    return subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-I", CSRC, str(src)],
                          capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_static_shared_is_a_compile_error(tmp_path):
    ok = _compile(tmp_path, "__global__ void k(float* o) { o[threadIdx.x] = 1.f; __syncthreads(); }")
    assert ok.returncode == 0, ok.stderr
    bad = _compile(tmp_path, "__global__ void k(float* o) { __shared__ float s[32]; o[0] = s[0]; }")
    assert bad.returncode != 0
    assert "static __shared__ is not supported" in bad.stderr
    assert "FRNN_DYNAMIC_SMEM" in bad.stderr
