"""Static SASS facts of the built CUDA kernels (benchmarks/sass.py), checked without a GPU: no
kernel uses local memory (LDL/STL), every kernel is there for every built arch, and the parser
counts what it claims to (a synthetic listing)."""
import os
import sys

import pytest

import fusedrnn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import sass  # noqa: E402

STEPWISE = ["lstm_forward_step_kernel", "lstm_backward_step_kernel", "gru_forward_step_kernel",
            "gru_backward_step_kernel", "rnn_forward_step_kernel", "rnn_backward_step_kernel",
            "grurb_rz_step_kernel", "grurb_n_step_kernel", "grurb_backward_zn_step_kernel",
            "grurb_backward_r_step_kernel", "ln_product_kernel", "ln_product_back_kernel"]
# Kernels without a recurrent product (no tensor-core instantiation): the layer-normalised
# cells' row kernels.
ROWWISE = ["lnlstm_row_forward_kernel", "lnlstm_row_backward_kernel", "lngru_row_forward_kernel",
           "lngru_row_backward_kernel"]
PERSISTENT = ["lstm_fwd_kernel", "lstm_bwd_kernel", "gru_fwd_kernel", "gru_bwd_kernel"]
DTYPES = ["float", "double", "Half", "BFloat16"]

LISTING = """
	code for sm_90
		Function : _Z6kernelPf
	.headerflags	@"EF_CUDA_TEXMODE_UNIFIED EF_CUDA_64BIT_ADDRESS EF_CUDA_SM90"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                          /* 0x00000a00ff017b82 */
        /*0010*/                   LDG.E.128 R4, desc[UR4][R2.64] ;                /* 0x0000000402047981 */
        /*0020*/                   LDG.E R8, desc[UR4][R2.64+0x10] ;               /* 0x0000100402087981 */
        /*0030*/              @!P0 LDG.E.U16 R9, desc[UR4][R2.64+0x20] ;           /* 0x0000200402098981 */
        /*0040*/                   STL [R1], R4 ;                                  /* 0x0000000401007387 */
        /*0050*/                   LDL R5, [R1] ;                                  /* 0x0000000001057983 */
        /*0060*/                   HMMA.16816.F32.BF16 R12, R4, R8, R12 ;          /* 0x000000080c0c723c */
        /*0070*/                   LDS.64 R6, [R3] ;                               /* 0x0000000003067984 */
        /*0080*/                   LDGSTS.E.BYPASS.LTC128B.128 [R5], desc[UR6][R2.64] ;  /* 0x0000000002057fae */
        /*0090*/                   UCGABAR_ARV ;                                   /* 0x00000000000079c7 */
        /*00a0*/                   UCGABAR_WAIT ;                                  /* 0x0000000000007dc7 */
        /*00b0*/                   LDG.E.128.STRONG.GPU R12, desc[UR4][R2.64+0x30] ;  /* 0x0000300402 */
        /*00c0*/                   STG.E.STRONG.GPU desc[UR4][R2.64], R4 ;         /* 0x0000000402 */
        /*00d0*/                   CS2R R6, SR_GLOBALTIMERLO ;                      /* 0x0000000000067805 */
        /*00e0*/                   EXIT ;                                          /* 0x000000000000794d */
		..........
"""


def test_parser_counts_a_listing():
    rows = sass.parse(LISTING)
    assert list(rows) == [("sm_90", "_Z6kernelPf")]
    r = rows[("sm_90", "_Z6kernelPf")]
    assert r["instructions"] == 15
    assert (r["LDL"], r["STL"], r["HMMA"]) == (1, 1, 1)
    assert (r["UCGABAR_ARV"], r["UCGABAR_WAIT"]) == (1, 1)
    assert r["LDG"] == {"128": 2, "32": 1, "16": 1}
    assert r["LDG_GPU"] == {"128": 1} and r["STG_GPU"] == 1
    assert r["TIMER"] == 1
    assert r["LDS"] == {"64": 1}
    assert r["LDGSTS"] == {"128": 1}


def _rows():
    if not fusedrnn.build_info()["cuda"]:
        pytest.skip("fusedrnn built without CUDA kernels")
    if sass.find_cuobjdump() is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump)")
    rows = sass.report()
    assert rows, "cuobjdump found no kernels in a CUDA build"
    return rows


@pytest.fixture(scope="module")
def rows():
    return _rows()


def test_no_kernel_uses_local_memory(rows):
    bad = [f"{r['arch']} {r['kernel']}: LDL {r['LDL']} STL {r['STL']}" for r in rows
           if r["LDL"] or r["STL"]]
    assert not bad, "local memory (spills or stack arrays) in:\n" + "\n".join(bad)


def test_every_kernel_is_built_for_every_arch(rows):
    archs = {"sm_" + a.replace(".", "") for a in fusedrnn.build_info()["archs"]}
    assert {r["arch"] for r in rows} == archs
    for arch in archs:
        names = [r["kernel"] for r in rows if r["arch"] == arch]
        for k in STEPWISE + ROWWISE + PERSISTENT:
            for dt in DTYPES:
                assert any(k in n and dt in n for n in names), f"{k} <{dt}> missing on {arch}"


def test_every_kernel_loads_from_global_memory(rows):
    """Each kernel reads its inputs with LDG: a parser that misses the loads reads 0 here."""
    for r in rows:
        if any(k in r["kernel"] for k in STEPWISE + ROWWISE + PERSISTENT):
            assert sum(r["LDG"].values()) > 0, r
            assert r["instructions"] > 20, r


def test_markdown_table_has_a_row_per_kernel(rows):
    md = sass.markdown(rows).splitlines()
    assert len(md) == len(rows) + 2
    assert all(("HMMA" in md[0], "LDL/STL" in md[0]))


def test_tensor_cores_in_every_half_and_tf32_step_kernel(rows):
    """Every stepwise kernel has a tensor-core instantiation (MmaShape) for bf16 and fp16, and
    for fp32 (TF32) beside its FFMA one; those run on HMMA, the FFMA ones (fp64, IEEE fp32) do
    not."""
    step = [r for r in rows if any(k in r["kernel"] for k in STEPWISE)]
    for r in step:
        if "MmaShape" in r["kernel"]:
            assert r["HMMA"] > 0, f"{r['arch']} {r['kernel']}: no HMMA"
        else:
            assert r["HMMA"] == 0 and ("<double" in r["kernel"] or "<float" in r["kernel"]), r
    for arch in {r["arch"] for r in step}:
        names = [r["kernel"] for r in step if r["arch"] == arch]
        for k in STEPWISE:
            for dt in ("Half", "BFloat16", "float"):
                assert any(k in n and f"MmaShape<{dt}," in n for n in names), \
                    f"{k}: no tensor-core kernel for {dt} on {arch}"


def test_tensor_core_kernels_stage_by_cp_async(rows):
    """cp.async (LDGSTS, 128-bit copies) in every tensor-core instantiation of a step kernel
    (bf16, fp16, TF32; forward and backward); none in the FFMA ones."""
    step = [r for r in rows if any(k in r["kernel"] for k in STEPWISE)]
    for r in step:
        if "MmaShape" in r["kernel"]:
            assert r["LDGSTS"].get("128", 0) > 0, f"{r['arch']} {r['kernel']}: no 128-bit LDGSTS"
        else:
            assert not r["LDGSTS"], f"{r['arch']} {r['kernel']}: LDGSTS {r['LDGSTS']}"


def test_persistent_kernels_load_paths(rows):
    """The persistent kernels (csrc/cuda/persistent_kernels.cuh) stage the exchanged vector by
    128-bit cp.async, prefetch a step's inputs by word-sized cp.async (32-bit; 64-bit for
    fp64) and copy W_hh by 128-bit loads, in every dtype and arch."""
    pers = [r for r in rows if any(f"persistent_detail::{k}<" in r["kernel"] for k in PERSISTENT)]
    assert len(pers) == len(PERSISTENT) * len(DTYPES) * len({r["arch"] for r in rows})
    for r in pers:
        word = "64" if "<double" in r["kernel"] else "32"
        what = f"{r['arch']} {r['kernel']}"
        assert r["LDGSTS"].get("128", 0) > 0, f"{what}: no 128-bit LDGSTS"
        assert r["LDGSTS"].get(word, 0) > 0, f"{what}: no {word}-bit LDGSTS"
        assert r["LDG"].get("128", 0) > 0, f"{what}: no 128-bit LDG"


def test_persistent_kernels_on_tensor_cores(rows):
    """Every persistent kernel of the half types and fp32 (TF32) contains HMMA (mma_pass forward,
    mma_bwd_pass backward); the fp64 ones are FFMA."""
    for r in rows:
        k = r["kernel"]
        if not any(f"persistent_detail::{n}<" in k for n in PERSISTENT):
            continue
        assert (r["HMMA"] > 0) == ("<double" not in k), f"{r['arch']} {k}: HMMA {r['HMMA']}"


def test_cluster_barrier_only_in_the_sm90_persistent_forwards(rows):
    """The persistent forwards built for sm_90 contain the cluster barrier (barrier.cluster
    arrive and wait: the cluster forward's step exchange); nothing else does, and no sm_80
    kernel (clusters start at sm_90)."""
    fwd = [f"persistent_detail::{k}<" for k in ("lstm_fwd_kernel", "gru_fwd_kernel")]
    for r in rows:
        expect = r["arch"] == "sm_90" and any(f in r["kernel"] for f in fwd)
        got = (r["UCGABAR_ARV"] > 0, r["UCGABAR_WAIT"] > 0)
        assert got == (expect, expect), f"{r['arch']} {r['kernel']}: {got}"


def test_persistent_forwards_exchange_flag_words(rows):
    """The persistent forwards of the 2- and 4-byte types store h_t as flag words
    (st.relaxed.gpu: STG .STRONG.GPU) and poll them with 128-bit gpu-scope loads (LDG.128
    .STRONG.GPU; csrc/cuda/flag_words.h); the fp64 forwards (no room for a flag) and the
    backwards (the grid barrier) have neither."""
    for r in rows:
        k = r["kernel"]
        if not any(f"persistent_detail::{n}<" in k for n in PERSISTENT):
            continue
        expect = "_fwd_kernel<" in k and "<double" not in k
        got = (r["LDG_GPU"].get("128", 0) > 0, r["STG_GPU"] > 0)
        assert got == (expect, expect), f"{r['arch']} {k}: {got}"


def test_persistent_forwards_spin_waits_have_a_watchdog(rows):
    """Where a persistent forward spins (the flag words' polls; sm_90's mbarrier waits), it reads
    the global timer (csrc/cuda/watchdog.h), so a wait that can never end fails the launch with a
    device-side assert after 10 s instead of hanging the process."""
    for r in rows:
        k = r["kernel"]
        if not any(f"persistent_detail::{n}<" in k for n in PERSISTENT):
            continue
        if "_fwd_kernel<" in k and "<double" not in k:
            assert r["TIMER"] > 0, f"{r['arch']} {k}: spin waits without the watchdog"
