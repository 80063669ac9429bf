// ThreadPool: persistent workers woken once per loop, so a loop per minibatch stays cheap.
#include "softreg/parallel.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sched.h>
#endif

namespace softreg {
namespace {

#if defined(__linux__)
// Keeps the calling thread on one CPU; false where the system refuses (the thread then stays free).
bool keep_calling_thread_on(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

// Keeps the caller's thread on the team's first CPU while a loop runs and then gives it back the CPUs
// it had: the thread belongs to the caller (the CLI, a Python interpreter), the pool only borrows it.
class CallerOnTeamCpu {
 public:
  explicit CallerOnTeamCpu(const std::vector<int>& cpus) {
    if (cpus.empty()) return;
    CPU_ZERO(&saved_);
    restore_ = sched_getaffinity(0, sizeof saved_, &saved_) == 0 && keep_calling_thread_on(cpus.front());
  }
  ~CallerOnTeamCpu() {
    if (restore_) sched_setaffinity(0, sizeof saved_, &saved_);
  }
  CallerOnTeamCpu(const CallerOnTeamCpu&) = delete;
  CallerOnTeamCpu& operator=(const CallerOnTeamCpu&) = delete;

 private:
  cpu_set_t saved_;
  bool restore_ = false;
};
#else
bool keep_calling_thread_on(int) {
  return false;
}
struct CallerOnTeamCpu {
  explicit CallerOnTeamCpu(const std::vector<int>&) {}
};
#endif

}  // namespace

std::vector<int> team_cpus(int threads) {
  std::vector<int> cpus;
#if defined(__linux__)
  const char* pin = std::getenv("SOFTREG_PIN");
  if (threads < 2 || (pin != nullptr && std::strcmp(pin, "0") == 0)) return cpus;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
  }
  if (cpus.size() != static_cast<std::size_t>(threads)) cpus.clear();
#else
  (void)threads;
#endif
  return cpus;
}

ThreadPool::ThreadPool(int threads) : cpus_(team_cpus(threads)) {
  for (int i = 1; i < threads; ++i) {
    workers_.emplace_back([this, i] {
      if (!cpus_.empty()) keep_calling_thread_on(cpus_[static_cast<std::size_t>(i)]);
      worker_loop(i);
    });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& worker : workers_)
    worker.join();
}

void ThreadPool::run_share(int thread_index) {
  const std::size_t stride = static_cast<std::size_t>(threads());
  for (std::size_t i = static_cast<std::size_t>(thread_index); i < tasks_; i += stride) {
    try {
      (*task_)(i);
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
}

void ThreadPool::worker_loop(int worker_index) {
  std::size_t seen_generation = 0;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      work_ready_.wait(lock, [&] { return stopping_ || generation_ != seen_generation; });
      if (stopping_) return;
      seen_generation = generation_;
    }
    run_share(worker_index);
    {
      std::lock_guard lock(mutex_);
      if (--pending_ == 0) work_done_.notify_one();
    }
  }
}

void ThreadPool::run(std::size_t tasks, const std::function<void(std::size_t)>& task) {
  if (workers_.empty() || tasks <= 1) {
    for (std::size_t i = 0; i < tasks; ++i)
      task(i);
    return;
  }
  const CallerOnTeamCpu caller_on_team_cpu(cpus_);
  {
    std::lock_guard lock(mutex_);
    task_ = &task;
    tasks_ = tasks;
    pending_ = static_cast<int>(workers_.size());
    error_ = nullptr;
    ++generation_;
  }
  work_ready_.notify_all();
  run_share(0);
  std::unique_lock lock(mutex_);
  work_done_.wait(lock, [&] { return pending_ == 0; });
  if (error_) std::rethrow_exception(error_);
}

void SpinBarrier::arrive_and_wait(std::size_t thread) {
  if (arrivals_.size() <= 1) return;
  // Only this thread writes its count, so a plain increment; the release publishes what it wrote before.
  std::atomic<std::uint64_t>& mine = arrivals_[thread].count;
  const std::uint64_t arrived = mine.load(std::memory_order_relaxed) + 1;
  mine.store(arrived, std::memory_order_release);
  for (std::size_t other = 0; other < arrivals_.size(); ++other) {
    if (other == thread) continue;
    // A count past ours is a thread already on to the next meeting: it has been at this one.
    spin_until([&] { return arrivals_[other].count.load(std::memory_order_acquire) >= arrived; });
  }
}

double core_round_trip_seconds(ThreadPool& pool, double seconds) {
  if (pool.threads() < 2) return 0;
  using Clock = std::chrono::steady_clock;
  constexpr std::int64_t kBlock = 100, kStop = -1;
  constexpr int kMinBlocks = 3;
  // Thread 0 writes an odd number, thread 1 answers with the next even one, so the line travels
  // there and back once per exchange. The waits pause, then yield. Where a thread loses its CPU (a busy
  // machine) an exchange can take a time slice: 2 ms past `seconds` the probe ends at the next
  // finished exchange, with what it has (a slow figure, as the threads' meetings would be).
  constexpr auto kOverrun = std::chrono::milliseconds(2);
  alignas(64) std::atomic<std::int64_t> line{0};
  double best = 0;
  pool.run(2, [&](std::size_t task) {
    if (task == 1) {
      for (std::int64_t seen = 0;;) {
        spin_until([&] { return (seen = line.load(std::memory_order_acquire)) % 2 != 0 || seen == kStop; });
        if (seen == kStop) return;
        line.store(seen + 1, std::memory_order_release);
      }
    }
    const auto deadline =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    std::int64_t value = 0;
    bool overran = false;
    for (int blocks = 0; !overran && (blocks < kMinBlocks || Clock::now() < deadline); ++blocks) {
      const auto block_start = Clock::now();
      std::int64_t done = 0;
      while (done < kBlock) {
        line.store(++value, std::memory_order_release);
        ++value;
        spin_until([&] { return line.load(std::memory_order_acquire) == value; });
        // Thread 1 has answered: it now waits for an odd number or the stop, so stopping is safe.
        if (++done % 16 == 0 && Clock::now() > deadline + kOverrun) {
          overran = true;
          break;
        }
      }
      const double per_exchange =
          std::chrono::duration<double>(Clock::now() - block_start).count() / static_cast<double>(done);
      if (best == 0 || per_exchange < best) best = per_exchange;
    }
    line.store(kStop, std::memory_order_release);
  });
  return best;
}

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace softreg
