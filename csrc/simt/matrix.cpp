// mma.sync, ldmatrix and cvt.rna.tf32.f32 of the SIMT layer: see simt/matrix.h. Each warp
// instruction is a warp collective (simt/warp.h): the last lane to arrive computes every lane's
// registers from all lanes' inputs, following the PTX ISA's fragment tables below.
#include <cmath>
#include <cstring>
#include <string>

#include <c10/util/Half.h>

#include "simt/matrix.h"
#include "simt/scheduler.h"

namespace simt {
namespace {

using detail::Collective;

float bf16_bits(uint32_t h) { uint32_t u = h << 16; float f; std::memcpy(&f, &u, 4); return f; }
float f16_bits(uint32_t h) { return float(c10::Half(uint16_t(h), c10::Half::from_bits())); }
float tf32_bits(uint32_t u) { u &= 0xffffe000u; float f; std::memcpy(&f, &u, 4); return f; }

void need_full_warp(Collective* const* lanes, const char* name) {
  for (int l = 0; l < 32; ++l)
    if (!lanes[l])
      throw Error(std::string("simt: ") + name + " needs all 32 lanes of the warp (.sync.aligned); "
                  "lane " + std::to_string(l) + " is not taking part");
}

struct MmaIn {
  const uint32_t* a;
  const uint32_t* b;
  const float* c;
};

// The PTX ISA's fragment tables (g = lane >> 2, t = lane % 4). m16n8k16 .bf16/.f16: A element
// i of 8 (two per register, low half first) at row g + 8*((i/2)%2), column 2t + i%2 + 8*(i/4);
// B element i of 4 at k 2t + i%2 + 8*(i/2), column g. m16n8k8 .tf32: A register i of 4 at row
// g + 8*(i%2), column t + 4*(i/2); B register i of 2 at k t + 4i, column g. C/D register i of 4
// (both shapes) at row g + 8*(i/2), column 2t + i%2.
template <MmaKind kKind>
void run_mma(Collective* const* lanes) {
  constexpr bool kTf32 = kKind == MmaKind::kTf32_m16n8k8;
  constexpr int K = kTf32 ? 8 : 16;
  need_full_warp(lanes, "mma.sync");
  double A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < 32; ++l) {
    const MmaIn& in = *static_cast<const MmaIn*>(lanes[l]->in);
    const int g = l >> 2, t = l & 3;
    if (kTf32) {
      for (int i = 0; i < 4; ++i) A[g + 8 * (i % 2)][t + 4 * (i / 2)] = tf32_bits(in.a[i]);
      for (int i = 0; i < 2; ++i) B[t + 4 * i][g] = tf32_bits(in.b[i]);
    } else {
      auto half = [](uint32_t reg, int i) {
        const uint32_t h = i % 2 ? reg >> 16 : reg & 0xffffu;
        return kKind == MmaKind::kBf16_m16n8k16 ? bf16_bits(h) : f16_bits(h);
      };
      for (int i = 0; i < 8; ++i)
        A[g + 8 * ((i / 2) % 2)][2 * t + i % 2 + 8 * (i / 4)] = half(in.a[i / 2], i);
      for (int i = 0; i < 4; ++i) B[2 * t + i % 2 + 8 * (i / 2)][g] = half(in.b[i / 2], i);
    }
    for (int i = 0; i < 4; ++i) C[g + 8 * (i / 2)][2 * t + i % 2] = in.c[i];
  }
  for (int l = 0; l < 32; ++l) {  // every input is read above: d may alias c
    float* d = static_cast<float*>(lanes[l]->out);
    const int g = l >> 2, t = l & 3;
    for (int i = 0; i < 4; ++i) {
      const int m = g + 8 * (i / 2), n = 2 * t + i % 2;
      double s = C[m][n];
      for (int k = 0; k < K; ++k) s += A[m][k] * B[k][n];
      d[i] = float(s);
    }
  }
}

constexpr const char* kMmaName[] = {"mma.sync.m16n8k16.bf16", "mma.sync.m16n8k16.f16",
                                    "mma.sync.m16n8k8.tf32"};

struct LdIn {
  const unsigned char* row;
  int num;
  bool trans;
};

template <int kNum, bool kTrans>
void run_ldmatrix(Collective* const* lanes) {
  need_full_warp(lanes, "ldmatrix");
  uint16_t M[4][8][8];
  for (int m = 0; m < kNum; ++m)
    for (int r = 0; r < 8; ++r)
      std::memcpy(M[m][r], static_cast<const LdIn*>(lanes[8 * m + r]->in)->row, 16);
  for (int l = 0; l < 32; ++l) {
    uint32_t* out = static_cast<uint32_t*>(lanes[l]->out);
    const int g = l >> 2, t = l & 3;
    for (int m = 0; m < kNum; ++m) {
      const uint32_t lo = kTrans ? M[m][2 * t][g] : M[m][g][2 * t];
      const uint32_t hi = kTrans ? M[m][2 * t + 1][g] : M[m][g][2 * t + 1];
      out[m] = lo | hi << 16;
    }
  }
}

}  // namespace

void mma_sync(MmaKind kind, float* d, const uint32_t* a, const uint32_t* b, const float* c) {
  MmaIn in{a, b, c};
  void (*run)(Collective* const*) = kind == MmaKind::kBf16_m16n8k16 ? run_mma<MmaKind::kBf16_m16n8k16>
                                    : kind == MmaKind::kF16_m16n8k16 ? run_mma<MmaKind::kF16_m16n8k16>
                                                                     : run_mma<MmaKind::kTf32_m16n8k8>;
  Collective me{run, kMmaName[int(kind)], &in, d};
  detail::warp_collective(0xffffffffu, &me);
}

void ldmatrix(int num, bool trans, uint32_t* r, const void* row) {
  detail::Fiber* f = detail::current_fiber("ldmatrix");
  if (num != 1 && num != 2 && num != 4) throw Error("simt: ldmatrix takes .x1, .x2 or .x4");
  const auto* p = static_cast<const unsigned char*>(row);
  if (f->lane < 8 * num) {
    const unsigned char* lo = f->block->smem;
    const size_t size = f->worker->launch->spec.smem;
    if (p < lo || p + 16 > lo + size || reinterpret_cast<uintptr_t>(p) % 16)
      throw Error("simt: ldmatrix row address of lane " + std::to_string(f->lane) +
                  " is not a 16-byte aligned row inside the block's dynamic shared memory "
                  "(offset " + std::to_string((long long)(p - lo)) + " of " +
                  std::to_string(size) + " bytes)");
  }
  LdIn in{p, num, trans};
  using Run = void (*)(Collective* const*);
  Run run = num == 1 ? (trans ? (Run)run_ldmatrix<1, true> : (Run)run_ldmatrix<1, false>)
          : num == 2 ? (trans ? (Run)run_ldmatrix<2, true> : (Run)run_ldmatrix<2, false>)
                     : (trans ? (Run)run_ldmatrix<4, true> : (Run)run_ldmatrix<4, false>);
  Collective me{run, "ldmatrix.sync.aligned.m8n8.b16", &in, r};
  detail::warp_collective(0xffffffffu, &me);
}

uint32_t cvt_rna_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (std::isnan(x) || std::isinf(x)) return u;
  // Ties away from zero: add half of the dropped range to the magnitude, then drop 13 bits (a
  // carry into the exponent is the correct rounding up, to infinity at the top).
  return (u + 0x1000u) & 0xffffe000u;
}

}  // namespace simt
