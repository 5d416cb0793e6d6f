// Fiber contexts and the stack pool (internal to the SIMT layer; not included by kernels).
//
// Contract: a context is a saved stack pointer. switch_context(&from, to) saves the callee-saved
// registers, MXCSR and the x87 control word on the current stack, stores the stack pointer in
// *from and resumes `to`. init_context prepares a fresh stack so that the first switch into it
// calls entry(arg) on that stack; entry must never return. x86-64 System V only. The bottom frame
// is marked as the end of the call chain, so unwinders (exceptions, backtrace()) stop there.
// Stacks come from a process-wide pool that only grows (allocated once, reused by every launch);
// the first kGuardedStacks stacks get a PROT_NONE guard page below them (an overflow faults
// instead of corrupting a neighbour; beyond that count guard pages would exhaust vm.max_map_count).
#pragma once

#include <cstddef>
#include <vector>

namespace simt {
namespace detail {

constexpr size_t kStackSize = 64 * 1024;  // usable bytes per fiber stack
constexpr size_t kGuardedStacks = 8192;

void switch_context(void** save_sp, void* load_sp);
void* init_context(char* stack_top, void (*entry)(void*), void* arg);

// Take n stacks from the pool (growing it as needed); each entry is the stack's top address.
void acquire_stacks(size_t n, std::vector<char*>& out);
void release_stacks(std::vector<char*>& stacks);

}  // namespace detail
}  // namespace simt
