// Kernels that exercise the SIMT layer's tensor-core and async-copy emulation (mma.sync,
// ldmatrix, cvt.rna.tf32, cp.async), for tests/test_simt_matrix.py only (bound as _simt_test_*
// by selftest_matrix.cpp). Written against csrc/cuda/portable.h like every kernel. Not public.
#pragma once

#include <type_traits>

#include "cuda/portable.h"

namespace fusedrnn {
namespace simt_test {

// Block x (32 threads) is one case: lane l runs mma with registers a[x][l][0..3],
// b[x][l][0..1], c[x][l][0..3] and writes d[x][l][0..3]. kind: 0 bf16, 1 f16, 2 tf32.
// in_place: d computed into the c registers (the usual accumulate form).
__global__ void k_mma(int kind, const uint32_t* a, const uint32_t* b, const float* c, float* d,
                      bool in_place, int exit_lane) {
  const int l = int(threadIdx.x);
  const size_t x = blockIdx.x;
  if (l == exit_lane) return;  // a lane missing from a .aligned instruction: an error
  uint32_t ra[4], rb[2];
  float rc[4], rd[4];
  for (int i = 0; i < 4; ++i) ra[i] = a[(x * 32 + l) * 4 + i];
  for (int i = 0; i < 2; ++i) rb[i] = b[(x * 32 + l) * 2 + i];
  for (int i = 0; i < 4; ++i) rc[i] = c[(x * 32 + l) * 4 + i];
  float (&out)[4] = in_place ? rc : rd;
  if (kind == 0) portable::mma_bf16_16816(out, ra, rb, rc);
  else if (kind == 1) portable::mma_f16_16816(out, ra, rb, rc);
  else portable::mma_tf32_1688(out, ra, rb, rc);
  for (int i = 0; i < 4; ++i) d[(x * 32 + l) * 4 + i] = out[i];
}

// Copies n 16-bit words to shared memory, then every lane runs ldmatrix (num, trans) on the row
// at element offset row_off[lane]; out[lane][0..num-1] get the registers (the rest stay as given).
__global__ void k_ldmatrix(const uint16_t* tile, int n, const int* row_off, int num, bool trans,
                           uint32_t* out) {
  FRNN_DYNAMIC_SMEM(uint16_t, s);
  const int l = int(threadIdx.x);
  for (int i = l; i < n; i += 32) s[i] = tile[i];
  __syncwarp();
  uint32_t r[4];
  for (int i = 0; i < 4; ++i) r[i] = out[l * 4 + i];
  const uint16_t* row = s + row_off[l];
  if (num == 1) {
    uint32_t (&r1)[1] = *reinterpret_cast<uint32_t(*)[1]>(r);
    trans ? portable::ldmatrix_x1_trans(r1, row) : portable::ldmatrix_x1(r1, row);
  } else if (num == 2) {
    uint32_t (&r2)[2] = *reinterpret_cast<uint32_t(*)[2]>(r);
    trans ? portable::ldmatrix_x2_trans(r2, row) : portable::ldmatrix_x2(r2, row);
  } else {
    trans ? portable::ldmatrix_x4_trans(r, row) : portable::ldmatrix_x4(r, row);
  }
  for (int i = 0; i < 4; ++i) out[l * 4 + i] = r[i];
}

// The m16n8k16 product the way a kernel stages it: A [16][16] row-major and W [8][16] (n rows,
// k contiguous: B = W^T) in shared memory with a row stride of ld elements; A's fragment from one
// ldmatrix.x4, B's from one ldmatrix.x2; d [16][8] written through the C/D layout.
template <class T>
__global__ void k_ldmatrix_mma(const T* a, const T* w, int ld, float* d) {
  FRNN_DYNAMIC_SMEM(T, s);
  T* As = s;
  T* Ws = s + 16 * ld;
  const int l = int(threadIdx.x), g = l >> 2, t = l & 3;
  for (int i = l; i < 16 * 16; i += 32) As[(i / 16) * ld + i % 16] = a[i];
  for (int i = l; i < 8 * 16; i += 32) Ws[(i / 16) * ld + i % 16] = w[i];
  __syncwarp();
  uint32_t ra[4], rb[2];
  // x4 matrices: rows 0-7 / 8-15 (lane bit 3) x k 0-7 / 8-15 (lane bit 4).
  portable::ldmatrix_x4(ra, As + (l % 16) * ld + (l / 16) * 8);
  // x2 matrices: k 0-7, k 8-15 of the 8 W rows (lanes 16-31 ignored; pass a valid row anyway).
  portable::ldmatrix_x2(rb, Ws + (l % 8) * ld + ((l / 8) % 2) * 8);
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  if (std::is_same<T, c10::BFloat16>::value) portable::mma_bf16_16816(acc, ra, rb, acc);
  else portable::mma_f16_16816(acc, ra, rb, acc);
  for (int i = 0; i < 4; ++i) d[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2] = acc[i];
}

__global__ void k_tf32(const float* in, uint32_t* out, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = portable::to_tf32(in[i]);
}

template <int N>
__device__ void cp_async_n(void* dst, const void* src, bool valid) {
  portable::cp_async<N>(dst, src, valid);
}

// cp.async groups, one block of 32 threads, shared memory of 32 * groups chunks of `bytes`.
// Thread t issues, for group q < groups, one copy of chunk q*32 + t (invalid when
// zero_every > 0 and the chunk index is a multiple of it: zero fill) and commits it. Then it
// records its own chunks' first words before any wait (`before`), after cp_async_wait<wait_n>
// (`mid`), and after wait<0> + __syncthreads the whole tile (`after`). Words are int32.
// misalign: the first thread's source pointer is moved by 4 bytes (an alignment error for
// bytes > 4).
__global__ void k_cp_async(const int* src, int bytes, int groups, int wait_n, int zero_every,
                           bool misalign, int* before, int* mid, int* after) {
  FRNN_DYNAMIC_SMEM(int, s);
  const int t = int(threadIdx.x), words = bytes / 4;
  for (int q = 0; q < groups; ++q) {
    const int chunk = q * 32 + t;
    const int* from = src + chunk * words + (misalign && t == 0 ? 1 : 0);
    const bool valid = !(zero_every > 0 && chunk % zero_every == 0);
    if (bytes == 4) cp_async_n<4>(s + chunk * words, from, valid);
    else if (bytes == 8) cp_async_n<8>(s + chunk * words, from, valid);
    else cp_async_n<16>(s + chunk * words, from, valid);
    portable::cp_async_commit();
  }
  for (int q = 0; q < groups; ++q) before[q * 32 + t] = s[(q * 32 + t) * words];
  switch (wait_n) {
    case 0: portable::cp_async_wait<0>(); break;
    case 1: portable::cp_async_wait<1>(); break;
    case 2: portable::cp_async_wait<2>(); break;
    default: portable::cp_async_wait<3>(); break;
  }
  for (int q = 0; q < groups; ++q) mid[q * 32 + t] = s[(q * 32 + t) * words];
  portable::cp_async_wait<0>();
  __syncthreads();
  for (int i = t; i < groups * 32 * words; i += 32) after[i] = s[i];
}

}  // namespace simt_test
}  // namespace fusedrnn
