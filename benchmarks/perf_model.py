"""A performance model of the stepwise CUDA kernels on an H100/H200 (sm_90): predicted
microseconds per time step and the predicted ratio to cuDNN, written down so that a GPU run
(scripts/gpu_check.sh) can prove it wrong. Nothing here is measured.

    python benchmarks/perf_model.py               # the stepwise table (markdown)
    python benchmarks/perf_model.py --persistent  # the persistent kernels' table
    python benchmarks/perf_model.py --wavefront   # stacked layers: one at a time or one launch
    python benchmarks/perf_model.py --bidir       # a bidirectional layer's training: two
                                                  # launches a pass or one
    python benchmarks/perf_model.py --flags       # the grid forward: grid barrier or flag words

Per step kernel, forward and backward (tile shapes from csrc/cuda/*_kernels.cuh):
  blocks   = ceil(B / BT) * ceil(H / HT); an SM holds `occ` blocks (threads, shared memory,
           registers as ptxas reports them)
  a block walks K (H forward, G*H backward) in chunks of KC; one chunk costs, per SM,
           max(L2 latency + staging, resident blocks * (MACs / rate, shared bytes / 128 B/clk))
           because the next chunk's loads are in flight (registers) while one chunk multiplies:
           with few blocks per SM the chunk loop is latency-bound, with many throughput-bound
  kernel   = rounds of resident blocks * chunks * chunk + prologue/epilogue, and at least the
           L2 traffic (every block stages its rows of h and its rows of W_hh) / L2 bandwidth
  step     = max(host launch cost, kernel + the gap between dependent kernels)
The GEMMs outside the step loop (input projection forward; dx, dW_ih, dW_hh backward: with I = H
each has B*G*H*H MACs a step) run in cuDNN's precision on both sides (csrc/cuda/hoisted_gemm.h)
and are costed alike: a cuBLAS GEMM of T*B rows at 60% of the tensor-core peak. Before that
change fusedrnn's fp32 ones were IEEE SGEMMs (80% of the FFMA peak), its bf16 ones as now.
The cuDNN side is the published point (H100, bf16, B=16, T=1024, H=768: 2.0 ms forward, about
2 us a step) taken as cuDNN's per-step floor, and above it the step's GEMM at half the
tensor-core peak mma.sync reaches (an assumption: cuDNN's RNN GEMMs are not peak GEMMs).
"""
import math

# sm_90 (H100/H200 SXM), per SM per clock unless stated.
SMS, CLOCK = 132, 1.755e9  # sustained clock under load (1.98 GHz boost)
RATE = {"ffma32": 128, "ffma64": 64, "tf32": 512, "tf32x2": 256, "half": 1024}  # MACs/clk/SM
SMEM_BW = 128  # bytes/clk/SM
L2_BW = 5.5e12  # bytes/s
L2_LAT = 270 / CLOCK  # seconds, an L2 hit
LAUNCH_HOST = 2.0e-6  # host cost of one launch from the C++ step loop
GAP_GPU = 0.8e-6  # between dependent kernels on a stream (launch latency + tail)
MAX_THREADS, MAX_SMEM, REGS_PER_SM = 2048, 227 * 1024, 65536
CUDNN_FLOOR = 1.95e-6  # published: 2.0 ms / 1024 steps

# Tile shapes: csrc/cuda/*_kernels.cuh; FFMA: tile.cuh (TileShape, 4x4 register tiles, KC 32),
# tensor cores: tile_mma.cuh (MmaShape: WM x WN mma tiles a warp, KSPLIT warp groups over k).
# Registers a thread: ptxas, sm_90 (benchmarks/kernel_resources.py), rounded up.
def shape(cell, direction, prec):
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    if direction == "fwd" and cell in ("lstm", "gru"):
        BT, HT, NG = 32, 8, G
        if prec.startswith("ffma"):
            return BT, HT, NG, 32, 128
        return BT, HT, NG, 64, (120 if cell == "lstm" else 168), 2, 1, 2
    return (16, 16, 1, 32, 96) if prec.startswith("ffma") else (16, 16, 1, 128, 208, 1, 2, 4)


def step_time(cell, direction, B, H, prec):
    """Predicted seconds per step of one stepwise kernel (see the module docstring)."""
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    if direction == "bwd" and prec == "half":
        prec = "tf32x2"  # the half types' backward: two-term TF32 (fp32 gate gradients)
    es = {"ffma32": 4, "ffma64": 8, "tf32": 4, "tf32x2": 4, "half": 2}[prec]
    sh = shape(cell, direction, prec)
    BT, HT, NG, KC, regs = sh[:5]
    NC = NG * HT
    K = H if direction == "fwd" else G * H
    staged = (BT + NC) * KC * es  # written to shared memory per chunk
    if prec.startswith("ffma"):
        threads, smem = 256, max((BT + NC) * (KC + 1) * es, 4 * BT * (NC + 1) * es)
        # every MAC of a 4x4 register tile reads 8 operands per 16 MACs
        smem_chunk = staged + BT * NC * KC / 16 * 8 * es
    else:
        WM, WN, KSPLIT = sh[5:]
        warps_m, warps_n = BT // (16 * WM), NC // (8 * WN)
        threads = 32 * warps_m * warps_n * KSPLIT
        smem = max((BT + NC) * (KC + 16 // es) * es, KSPLIT * BT * (NC + 1) * 4)
        # each warp reads the A fragments of its rows and the B fragments of its columns once
        smem_chunk = staged + BT * KC * es * warps_n + NC * KC * es * warps_m
    blocks = math.ceil(B / BT) * math.ceil(H / HT)
    occ = max(1, min(MAX_THREADS // threads, MAX_SMEM // smem, REGS_PER_SM // (regs * threads), 8))
    per_sm = math.ceil(blocks / SMS)
    resident, rounds = min(per_sm, occ), math.ceil(per_sm / occ)
    compute = resident * max(BT * NC * KC / RATE[prec], smem_chunk / SMEM_BW) / CLOCK
    chunk = max(L2_LAT + 120 / CLOCK, compute)  # 120 clk: staging stores and two barriers
    kernel = max(rounds * math.ceil(K / KC) * chunk + 1.0e-6, blocks * (BT + NC) * K * es / L2_BW)
    return max(LAUNCH_HOST, kernel + GAP_GPU)


def hoisted_time(cell, B, H, prec, training, ieee_fp32=False):
    """Seconds a step of the GEMMs outside the loop: one (forward) or four (training)."""
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    macs = B * G * H * H * (4 if training else 1)
    if ieee_fp32 and prec == "tf32":
        return macs / (RATE["ffma32"] * SMS * CLOCK * 0.8)
    return macs / (RATE["half" if prec == "half" else "tf32"] * SMS * CLOCK * 0.6)


def cudnn_time(cell, B, H, half, training):
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    macs = B * G * H * H * (3 if training else 1)
    rate = RATE["half" if half else "tf32"] * SMS * CLOCK * 0.5
    loop = max(CUDNN_FLOOR * (2 if training else 1), macs / rate)
    return loop + hoisted_time(cell, B, H, "half" if half else "tf32", training)


def table():
    rows = ["| cell | B | H | precision | fwd µs/step | bwd µs/step | FFMA fp32 before: fwd / bwd "
            "| GEMMs outside the loop: fwd / train µs/step (fp32 IEEE before) "
            "| cuDNN fwd / train µs/step | inference ratio | training ratio "
            "| training ratio, IEEE GEMMs before |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    us = lambda t: f"{t * 1e6:.1f}"  # noqa: E731
    for cell in ("lstm", "gru"):
        for B, H in [(8, 512), (64, 512), (64, 1024), (64, 2048)]:
            ff, fb = step_time(cell, "fwd", B, H, "ffma32"), step_time(cell, "bwd", B, H, "ffma32")
            for prec in ("tf32", "half"):
                f, b = step_time(cell, "fwd", B, H, prec), step_time(cell, "bwd", B, H, prec)
                gf, gt = (hoisted_time(cell, B, H, prec, t) for t in (False, True))
                gt_old = hoisted_time(cell, B, H, prec, True, ieee_fp32=True)
                ci = cudnn_time(cell, B, H, prec == "half", False)
                ct = cudnn_time(cell, B, H, prec == "half", True)
                old = "" if prec == "half" else f" ({us(gt_old)})"
                rows.append(f"| {cell} | {B} | {H} | {'bf16' if prec == 'half' else 'fp32 (TF32)'} | "
                            f"{us(f)} | {us(b)} | {us(ff)} / {us(fb)} | {us(gf)} / {us(gt)}{old} | "
                            f"{us(ci)} / {us(ct)} | {ci / (f + gf):.2f} | {ct / (f + b + gt):.2f} | "
                            f"{ct / (f + b + gt_old):.2f} |")
    return "\n".join(rows)


# ------------------------------------------------------------------ persistent kernels
# csrc/cuda/persistent_kernels.cuh: one cooperative launch for all T steps, block k keeps U = ceil(H/132)
# units' W_hh in shared memory; a step = stage the exchanged vector (h_{t-1}: K = H forward;
# da_{t+1}: K = G*H backward) from L2 into shared memory, the FFMA dot products of the block
# (U*NG*B*K MACs, operands from shared memory), a shuffle reduction, the cell update, one grid
# barrier. "v1" is the kernel before the load paths of issue #19 item 1, "v2" the kernel now:
#   staging  v1: one scalar load then one store per thread per iteration: ceil(B*K/threads)
#                dependent L2 round trips;
#            v2: 16-byte cp.async, all of a thread's copies in flight: one round trip plus the
#                issue of B*K*es/16/threads copies;
#   dot      max(MACs / FFMA rate, shared loads / 32 a clock): each lane's k feeds RB rows x NG
#            gates from NG + RB shared loads (RB = 4 from B >= 4 on, else 1);
#   reduce   log2(KS) shuffle distances for RB*NG sums: v1 one sum after another (a run-time
#            loop), v2 distance-major (the RB*NG shuffles of a distance overlap);
#   consume  v1 reads xproj / the saved inputs from L2 after the reduction (one round trip);
#            v2 reads them from shared memory (prefetched during the previous barrier);
#   barrier  GRID_BARRIER, an assumption (arrive + poll through L2 by 132 blocks); the
#            exchanged vector's bytes (v1: fp32; v2: the storage dtype forward) over L2 bandwidth
#            are below the latency terms at B <= 16.
#   mma      (v2's forward: bf16 m16n8k16, fp32 as TF32 m16n8k8, TF32 being cuDNN's default for
#            fp32 RNNs; IEEE fp32 stays FFMA; v2's backward: m16n8k8 .tf32, batch x units): the
#            block's gate rows (4 per unit, 16 an m-tile) x batch (8 an n-tile) forward; a warp's
#            k-steps go round-robin to four accumulators, four dependent chains of MMA_LAT each
#            (the forward had one chain before 2026-12-03's cluster work); kspl warps split a
#            tile pair's k-steps, then partial sums through shared memory (two block barriers).
GRID_BARRIER = 1.0e-6
PLAN_SMEM = 232448  # the opt-in limit persistent_plan sizes against (227 KB)
SHFL_LAT = 30  # clocks: a dependent shuffle and add
MMA_LAT = 33  # clocks: a dependent mma.m16n8k16 (same accumulator)


def persistent_config(B, H, sms=SMS):
    """Units per block, blocks, threads, RB and lanes per group, as persistent_plan chooses (on
    `sms` blocks at most: the SMs, or the cluster's 16)."""
    U = math.ceil(H / sms)
    RB = 4 if B >= 4 else 1
    items = math.ceil(B / RB) * U
    pw = 1
    while pw < items and pw < 8:
        pw *= 2
    threads = max(64, min(256, 32 * pw))
    KS = 1
    while KS < 32 and items * KS < threads:
        KS *= 2
    return U, math.ceil(H / U), threads, RB, KS, items


def mma_pass_time(pairs, threads, ksteps, chains):
    """Seconds of a tensor-core pass: kspl warps split a tile pair's k-steps, rounds over the
    pairs, each warp's k-steps in `chains` dependent chains; two block barriers and the partial
    sums after each round, as the kernels were when this model was written (since 2026-12-05
    the forward gathers a round's gates by shuffles where each pair has a warp of its own, and
    round 0 has one barrier: ~50-100 clocks a step less, not modelled; the model is the record
    of what was predicted, to be re-fitted to a GPU's phase table)."""
    warps = threads // 32
    kspl = 1 if pairs >= warps else warps // pairs
    rounds = math.ceil(pairs / (warps // kspl))
    chain = math.ceil(math.ceil(ksteps) / kspl / chains)
    return rounds * (chain * MMA_LAT + 2 * 30 + 60) / CLOCK


# The cluster forward ("v3": v2 plus it, sm_90): when W_hh fits in one cluster of CLUSTER_MAX
# blocks and the plan prefers it, the forward runs there (persistent_plan's `cluster`: on tensor
# cores, the block's W_hh bytes a step within CLUSTER_WBYTES, the crossover this model
# predicts within about 15%): thicker slices (U = ceil(H/16)),
# h_{t-1} already in shared memory (no staging from L2), each block's h_t slice pushed into the
# 15 peers' shared memory, one cluster barrier a step instead of the grid barrier. The product
# is bound by the chain of mma k-steps or by the shared-memory bytes of W (read once per n-tile)
# and of h (once per m-tile). Assumptions, not measured: the barrier's latency (a hardware
# barrier across the GPC's SMs, against the grid barrier's poll through L2), the remote stores'
# latency and bandwidth.
CLUSTER_MAX = 16
CLUSTER_WBYTES = 112 * 1024  # persistent.h kClusterWBytes
CLUSTER_BARRIER = 0.35e-6
DSMEM_LAT = 200 / CLOCK
DSMEM_BW = 32  # bytes/clk/SM, the SM-to-SM network


def cluster_config(cell, B, H, prec):
    """(U, blocks, threads, fits, mma) of the cluster forward, as persistent_plan sizes it (the
    tensor-core layout when H is whole 16-byte rows and it fits, else the FFMA one; fp32's
    tensor-core layout counts only with TF32)."""
    G = {"lstm": 4, "gru": 3}[cell]
    U, blocks, threads = persistent_config(B, H, CLUSTER_MAX)[:3]
    es = 2 if prec == "bf16" else 4
    V, kstep = 16 // es, (16 if es == 2 else 8)
    a16 = lambda n: (n + 15) // 16 * 16  # noqa: E731
    fixed = a16(B * U * 4) + a16(2 * B * G * U * 4) + 16  # state, prefetched xproj, 2 mbarriers
    tiles = lambda rows: 2 * a16(rows * (H + V) * es)  # noqa: E731
    if H % V == 0:
        w = a16(16 * math.ceil(4 * U / 16) * (math.ceil(H / kstep) * kstep + V) * es)
        need = w + fixed + a16(threads * 16) + tiles(8 * math.ceil(B / 8))
        if need <= PLAN_SMEM:
            return U, blocks, threads, True, True
    need = a16(G * U * (H + 1) * es) + fixed + tiles(B)
    return U, blocks, threads, need <= PLAN_SMEM, False


def cluster_preferred(cell, B, H, prec):
    """persistent_plan's rule: the tensor-core layout fits, and the block's W_hh slice read once
    per 8 batch rows is at most CLUSTER_WBYTES a step."""
    U, _, _, fits, mma = cluster_config(cell, B, H, prec)
    es = 2 if prec == "bf16" else 4
    return fits and mma and 16 * math.ceil(4 * U / 16) * H * es * math.ceil(B / 8) <= CLUSTER_WBYTES


REG_STEPS = 8  # persistent_kernels.cuh kRegSteps: a warp's first k-steps of W in registers


def wregs_fraction(U, B, H, threads, kstep):
    """The share of a warp's W fragments the cluster forward holds in registers (WRegs): its
    first REG_STEPS k-steps, where every tile pair has its own warps (one round)."""
    P, warps = math.ceil(4 * U / 16) * math.ceil(B / 8), threads // 32
    if P > warps:
        return 0.0
    per_warp = math.ceil(math.ceil(H / kstep) / (warps // P))
    return min(1.0, REG_STEPS / per_warp)


def cluster_step(cell, B, H, prec, regs=True):
    """Seconds per forward step on one cluster (cluster_config must fit). regs: W's first
    fragments in registers (the kernel since 2026-12-03's late commits), whose shared-memory
    bytes then drop out; regs=False: all of W from shared memory, as before."""
    G = {"lstm": 4, "gru": 3}[cell]
    U, blocks, threads, fits, mma = cluster_config(cell, B, H, prec)
    assert fits
    es = 2 if prec == "bf16" else 4
    kstep = 16 if es == 2 else 8
    if mma:
        MT, NT = math.ceil(4 * U / 16), math.ceil(B / 8)
        in_regs = wregs_fraction(U, B, H, threads, kstep) if regs else 0.0
        # W per n-tile (less its share in registers), h per m-tile
        smem = (16 * MT * H * es) * NT * (1 - in_regs) + (8 * H * es) * MT * NT
        dot = max(mma_pass_time(MT * NT, threads, H / kstep, 4), smem / SMEM_BW / CLOCK)
    else:
        RB, KS, items = persistent_config(B, H, CLUSTER_MAX)[3:]
        dot = max(U * G * B * H / RATE["ffma32"], items * H * (G + RB) / 32) / CLOCK
        dot += (int(math.log2(KS)) * SHFL_LAT + RB * G * int(math.log2(KS))) / CLOCK
    push = DSMEM_LAT + B * U * es * (blocks - 1) / DSMEM_BW / CLOCK
    return 30 / CLOCK + dot + 60 / CLOCK + push + CLUSTER_BARRIER


# The grid forward's flag-word exchange (since 2026-12-05, persistent_kernels.cuh flag_stage):
# no grid barrier; each h_t element goes out with its step in one word (twice h's bytes in
# bf16, 8-byte words for fp32's 4) and the next step's staging polls the words it reads. Its
# stage: the last producer's store reaching L2 (half a round trip) and the poll that sees it
# (up to a round trip): FLAG_LAT, an assumption, in place of GRID_BARRIER + one round trip.
FLAG_LAT = 1.5 * L2_LAT


def persistent_step(cell, direction, B, H, prec, version="v2", sms=SMS, exchange="barrier"):
    """Predicted seconds per step of a persistent kernel (prec: "fp32" (TF32) or "bf16"; v1's
    products are FFMA, v2's on tensor cores: the forward when H is a multiple of 16 bytes'
    elements, the backward always at these sizes; v3: v2 with the cluster forward where it
    fits). sms: the SMs the launch slices W_hh over (half of them each when both directions of
    a bidirectional layer share one launch; the cluster forward takes 16 either way).
    exchange="flags": v2's grid forward with the flag-word exchange (FLAG_LAT) instead of the
    grid barrier; the default stays the barrier, the kernel the plan's rules were fitted to."""
    if version == "v3":
        if direction == "fwd" and cluster_preferred(cell, B, H, prec):
            return cluster_step(cell, B, H, prec)
        version = "v2"
    G = {"lstm": 4, "gru": 3}[cell]
    NG, K = (G, H) if direction == "fwd" else (1, G * H)
    U, blocks, threads, RB, KS, items = persistent_config(B, H, sms)
    es = 2 if (prec == "bf16" and direction == "fwd" and version == "v2") else 4  # exchanged
    flags = exchange == "flags" and direction == "fwd" and version == "v2"
    if flags:
        es *= 2  # the value and its flag
    if version == "v1":
        stage = math.ceil(B * K / threads) * L2_LAT
    else:
        stage = (FLAG_LAT if flags else L2_LAT) + math.ceil(B * K * es / 16 / threads) * 2 / CLOCK
    stage += 2 * 30 / CLOCK  # two block barriers
    macs = U * NG * B * K
    dot = max(macs / RATE["ffma32"], items * K * (NG + RB) / 32) / CLOCK
    steps = int(math.log2(KS))
    chains = RB * NG
    red = (chains * steps * SHFL_LAT if version == "v1" else steps * SHFL_LAT + chains * steps) / CLOCK
    kstep = 16 if prec == "bf16" else 8  # mma k: m16n8k16 bf16, m16n8k8 tf32
    if version == "v2" and direction == "fwd" and H % (kstep // 2) == 0:
        # gate rows (16 a tile) x batch (8 a tile), four accumulator chains a warp
        dot, red = mma_pass_time(math.ceil(4 * U / 16) * math.ceil(B / 8), threads, K / kstep, 4), 0.0
    if version == "v2" and direction == "bwd":
        # tf32 m16n8k8 over batch (16 a tile) x units (8 a tile), a warp's k-steps round-robin
        # over four accumulator chains (bf16: the low terms of the fp32 gate gradients in four
        # more, alongside)
        dot, red = mma_pass_time(math.ceil(B / 16) * math.ceil(U / 8), threads, K / 8, 4), 0.0
    consume = (L2_LAT if version == "v1" else 0.0) + 60 / CLOCK  # + the cell's arithmetic
    traffic = blocks * B * K * es / L2_BW
    return max(stage + dot + red + consume, traffic) + (0.0 if flags else GRID_BARRIER)


def persistent_table():
    """Times for fp32 (TF32) and bf16: the forwards differ (tf32 k-steps of 8, bf16 of 16; h in
    4 or 2 bytes), and so do the backwards (bf16: two tf32 terms a k-step). v1 → v2 → v3 (v3:
    the cluster forward where the plan prefers it; the backward is v2's)."""
    rows = ["| cell | H | B | fwd µs/step fp32 v1 → v2 → v3 | fwd µs/step bf16 v1 → v2 → v3 "
            "| bwd µs/step fp32 v1 → v2 | bwd µs/step bf16 v1 → v2 "
            "| inference ratio fp32 (TF32) v1 → v2 → v3 | training ratio fp32 (TF32) v1 → v2 → v3 "
            "| inference ratio bf16 v1 → v2 → v3 | training ratio bf16 v1 → v2 → v3 |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    us = lambda t: f"{t * 1e6:.1f}"  # noqa: E731
    for cell in ("lstm", "gru"):
        for H in (256, 512, 1024):
            for B in (1, 4, 8, 16):
                fwd, bwd, cols = [], [], []
                for prec in ("fp32", "bf16"):
                    f = [persistent_step(cell, "fwd", B, H, prec, v) for v in ("v1", "v2", "v3")]
                    b = [persistent_step(cell, "bwd", B, H, prec, v) for v in ("v1", "v2")]
                    b.append(b[1])
                    hp = "bf16" == prec and "half" or "tf32"
                    gf, gt = (hoisted_time(cell, B, H, hp, t) for t in (False, True))
                    ci, ct = (cudnn_time(cell, B, H, prec == "bf16", t) for t in (False, True))
                    fwd.append("| " + " → ".join(us(t) for t in f) + " ")
                    bwd.append("| " + " → ".join(us(t) for t in b[:2]) + " ")
                    cols.append("| " + " → ".join(f"{ci / (t + gf):.2f}" for t in f) + " "
                                "| " + " → ".join(f"{ct / (t + u + gt):.2f}"
                                                  for t, u in zip(f, b)) + " ")
                rows.append(f"| {cell} | {H} | {B} " + "".join(fwd) + "".join(bwd) +
                            "".join(cols) + "|")
    return "\n".join(rows)


# The layer wavefront (fusedrnn::lstm_forward_stack / gru_forward_stack, inference): the layers
# of a unidirectional stack in one launch, a group of SMS // L blocks a layer, layer l one launch
# step behind layer l-1. A launch step is the grid forward's step on the group's share of the
# SMs, and a layer above the first runs its input pass first (the layer below's h_t staged from
# L2 like h_{t-1}, the product on W_ih held beside W_hh, the sums into the prefetch slots): two
# passes, one grid barrier. T + L - 1 launch steps instead of L * T steps, and one input GEMM
# (the first layer's) instead of L. The wavefront never runs on a cluster; a launch takes the
# most layers (<= 4) whose W_ih and W_hh fit (persistent_plan with `wave`), the rest go on in
# further launches (a single layer as the single-layer forward, cluster or grid).
WAVE_MAX = 4  # persistent_kernels.cuh kMaxGroups


def wavefront_fits(cell, B, H, prec, layers):
    """Whether `layers` layers fit as one wavefront (persistent_plan's `wave` carve: W twice, the
    tensor-core layout first, a staging chunk of at least min(H, 32) columns)."""
    G = {"lstm": 4, "gru": 3}[cell]
    U, _, threads = persistent_config(B, H, SMS // layers)[:3]
    es = 2 if prec == "bf16" else 4
    V, KS = 16 // es, (16 if es == 2 else 8)
    a16 = lambda n: (n + 15) // 16 * 16  # noqa: E731
    fixed = a16(B * U * 4) + a16(2 * B * G * U * 4)  # state, prefetched xproj
    kc = min(H, 32)
    if H % V == 0:
        w = a16(16 * math.ceil(4 * U / 16) * (math.ceil(H / KS) * KS + V) * es)
        if 2 * w + fixed + a16(threads * 16) + a16(8 * math.ceil(B / 8) * (kc + V) * es) \
                <= PLAN_SMEM:
            return True
    return 2 * a16(G * U * (H + 1) * es) + fixed + a16(B * (kc + V) * es) <= PLAN_SMEM


def wavefront_step(cell, B, H, prec, layers):
    """Seconds per launch step of a wavefront of `layers` layers (which must fit)."""
    one = persistent_step(cell, "fwd", B, H, prec, "v2", sms=SMS // layers)
    return 2 * one - GRID_BARRIER  # input pass + recurrent pass, one barrier


def stack_chunks(cell, B, H, prec, layers):
    """The layers each launch takes, as the dispatch chooses them (register.cpp wave_layers:
    the most that fit, and at least 3 where a layer alone runs on a cluster, persistent.h
    wave_min_layers, the rule this model gives)."""
    out, left = [], layers
    least = 3 if cluster_preferred(cell, B, H, prec) else 2
    while left:
        n = next((k for k in range(min(WAVE_MAX, left), least - 1, -1)
                  if wavefront_fits(cell, B, H, prec, k)), 1)
        out.append(n)
        left -= n
    return out


def stack_time(cell, B, H, prec, layers, T, wave=True):
    """Seconds of a stack's inference over T steps: the layers one at a time (each its input
    GEMM, its launch and T steps of the v3 forward), or as the dispatch's wavefront launches."""
    hp = "half" if prec == "bf16" else "tf32"
    one = T * (persistent_step(cell, "fwd", B, H, prec, "v3") + hoisted_time(cell, B, H, hp, False))
    if not wave:
        return layers * (one + 2 * GAP_GPU)
    t = 0.0
    for n in stack_chunks(cell, B, H, prec, layers):
        if n == 1:
            t += one + 2 * GAP_GPU
        else:
            t += (T + n - 1) * wavefront_step(cell, B, H, prec, n) + \
                T * hoisted_time(cell, B, H, hp, False) + 2 * GAP_GPU
    return t


def wavefront_table(T=100):
    rows = ["| cell | H | B | layers | layers a launch fp32 / bf16 "
            "| fp32 (TF32): one at a time → wavefront µs | speedup "
            "| bf16: one at a time → wavefront µs | speedup |",
            "|---|---|---|---|---|---|---|---|---|"]
    for cell in ("lstm", "gru"):
        for H in (256, 512, 1024):
            for B in (1, 8, 16):
                for L in (2, 4):
                    cols = []
                    for prec in ("fp32", "bf16"):
                        a = stack_time(cell, B, H, prec, L, T, wave=False)
                        b = stack_time(cell, B, H, prec, L, T)
                        cols.append(f"| {a * 1e6:.0f} → {b * 1e6:.0f} | {a / b:.2f} ")
                    chunks = " / ".join("+".join(str(n) for n in stack_chunks(cell, B, H, p, L))
                                        for p in ("fp32", "bf16"))
                    rows.append(f"| {cell} | {H} | {B} | {L} | {chunks} " + "".join(cols) + "|")
    return "\n".join(rows)


# A bidirectional layer in one launch (fusedrnn::lstm_forward_bidir / lstm_backward_bidir, GRU
# alike): both directions side by side, each sliced over half the SMs (the forward: or one
# cluster each, where a single direction would take one), one grid barrier common to both.
# Against the two directions one after the other, each on all the SMs. Training: forward and
# backward; the GEMMs outside the loop are the same either way and left out.
def bidir_step(cell, B, H, prec, one_launch):
    """Predicted seconds per time step of a bidirectional layer's recurrent part, training."""
    if one_launch:
        return (persistent_step(cell, "fwd", B, H, prec, "v3", sms=SMS // 2)
                + persistent_step(cell, "bwd", B, H, prec, "v2", sms=SMS // 2))
    return 2 * (persistent_step(cell, "fwd", B, H, prec, "v3")
                + persistent_step(cell, "bwd", B, H, prec, "v2"))


def bidir_table():
    rows = ["| cell | H | B | fp32 (TF32): two launches → one µs/step | speedup "
            "| bf16: two launches → one µs/step | speedup |",
            "|---|---|---|---|---|---|---|"]
    for cell in ("lstm", "gru"):
        for H in (256, 512):
            for B in (1, 4, 8, 16):
                cols = []
                for prec in ("fp32", "bf16"):
                    a, b = (bidir_step(cell, B, H, prec, o) for o in (False, True))
                    cols.append(f"| {a * 1e6:.1f} → {b * 1e6:.1f} | {a / b:.2f} ")
                rows.append(f"| {cell} | {H} | {B} " + "".join(cols) + "|")
    return "\n".join(rows)


def flags_table():
    """The grid forward with the grid barrier (v2) and with the flag-word exchange, µs a step,
    and the inference ratio to cuDNN of each."""
    rows = ["| cell | H | B | fp32 (TF32): barrier → flags µs/step | inference ratio "
            "| bf16: barrier → flags µs/step | inference ratio |",
            "|---|---|---|---|---|---|---|"]
    for cell in ("lstm", "gru"):
        for H in (256, 512, 1024):
            for B in (1, 8, 16):
                cols = []
                for prec in ("fp32", "bf16"):
                    a, b = (persistent_step(cell, "fwd", B, H, prec, exchange=x)
                            for x in ("barrier", "flags"))
                    g = hoisted_time(cell, B, H, "half" if prec == "bf16" else "tf32", False)
                    c = cudnn_time(cell, B, H, prec == "bf16", False)
                    cols.append(f"| {a * 1e6:.2f} → {b * 1e6:.2f} "
                                f"| {c / (a + g):.2f} → {c / (b + g):.2f} ")
                rows.append(f"| {cell} | {H} | {B} " + "".join(cols) + "|")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys
    if "--bidir" in sys.argv:
        print(bidir_table())
    elif "--flags" in sys.argv:
        print(flags_table())
    elif "--wavefront" in sys.argv:
        print(wavefront_table())
    else:
        print(persistent_table() if "--persistent" in sys.argv else table())
