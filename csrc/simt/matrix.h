// Warp-level matrix instructions of the SIMT layer (part of simt/simt.h), emulated with the
// semantics of the PTX ISA: mma.sync.aligned (m16n8k16 .bf16/.f16 and m16n8k8 .tf32, fp32
// accumulation, row.col), ldmatrix.sync.aligned.m8n8{.x1,.x2,.x4}{.trans}.shared.b16 and
// cvt.rna.tf32.f32. Kernels reach them through csrc/cuda/warp_matrix.h, which documents the
// fragment layouts; this file is only the host half.
//
// Contract:
//   mma_sync: every lane of the warp calls it together with the same kind (else simt::Error, as
//     .aligned requires). a/b/c/d are the calling lane's registers (4/2/4/4 of them); d may alias
//     c. Products of the inputs are exact in double; the k products and c are summed in double
//     and rounded to fp32 once, so the result is at least as accurate as the tensor cores' (which
//     do not round the same way: compare with a tolerance, or use inputs whose sums are exact).
//     tf32 operands use the upper 19 bits of each register (sign, exponent, 10 mantissa bits):
//     the low 13 bits are ignored, as the hardware ignores them; kernels round with to_tf32.
//   ldmatrix: every lane calls it together with the same num/trans. Lanes 0 .. 8*num-1 pass the
//     address of one 16-byte matrix row inside the block's dynamic shared memory, 16-byte aligned
//     (else simt::Error); the other lanes' addresses are ignored. r gets num registers.
//   cvt_rna_tf32: round to nearest, ties away from zero, to 10 mantissa bits; NaN and infinity
//     pass through (a NaN stays a NaN).
#pragma once

#include <cstdint>

namespace simt {

enum class MmaKind : uint8_t { kBf16_m16n8k16, kF16_m16n8k16, kTf32_m16n8k8 };

void mma_sync(MmaKind kind, float* d, const uint32_t* a, const uint32_t* b, const float* c);
void ldmatrix(int num, bool trans, uint32_t* r, const void* row);
uint32_t cvt_rna_tf32(float x);

}  // namespace simt
