// The helper threads that run blocks next to the launching thread. See pool.h.
#include "simt/pool.h"

#include <unistd.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace simt {
namespace detail {
namespace {

struct Job {
  const std::function<void(int, int)>* work;
  int want;          // helpers requested
  bool all;          // every requested helper must take part (cooperative launch)
  int joined = 0;    // helpers that took part
  int finished = 0;  // helpers whose work() returned
  bool closed = false;
  bool go = false;   // all: the participant count is fixed, start
  int count = 0;
};

struct Pool {
  std::mutex mu;
  std::condition_variable cv;       // helpers wait here for a job (or for `go`)
  std::condition_variable done_cv;  // the caller waits here for joins and finishes
  Job* job = nullptr;
  uint64_t gen = 0;
  int threads = 0;
  pid_t pid = getpid();

  void ensure(int n) {  // with mu held
    for (; threads < n; ++threads) std::thread(&Pool::helper, this, gen).detach();
  }

  void helper(uint64_t seen) {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return gen != seen; });
      seen = gen;
      Job* j = job;
      if (!j || j->closed || j->joined >= j->want) continue;
      const int index = ++j->joined;
      done_cv.notify_all();
      if (j->all) cv.wait(lock, [&] { return j->go; });
      lock.unlock();
      (*j->work)(index, j->count);  // j outlives this: the caller waits for `finished`
      lock.lock();
      j->finished++;
      done_cv.notify_all();
    }
  }
};

Pool& pool() {
  static std::mutex mu;
  static Pool* p = nullptr;
  std::lock_guard<std::mutex> lock(mu);
  if (!p || p->pid != getpid()) p = new Pool;  // after fork() the helpers are gone: start over
  return *p;
}

}  // namespace

void run_parallel(const std::function<void(int, int)>& work, int max_workers, bool all) {
  if (max_workers <= 1) return work(0, 1);
  Pool& p = pool();
  std::unique_lock<std::mutex> lock(p.mu);
  if (p.job) {  // another host thread's launch holds the pool
    lock.unlock();
    return work(0, 1);
  }
  p.ensure(max_workers - 1);
  Job j{&work, max_workers - 1, all};
  p.job = &j;
  p.gen++;
  p.cv.notify_all();
  if (all) {
    p.done_cv.wait(lock, [&] { return j.joined == j.want; });
    j.count = j.joined + 1;
    j.go = true;
    p.cv.notify_all();
  }
  lock.unlock();
  work(0, j.count);
  lock.lock();
  j.closed = true;  // helpers that wake up from now on skip this launch
  p.job = nullptr;
  p.done_cv.wait(lock, [&] { return j.finished == j.joined; });
}

}  // namespace detail
}  // namespace simt
