// The OS threads that run blocks (internal to the SIMT layer).
//
// Contract: run_parallel(work, max_workers, all) calls work(index, count) on the calling thread
// (index 0) and on up to max_workers-1 pooled helper threads, and returns when every call
// returned. all=false (normal launches): a helper takes part only if it wakes up before the
// caller finished its own share, so a launch never waits for a thread the OS has not scheduled
// yet (on a loaded machine that wait is a whole scheduler tick); `count` is then meaningless.
// all=true (cooperative launches): the caller waits until every requested helper has joined, and
// `count` is the number of participants, fixed before any of them starts. Helpers are created
// lazily, detached, and recreated after fork(). One launch uses the pool at a time; a concurrent
// launch from another host thread runs on its own thread alone.
#pragma once

#include <functional>

namespace simt {
namespace detail {

void run_parallel(const std::function<void(int index, int count)>& work, int max_workers, bool all);

}  // namespace detail
}  // namespace simt
