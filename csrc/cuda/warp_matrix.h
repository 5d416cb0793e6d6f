// Tensor-core instructions of the portable subset (part of cuda/portable.h): mma.sync, ldmatrix
// and the fp32 -> tf32 rounding. Under nvcc they are the PTX instructions (sm_80 and later); on
// the host the SIMT layer emulates them (simt/matrix.h) with the layouts below, so a kernel that
// misplaces an element fails its SIMT tests.
//
//   mma_bf16_16816(d, a, b, c)  D[16x8] = A[16x16] B[16x8] + C   bf16 A/B, fp32 C/D
//   mma_f16_16816(d, a, b, c)   the same with fp16 A/B
//   mma_tf32_1688(d, a, b, c)   D[16x8] = A[16x8] B[8x8] + C     tf32 A/B (registers from to_tf32)
//   to_tf32(x)                  cvt.rna.tf32.f32: x rounded to 10 mantissa bits, ties away from 0
//   ldmatrix_x1/_x2/_x4(r, row), ldmatrix_x1/_x2/_x4_trans(r, row)
//                               ldmatrix.sync.aligned.m8n8.xN{.trans}.shared.b16
//
// Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16 / mma.m16n8k8"; g = lane >> 2,
// t = lane % 4; a 32-bit register of two 16-bit elements holds the lower column or k in its low
// half):
//   m16n8k16 A: a[0] = row g,   cols 2t, 2t+1      a[1] = row g+8, cols 2t, 2t+1
//               a[2] = row g,   cols 2t+8, 2t+9    a[3] = row g+8, cols 2t+8, 2t+9
//            B: b[0] = k 2t, 2t+1, col g           b[1] = k 2t+8, 2t+9, col g
//   m16n8k8  A: a[0] = (g, t)  a[1] = (g+8, t)  a[2] = (g, t+4)  a[3] = (g+8, t+4)
//            B: b[0] = (k t, col g)  b[1] = (k t+4, col g)
//   C and D:    c[0], c[1] = row g, cols 2t, 2t+1      c[2], c[3] = row g+8, cols 2t, 2t+1
// So A is row-major-like (a row's k pairs in one register) and B column-major-like (a column's k
// pairs in one register): B = W^T needs no transpose when W is stored [n][k].
// ldmatrix: lane 8i+r passes the shared-memory address of row r (8 elements, 16 bytes, 16-byte
// aligned) of matrix i, i < N (the other lanes' addresses are ignored); register i of lane l gets
// row l/4, columns 2(l%4), 2(l%4)+1 of matrix i (.trans: rows 2(l%4), 2(l%4)+1 of column l/4).
// One x4 of a 16x16 row-major tile (matrices: rows 0-7/8-15 x cols 0-7/8-15 in the order
// (0,0), (8,0), (0,8), (8,8)) is exactly the m16n8k16 A fragment.
// Every lane of the warp executes each instruction together (.sync.aligned); d may alias c.
#pragma once

#include <cstdint>

namespace fusedrnn {
namespace portable {

#if defined(__CUDACC__)

__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4],
                                               const uint32_t (&b)[2], const float (&c)[4]) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
}

__device__ __forceinline__ void mma_f16_16816(float (&d)[4], const uint32_t (&a)[4],
                                              const uint32_t (&b)[2], const float (&c)[4]) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
}

__device__ __forceinline__ void mma_tf32_1688(float (&d)[4], const uint32_t (&a)[4],
                                              const uint32_t (&b)[2], const float (&c)[4]) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
}

__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// volatile + "memory": ordered after the stores and __syncthreads that filled the tile.
__device__ __forceinline__ void ldmatrix_x1(uint32_t (&r)[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n"
               : "=r"(r[0]) : "r"(smem_addr(row)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1]) : "r"(smem_addr(row)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(row)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t (&r)[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
               : "=r"(r[0]) : "r"(smem_addr(row)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1]) : "r"(smem_addr(row)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(row)) : "memory");
}

#else  // host: the SIMT layer's emulation

inline void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                           const float (&c)[4]) {
  ::simt::mma_sync(::simt::MmaKind::kBf16_m16n8k16, d, a, b, c);
}
inline void mma_f16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                          const float (&c)[4]) {
  ::simt::mma_sync(::simt::MmaKind::kF16_m16n8k16, d, a, b, c);
}
inline void mma_tf32_1688(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                          const float (&c)[4]) {
  ::simt::mma_sync(::simt::MmaKind::kTf32_m16n8k8, d, a, b, c);
}
inline uint32_t to_tf32(float x) { return ::simt::cvt_rna_tf32(x); }
inline void ldmatrix_x1(uint32_t (&r)[1], const void* row) { ::simt::ldmatrix(1, false, r, row); }
inline void ldmatrix_x2(uint32_t (&r)[2], const void* row) { ::simt::ldmatrix(2, false, r, row); }
inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) { ::simt::ldmatrix(4, false, r, row); }
inline void ldmatrix_x1_trans(uint32_t (&r)[1], const void* row) { ::simt::ldmatrix(1, true, r, row); }
inline void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) { ::simt::ldmatrix(2, true, r, row); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) { ::simt::ldmatrix(4, true, r, row); }

#endif

}  // namespace portable
}  // namespace fusedrnn
