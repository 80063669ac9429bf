// A small fixed pool of threads for data-parallel loops. Work is split into tasks by index and each
// task writes only its own results, so the caller can combine them in index order: results depend on
// the number of tasks, never on thread timing.
#pragma once

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
  /// A pool that runs loops on `threads` threads in all (the caller's thread is one of them).
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  /// Calls task(i) for i in [0, tasks), spread over the threads; returns when all are done.
  /// Task i runs on thread i % threads(). The first exception a task throws is rethrown here.
  void run(std::size_t tasks, const std::function<void(std::size_t)>& task);

 private:
  void worker_loop(int worker_index);
  void run_share(int thread_index);

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

/// A reusable barrier for a fixed team of threads that meet many times a second (twice per minibatch):
/// it spins briefly, then yields, instead of sleeping on a condition variable.
class SpinBarrier {
 public:
  explicit SpinBarrier(int threads) : threads_(threads) {}
  void arrive_and_wait();

 private:
  const int threads_;
  std::atomic<int> arrived_{0};
  std::atomic<std::uint32_t> generation_{0};
};

/// The number of hardware threads, at least 1.
int hardware_threads();

}  // namespace softreg
