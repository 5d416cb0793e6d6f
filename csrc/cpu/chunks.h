// Chunks of steps for a CPU forward that saves nothing for backward (the ops' save=false).
//
// step_chunks(st, reverse, max_rows): st's steps in processing order (time_of) cut into
// consecutive chunks of whole steps, each of at most max_rows rows but at least one step and, where
// the sequence has them, kPackMinRows rows (matmul.h: a GEMM of fewer rows takes the BLAS path,
// whose rounding would differ from the product over all rows).
// A chunk's steps are a contiguous range of times, so its rows [row0, row0 + st.N) are
// contiguous too; its Steps is rebased to them (offsets from row0, B = its widest step) and runs
// in the same direction with the same reverse flag. The caller carries h (and c) from one chunk
// to the next, which is exactly what the time loop over the whole sequence does.
// chunks_of(st, reverse, save, row_bytes): one chunk of everything when saving, else chunks of
// nosave_chunk_bytes() / row_bytes rows (csrc/ops.h: a few MB, so that a chunk stays in the
// last-level cache between its input projection and its steps).
// max_rows(chunks): the rows of the largest chunk (the size of its scratch).
// Why: the gates (and the input projection in them) of the whole sequence are [N, G*H]; without
// backward they are only needed one step at a time, so a chunk-sized scratch bounds the peak to
// the outputs plus that scratch, while each chunk keeps the hoisted input-projection GEMM.
#pragma once

#include "cpu/common.h"
#include "cpu/matmul.h"

#include <algorithm>
#include <vector>

namespace fusedrnn {
namespace cpu {

struct StepChunk {
  Steps st;
  int64_t row0;
};

inline std::vector<StepChunk> step_chunks(const Steps& st, bool reverse, int64_t max_rows) {
  max_rows = std::max<int64_t>(max_rows, 1);
  std::vector<StepChunk> out;
  int64_t s = 0;
  while (s < st.T) {
    int64_t rows = st.count[time_of(s, st.T, reverse)], e = s + 1;
    while (e < st.T &&
           (rows < kPackMinRows || rows + st.count[time_of(e, st.T, reverse)] <= max_rows))
      rows += st.count[time_of(e, st.T, reverse)], ++e;
    // Steps s .. e-1 are times [lo, hi].
    const int64_t lo = std::min(time_of(s, st.T, reverse), time_of(e - 1, st.T, reverse));
    StepChunk ch;
    ch.row0 = st.offset[lo];
    ch.st.T = e - s;
    for (int64_t k = 0; k < ch.st.T; ++k) {
      ch.st.offset.push_back(st.offset[lo + k] - ch.row0);
      ch.st.count.push_back(st.count[lo + k]);
      ch.st.B = std::max(ch.st.B, st.count[lo + k]);
      ch.st.N += st.count[lo + k];
    }
    out.push_back(std::move(ch));
    s = e;
  }
  return out;
}

inline std::vector<StepChunk> chunks_of(const Steps& st, bool reverse, bool save,
                                        int64_t row_bytes) {
  if (save) return {StepChunk{st, 0}};
  return step_chunks(st, reverse, nosave_chunk_bytes() / std::max<int64_t>(row_bytes, 1));
}

inline int64_t max_rows(const std::vector<StepChunk>& chunks) {
  int64_t r = 0;
  for (const auto& c : chunks) r = std::max(r, c.st.N);
  return r;
}

}  // namespace cpu
}  // namespace fusedrnn
