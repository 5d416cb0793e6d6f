// Fiber context switch (x86-64 assembly) and the fiber stack pool. See fiber.h.
#include "simt/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>

#include "simt/config.h"

#if !defined(__x86_64__) || !defined(__linux__)
#error "the SIMT layer's context switch is written for x86-64 Linux"
#endif

// simt_ctx_switch(void** save_sp /*rdi*/, void* load_sp /*rsi*/)
// simt_ctx_entry: first code run on a fresh stack; r12 = arg, r13 = entry (set by init_context).
asm(R"(
  .text
  .p2align 4
  .globl simt_ctx_switch
  .hidden simt_ctx_switch
  .type simt_ctx_switch,@function
simt_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size simt_ctx_switch, .-simt_ctx_switch

  .p2align 4
  .globl simt_ctx_entry
  .hidden simt_ctx_entry
  .type simt_ctx_entry,@function
simt_ctx_entry:
  .cfi_startproc
  .cfi_undefined rip
  movq %r12, %rdi
  callq *%r13
  ud2
  .cfi_endproc
  .size simt_ctx_entry, .-simt_ctx_entry
)");

extern "C" void simt_ctx_switch(void** save_sp, void* load_sp);
extern "C" void simt_ctx_entry();

namespace simt {
namespace detail {

void switch_context(void** save_sp, void* load_sp) { simt_ctx_switch(save_sp, load_sp); }

void* init_context(char* stack_top, void (*entry)(void*), void* arg) {
  // Frame popped by simt_ctx_switch, from the lowest address: mxcsr, fcw, r15, r14, r13, r12,
  // rbx, rbp, return address. After `ret` rsp must be 16-byte aligned so that the `call` in
  // simt_ctx_entry enters `entry` with the ABI alignment.
  uintptr_t top = reinterpret_cast<uintptr_t>(stack_top) & ~uintptr_t(15);
  uint64_t* sp = reinterpret_cast<uint64_t*>(top - 16);  // rsp after ret; 16 bytes of slack above
  *--sp = reinterpret_cast<uint64_t>(&simt_ctx_entry);
  *--sp = 0;                                     // rbp
  *--sp = 0;                                     // rbx
  *--sp = reinterpret_cast<uint64_t>(arg);       // r12
  *--sp = reinterpret_cast<uint64_t>(entry);     // r13
  *--sp = 0;                                     // r14
  *--sp = 0;                                     // r15
  uint32_t mxcsr;
  uint16_t fcw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fcw));
  --sp;  // inherit the creating thread's floating-point modes (rounding, FTZ/DAZ)
  std::memcpy(reinterpret_cast<char*>(sp), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fcw, 2);
  return sp;
}

namespace {

struct StackPool {
  std::mutex mu;
  std::vector<char*> free;  // stack tops
  size_t total = 0;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);

  void grow(size_t n) {
    const size_t stride = kStackSize + page;  // guard page below each stack
    char* base = static_cast<char*>(mmap(nullptr, n * stride, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    if (base == MAP_FAILED) throw simt::Error("simt: cannot map memory for fiber stacks");
    for (size_t i = 0; i < n; ++i) {
      char* lo = base + i * stride;
      if (total < kGuardedStacks) mprotect(lo, page, PROT_NONE);
      free.push_back(lo + stride);
      ++total;
    }
  }
};

StackPool& pool() {
  static StackPool* p = new StackPool;  // never destroyed: launches may run during exit
  return *p;
}

}  // namespace

void acquire_stacks(size_t n, std::vector<char*>& out) {
  StackPool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  if (p.free.size() < n) p.grow(std::max(n - p.free.size(), size_t(64)));
  out.insert(out.end(), p.free.end() - n, p.free.end());
  p.free.resize(p.free.size() - n);
}

void release_stacks(std::vector<char*>& stacks) {
  StackPool& p = pool();
  // Beyond a working set, hand the pages of returned stacks back to the OS (a large cooperative
  // launch would otherwise keep its peak resident forever). The mapping stays for reuse.
  constexpr size_t kKeepResident = 4096;
  std::lock_guard<std::mutex> lock(p.mu);
  for (char* top : stacks) {
    if (p.free.size() >= kKeepResident) madvise(top - kStackSize, kStackSize, MADV_DONTNEED);
    p.free.push_back(top);
  }
  stacks.clear();
}

}  // namespace detail
}  // namespace simt
