// A small fixed pool of threads for data-parallel loops. Work is split into tasks by index and each
// task writes only its own results, so the caller can combine them in index order: results depend on
// the number of tasks, never on thread timing.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace softreg {

class ThreadPool {
 public:
  /// A pool that runs loops on `threads` threads in all (the caller's thread is one of them). When the
  /// team is exactly as large as the set of CPUs this process may run on (the default: all cores),
  /// each of its threads is kept on a CPU of its own (see team_cpus).
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }
  /// The CPU each thread of the team is kept on (thread i on cpus()[i]; the caller's thread only while
  /// run() runs, then it gets its own CPUs back), or empty when the scheduler places the threads.
  const std::vector<int>& cpus() const { return cpus_; }

  /// Calls task(i) for i in [0, tasks), spread over the threads; returns when all are done.
  /// Task i runs on thread i % threads(). The first exception a task throws is rethrown here.
  void run(std::size_t tasks, const std::function<void(std::size_t)>& task);

 private:
  void worker_loop(int worker_index);
  void run_share(int thread_index);

  const std::vector<int> cpus_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable work_done_;
  const std::function<void(std::size_t)>* task_ = nullptr;
  std::size_t tasks_ = 0;
  std::size_t generation_ = 0;
  int pending_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

/// Waits until done() is true: spins (with a pause) for the microseconds threads usually wait for each
/// other, then yields, so a thread whose partner lost its CPU does not hold its own for a time slice.
template <class Done>
void spin_until(const Done& done) {
  for (int spins = 0; !done(); ++spins) {
    if (spins > 2000) {
      std::this_thread::yield();
    } else {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }
}

/// A reusable barrier for a fixed team of threads that meet many times a second (once or twice per
/// minibatch): it spins briefly, then yields, instead of sleeping on a condition variable. Each thread
/// counts its arrivals in a line of its own and waits until every other count has caught up, so a
/// meeting costs one line's trip from the last thread to arrive to each waiting one; a shared counter
/// and generation cost the last one two locked round trips first (on two dies, about 300 ns each).
class SpinBarrier {
 public:
  explicit SpinBarrier(int threads) : arrivals_(static_cast<std::size_t>(std::max(threads, 1))) {}
  /// Thread `thread` (0 to threads - 1, each used by one thread) arrives and waits for the others.
  void arrive_and_wait(std::size_t thread);

 private:
  struct alignas(128) Arrivals {  // 128: the adjacent line prefetcher fetches lines in pairs
    std::atomic<std::uint64_t> count{0};
  };
  std::vector<Arrivals> arrivals_;
};

/// How long a cache line takes to go from the pool's thread 0 to its thread 1 and back, in seconds: the
/// best of blocks of 100 exchanges of one line, at least 3, over about `seconds` in all; 0 for a pool of one
/// thread. A team's threads meet and hand each other W and the gradient sums twice a batch, so this is
/// the price of every line they share: about 70 ns for two cores of one die, 350 ns for two dies (what
/// a cloud host gives a 2-vCPU guest varies from hour to hour; BENCHMARKS.md).
double core_round_trip_seconds(ThreadPool& pool, double seconds = 0.02);
/// A round trip above this is taken for two dies (the trainer's choice of split, bench's remark): 50-70
/// ns was measured within one die, 280-370 ns across two.
constexpr double kTwoDiesRoundTripSeconds = 150e-9;

/// The number of hardware threads, at least 1.
int hardware_threads();

/// The CPUs a team of `threads` threads is kept on, one each: the CPUs this process may run on, when
/// there are exactly `threads` of them (and the environment does not say SOFTREG_PIN=0); otherwise
/// none. Why: a thread that starts (or wakes) next to a busy one can be put on that one's CPU, and
/// two threads of a team that meets twice a batch then take turns on one CPU until the scheduler moves
/// one; on a 2-vCPU KVM guest that cost the first epoch of most runs 8-28 ms (BENCHMARKS.md). With
/// fewer threads than CPUs the scheduler keeps its freedom: other processes may need the rest.
std::vector<int> team_cpus(int threads);

}  // namespace softreg
