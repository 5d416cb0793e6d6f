// cp.async of the SIMT layer (part of simt/simt.h): asynchronous copies from global to shared
// memory with the semantics of PTX cp.async / cp.async.commit_group / cp.async.wait_group.
// Kernels reach them through csrc/cuda/async_copy.h; this file is only the host half.
//
// Contract (per thread, like the hardware): cp_async(dst, src, bytes, src_bytes) queues a copy
// of `bytes` (4, 8 or 16) into `dst` (inside the block's dynamic shared memory), of which the
// first src_bytes (0 .. bytes) come from `src` (global memory) and the rest are zero; dst and src
// aligned to `bytes` (else simt::Error). cp_async_commit() closes the thread's open group;
// cp_async_wait(n) completes every committed group but the newest n. The copy is performed at
// the wait, not at the call: a kernel that reads dst before waiting (or without the barrier that
// makes another thread's copy visible) reads the old contents — fresh shared memory is all ones,
// NaN — so a missing wait fails the tests instead of passing by luck. Copies still queued when a
// thread exits are performed then (the hardware completes them too).
#pragma once

namespace simt {

void cp_async(void* dst, const void* src, int bytes, int src_bytes);
void cp_async_commit();
void cp_async_wait(int n);

}  // namespace simt
