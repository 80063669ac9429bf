// softreg bench: the seed's recipe timed phase by phase (process start, data load, training per epoch,
// evaluation, checkpoints, waiting at barriers) with throughput, peak memory and the distance to this
// machine's own floor, which a short probe measures: peak multiply-add throughput on the threads used and
// memory read bandwidth.
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "commands.hpp"
#include "common.hpp"
#include "recipe_flags.hpp"
#include "softreg/dataset.hpp"
#include "softreg/error.hpp"
#include "softreg/kernels.hpp"
#include "softreg/parallel.hpp"
#include "softreg/run.hpp"

namespace softreg::cli {
namespace {

struct BenchOptions {
  std::string data;
  long long epochs = 10;
  long long threads = hardware_threads();
  std::string kernel = "fast";
  std::string compute = "f32";
  double probe_seconds = 0.3;
  std::string simd;
  bool json = false;
  // Synthetic data of any shape instead of Fashion-MNIST (any of these given).
  std::optional<long long> classes;  // not given: 10 (0 given is a usage error, not the default)
  std::optional<long long> features;
  std::string dtype;
  std::optional<long long> rows;
  bool synthetic() const { return classes || features || !dtype.empty() || rows; }
};

// Seconds from the kernel's creation of this process to now, from /proc (10 ms resolution).
double seconds_since_process_start() {
  std::ifstream stat("/proc/self/stat"), uptime("/proc/uptime");
  std::string line;
  double up = 0;
  if (!std::getline(stat, line) || !(uptime >> up)) return 0;
  // Field 22 (starttime, in clock ticks since boot) comes after the parenthesised command name.
  std::istringstream fields(line.substr(line.rfind(')') + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
  }
  const double start = std::stod(field) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return std::max(0.0, up - start);
}

// The best of `runs` execs of this binary with --version, to its exit: what starting softreg costs
// (the dynamic loader, the shared libraries' initializers, static setup), at the steady clock's
// resolution rather than /proc's 10 ms. 0 when it cannot be measured.
double best_exec_seconds(int runs) {
  double best = 0;
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    char program[] = "/proc/self/exe", version[] = "--version";
    char* argv[] = {program, version, nullptr};
    posix_spawn_file_actions_t quiet;
    posix_spawn_file_actions_init(&quiet);
    posix_spawn_file_actions_addopen(&quiet, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t child = 0;
    const int spawned = posix_spawn(&child, program, &quiet, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&quiet);
    int status = 0;
    if (spawned != 0 || ::waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
      return 0;
    const double seconds = seconds_since(start);
    if (best == 0 || seconds < best) best = seconds;
  }
  return best;
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// Peak multiply-add throughput with `threads` threads probing at once (they share the machine).
// With bf16, the throughput of bfloat16 pair products (VDPBF16PS), the bfloat16 mode's floor.
double probe_flops(int threads, double seconds, bool bf16) {
  const auto probe = [&] {
    return bf16 ? probe_bf16_flops_per_second(seconds) : probe_fma_flops_per_second(seconds);
  };
  std::vector<double> results(static_cast<std::size_t>(threads));
  std::vector<std::thread> team;
  for (int t = 1; t < threads; ++t) {
    team.emplace_back([&, t] { results[static_cast<std::size_t>(t)] = probe(); });
  }
  results[0] = probe();
  for (auto& thread : team)
    thread.join();
  double total = 0;
  for (double r : results)
    total += r;
  return total;
}

// A fresh folder under the temp directory, removed with everything in it at the end of the scope.
class TempFolder {
 public:
  explicit TempFolder(const std::string& prefix) {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (!::mkdtemp(pattern.data())) throw Error::in_file(pattern, "cannot create a temp folder");
    path_ = pattern;
  }
  ~TempFolder() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

int run_bench(const BenchOptions& options, double startup_seconds,
              std::chrono::steady_clock::time_point main_start) {
  check_threads(options.threads);
  if (options.epochs < 1 || options.epochs > 1000) {
    throw UsageError(fmt::format("--epochs must be between 1 and 1000, got {}", options.epochs));
  }
  if (!(options.probe_seconds > 0 && options.probe_seconds <= 10)) {
    throw UsageError(fmt::format("--probe-seconds must be in (0, 10], got {}", options.probe_seconds));
  }
  if (!options.simd.empty()) {
    try {
      restrict_simd_targets(options.simd);
    } catch (const Error& e) {
      throw UsageError(fmt::format("--simd {}: not available here (available: {})", options.simd,
                                   fmt::join(simd_targets_available(), ", ")));
    }
  }
  if (options.synthetic() && !options.data.empty()) {
    throw UsageError(
        "--data and the synthetic data's shape (--classes, --features, --dtype, --rows) exclude "
        "each other: time your data, or a shape");
  }
  const auto load_start = std::chrono::steady_clock::now();
  TrainTestData data;
  std::string data_source;
  if (options.synthetic()) {
    const long long K = options.classes.value_or(10);
    const long long D = options.features.value_or(784);
    const long long N = options.rows.value_or(60000);
    if (K < 2 || K > kMaxClasses) {
      throw UsageError(fmt::format("--classes must be between 2 and {}, got {}", kMaxClasses, K));
    }
    if (D < 1 || D > (1 << 20))
      throw UsageError(fmt::format("--features must be between 1 and 1048576, got {}", D));
    if (N < 1 || N > 100'000'000 || static_cast<double>(N) * static_cast<double>(D) > 4e9) {
      throw UsageError(
          fmt::format("--rows must be between 1 and 1e8 with rows * features <= 4e9, got {}", N));
    }
    const ElementType element = options.dtype == "f32" ? ElementType::kF32 : ElementType::kU8;
    const auto test_rows = static_cast<std::size_t>(std::max(1LL, N / 6));
    data.train = synthetic_dataset(static_cast<std::size_t>(N), static_cast<std::size_t>(D),
                                   static_cast<int>(K), element, /*seed=*/1);
    data.test =
        synthetic_dataset(test_rows, static_cast<std::size_t>(D), static_cast<int>(K), element, /*seed=*/2);
    data_source = fmt::format("synthetic: {} x {} {}, {} classes, generated", N, D, element_name(element), K);
  } else {
    // Any data train takes with --data: an IDX folder, an image folder or an .npz.
    DataSource source;
    source.data = optional_path(options.data);
    source.threads = static_cast<int>(options.threads);
    LoadedData loaded = load_data(source);
    data = std::move(loaded.data);
    data_source = loaded.folder.string();
  }
  const double load_seconds = seconds_since(load_start);

  TrainConfig config;
  config.epochs = static_cast<int>(options.epochs);
  config.threads = static_cast<int>(options.threads);
  config.kernel = options.kernel == "naive" ? KernelChoice::kNaive : KernelChoice::kFast;
  config.compute = options.compute;
  check_recipe_flags(config);
  // The recipe as 'softreg train --no-plots' runs it, its checkpoints included (every 0.5 s and after
  // the last epoch), in a folder that is removed afterwards.
  const TempFolder folder("softreg-bench");
  TrainingRun run(config, data, {.folder = folder.path(), .data_folder = data_source, .live_curves = false});
  // The round trip before and after training (below): a host may move a vCPU to another die meanwhile.
  // Timed so that the whole process's figure can leave it out: 'train' does not do it.
  const auto round_trip_start = std::chrono::steady_clock::now();
  const double round_trip_before = core_round_trip_seconds(run.trainer().pool());
  const double round_trip_timing = seconds_since(round_trip_start);
  run.train();
  const std::vector<int> pinned_cpus = run.trainer().pool().cpus();  // where the team's threads ran
  const RunSummary summary = run.finish({.acceptance_checks = false, .pictures = false}).summary;
  const double process_seconds = startup_seconds + seconds_since(main_start) - round_trip_timing;
  const double exec_seconds = best_exec_seconds(/*runs=*/20);
  const std::vector<EpochMetrics>& epochs = summary.epochs;

  const double peak_mb = peak_rss_mb();  // before the read probe's own buffer
  // The probe runs after training so that it does not warm or heat the cores for the timed part.
  const bool bf16 = config.compute == "bf16";
  const double flops_per_second = probe_flops(config.threads, options.probe_seconds, bf16);
  // The data's own size, read by the team's thread count together: a floor training cannot beat.
  const std::size_t data_bytes = data.train.count * data.train.row_bytes();
  const double read_bytes_per_second = probe_read_bytes_per_second(data_bytes, config.threads);
  const double read_megabytes = static_cast<double>(probe_read_size(data_bytes)) / (1 << 20);  // what it read
  // On the team's own threads and CPUs: what each line they hand each other costs (two threads' epochs
  // on one host varied 1.5x with it; BENCHMARKS.md). 0 on one thread.
  const double round_trip_seconds = core_round_trip_seconds(run.trainer().pool());

  const double n = static_cast<double>(data.train.count), D = static_cast<double>(data.train.features()),
               K = static_cast<double>(data.train.num_classes);
  // Forward and backward multiply-adds as the trainer does them: two classes trained as one margin take
  // those of one class (the floor is then the data's reading, not half of it in arithmetic).
  const bool as_one =
      std::all_of(epochs.begin(), epochs.end(), [](const EpochMetrics& m) { return m.two_classes_as_one; });
  const double flops_per_epoch = 4 * n * D * (as_one ? 1.0 : K);
  const double bytes_per_epoch = static_cast<double>(data_bytes);  // read once
  std::vector<double> train_times, eval_times, barrier_waits;
  double barrier_wait = 0, train_total = 0, forward_total = 0, backward_total = 0;
  std::vector<double> thread_busy;  // each thread's busy seconds, summed over the team's epochs
  int split_by_classes = 0;         // epochs whose two threads split the batches by classes
  int solo = 0;                     // epochs one thread of the team trained alone (EpochWayChoice)
  int stalled = 0;                  // of those, the epochs (or their rests) after the team stalled
  for (const auto& m : epochs) {
    split_by_classes += m.split_by_classes ? 1 : 0;
    stalled += m.alone_after_stall ? 1 : 0;
    // An epoch one thread trained alone has no second thread to set beside the first.
    if (config.threads > 1 && m.threads_used == 1) {
      ++solo;
    } else {
      thread_busy.resize(std::max(thread_busy.size(), m.thread_busy_seconds.size()));
      for (std::size_t t = 0; t < m.thread_busy_seconds.size(); ++t)
        thread_busy[t] += m.thread_busy_seconds[t];
    }
    barrier_wait += m.barrier_wait_seconds;
    barrier_waits.push_back(m.barrier_wait_seconds);
    forward_total += m.forward_seconds;
    backward_total += m.backward_seconds;
    train_total += m.train_seconds;
    train_times.push_back(m.train_seconds);
    eval_times.push_back(m.eval_seconds);
  }
  std::vector<double> sorted = train_times;
  std::sort(sorted.begin(), sorted.end());
  const double train_per_epoch = sorted[sorted.size() / 2];  // the median: robust to a noisy neighbour
  const double train_best = sorted.front();
  double eval_total = 0;
  for (double e : eval_times)
    eval_total += e;
  const double eval_per_epoch = eval_total / static_cast<double>(epochs.size());
  const double compute_floor = flops_per_epoch / flops_per_second;
  const double memory_floor = bytes_per_epoch / read_bytes_per_second;
  const double floor = std::max(compute_floor, memory_floor);
  const EpochMetrics& last = epochs.back();
  const double barrier_wait_fraction = barrier_wait / train_total;
  const double forward_per_epoch = forward_total / static_cast<double>(epochs.size());
  const double backward_per_epoch = backward_total / static_cast<double>(epochs.size());
  const double checkpoint_each = summary.seconds_checkpoints / std::max(summary.checkpoints, 1);
  for (double& busy : thread_busy)
    busy /= static_cast<double>(epochs.size() - static_cast<std::size_t>(solo));
  // The busiest thread's time over the least busy one's: 1 when the cores are alike and the work even.
  const double busy_spread = thread_busy.empty()
                                 ? 1.0
                                 : *std::max_element(thread_busy.begin(), thread_busy.end()) /
                                       *std::min_element(thread_busy.begin(), thread_busy.end());
  const std::string target = config.kernel == KernelChoice::kFast ? simd_target() : "eigen";
  // Measured on this core the first time the update ran (the recipe's tile shape), reused since.
  const std::string broadcasts = config.kernel == KernelChoice::kFast ? update_broadcasts() : "";
  const bool amx = bf16 && bf16_uses_amx();

  if (options.json) {
    nlohmann::ordered_json j;
    j["threads"] = config.threads;
    j["epochs"] = config.epochs;
    j["kernel"] = options.kernel;
    j["compute"] = config.compute;
    j["bf16_amx"] = amx;
    j["simd_target"] = target;
    if (!broadcasts.empty()) j["update_broadcasts"] = broadcasts;
    if (!epochs.back().ask_ahead.empty()) j["ask_ahead"] = epochs.back().ask_ahead;
    j["classes"] = data.train.num_classes;
    j["two_classes_as_one"] = as_one;
    j["features"] = data.train.features();
    j["dtype"] = element_name(data.train.element);
    j["rows"] = data.train.count;
    j["startup_seconds"] = startup_seconds;
    j["exec_seconds"] = exec_seconds;
    j["load_seconds"] = load_seconds;
    j["seconds_load"] = load_seconds;
    j["train_seconds_per_epoch"] = train_per_epoch;
    j["train_seconds_per_epoch_best"] = train_best;
    j["train_seconds_each_epoch"] = train_times;
    j["eval_seconds"] = eval_per_epoch;
    j["checkpoint_seconds"] = checkpoint_each;
    j["checkpoints"] = summary.checkpoints;
    j["barrier_wait_fraction"] = barrier_wait_fraction;
    j["barrier_wait_seconds_each_epoch"] = barrier_waits;
    j["pinned_cpus"] = pinned_cpus;
    if (config.threads > 1) {
      j["split_by_classes_epochs"] = split_by_classes;
      j["one_thread_epochs"] = solo;
      j["alone_after_stall_epochs"] = stalled;
      j["core_round_trip_seconds"] = round_trip_seconds;
      j["core_round_trip_seconds_before"] = round_trip_before;
    }
    j["forward_seconds_per_epoch"] = forward_per_epoch;
    j["backward_seconds_per_epoch"] = backward_per_epoch;
    j["thread_busy_seconds_per_epoch"] = thread_busy;
    j["thread_busy_spread"] = busy_spread;
    j["process_seconds"] = process_seconds;
    j["examples_per_second"] = n / train_per_epoch;
    j["gflops"] = flops_per_epoch / train_per_epoch / 1e9;
    j["gbytes_per_second"] = bytes_per_epoch / train_per_epoch / 1e9;
    j["probe_gflops"] = flops_per_second / 1e9;
    j["probe_gflops_per_thread"] = flops_per_second / 1e9 / config.threads;
    j["probe_read_gbytes_per_second"] = read_bytes_per_second / 1e9;
    j["probe_read_megabytes"] = read_megabytes;
    j["floor_seconds_per_epoch"] = floor;
    j["ratio_to_floor"] = train_per_epoch / floor;
    j["peak_rss_mb"] = peak_mb;
    j["train_loss"] = last.train_loss;
    j["train_acc"] = last.train_acc;
    j["test_acc"] = last.test_acc;
    fmt::print("{}\n", j.dump(2));
    return kExitOk;
  }
  fmt::print("softreg bench: {} epoch{}, {} thread{}, {} kernel ({}{})\n", config.epochs,
             config.epochs == 1 ? "" : "s", config.threads, config.threads == 1 ? "" : "s", options.kernel,
             target,
             !bf16 ? ""
             : amx ? ", bfloat16 products on AMX tiles"
                   : ", bfloat16 products");
  fmt::print(
      "  process start      {:8.3f} s   (exec to main, 10 ms resolution; softreg --version: {:.4f} s, "
      "best of 20)\n",
      startup_seconds, exec_seconds);
  fmt::print("  data load          {:8.3f} s   ({})\n", load_seconds, data_source);
  fmt::print("  train per epoch    {:8.4f} s   median of {} (best {:.4f} s)\n", train_per_epoch,
             epochs.size(), train_best);
  fmt::print("  shape              {} classes, {} {} features{}\n", data.train.num_classes,
             data.train.features(), element_name(data.train.element),
             as_one ? " (trained as one margin: the multiply-adds of one class)" : "");
  fmt::print("  eval per epoch     {:8.4f} s   ({} test rows)\n", eval_per_epoch, data.test.count);
  fmt::print(
      "  checkpoint         {:8.4f} s   each (model.safetensors and metrics.csv), {} written (after the last "
      "epoch and every {:g} s)\n",
      checkpoint_each, summary.checkpoints, RunOptions{}.save_every_seconds);
  fmt::print(
      "  barrier wait       {:8.1f} %   of the training time (threads waiting for each other; "
      "first epoch {:.1f} %)\n",
      100 * barrier_wait_fraction, 100 * epochs.front().barrier_wait_seconds / train_times.front());
  fmt::print("  threads            {:8d}     {}\n", config.threads,
             pinned_cpus.empty() ? std::string("placed by the scheduler")
                                 : fmt::format("kept on CPUs {}", fmt::join(pinned_cpus, ", ")));
  if (config.threads > 1) {
    // The threads hand each other W's and the gradient sums' lines twice a batch.
    fmt::print(
        "  core to core       {:8.0f} ns  round trip of a cache line between threads 0 and 1 after training "
        "({:.0f} ns before){}\n",
        round_trip_seconds * 1e9, round_trip_before * 1e9,
        std::max(round_trip_seconds, round_trip_before) > kTwoDiesRoundTripSeconds
            ? "; slow: two dies? the threads' exchanges cost more"
            : "");
    fmt::print(
        "  split by classes   {:8d}     of the {} epochs (the trainer times each way that may pay, "
        "then keeps the fastest)\n",
        split_by_classes, epochs.size());
    if (solo > 0) {
      fmt::print(
          "  one thread         {:8d}     of the {} epochs (tried or kept for short rows; {} of them, or "
          "their "
          "rest, after the team stalled: a thread off its CPU, the machine busy)\n",
          solo, epochs.size(), stalled);
    }
  }
  // Two classes as one on one or two threads: both passes in one over the rows (fast_margin_pass), which
  // asks for the rows as it goes; the "backward" time is the step from the sums.
  const bool one_pass = as_one && config.threads <= 2;
  if (config.kernel == KernelChoice::kFast && one_pass) {
    fmt::print(
        "  both passes, step  {:8.4f} s, {:.4f} s per epoch (one pass over the rows for both, asking for "
        "the rows as it goes; each thread's mean, the rest is waiting)\n",
        forward_per_epoch, backward_per_epoch);
  } else if (config.kernel == KernelChoice::kFast) {
    fmt::print(
        "  forward, backward  {:8.4f} s, {:.4f} s per epoch (each thread's mean; the rest is waiting)\n",
        forward_per_epoch, backward_per_epoch);
    if (!epochs.back().ask_ahead.empty()) {
      fmt::print(
          "  next batch's rows  {}   (asked for during the backward pass, at the forward pass's start, or as "
          "it goes: learned from this run's batches)\n",
          epochs.back().ask_ahead);
    }
    if (!broadcasts.empty()) {
      fmt::print(
          "  update broadcasts  {}   (how each row's dlogit meets the multiply-adds: the faster, timed "
          "here)\n",
          broadcasts);
    }
    // On two threads the work is even (thread 0 also keeps the books), so a spread well above 1 is a
    // slower core or a vCPU another guest shares; on more, threads 0 and 1 alone sum a small model's halves.
    if (thread_busy.size() > 1) {
      fmt::print("  busy per thread    {:>8} s per epoch (the busiest {:.2f}x the least busy)\n",
                 fmt::format("{:.4f}", fmt::join(thread_busy, ", ")), busy_spread);
    }
  }
  fmt::print(
      "  whole process      {:8.3f} s   (exec to the last checkpoint, as train --no-plots; bench's timing of "
      "the cores' round trip left out)\n",
      process_seconds);
  fmt::print("  throughput         {:8.2f} M examples/s, {:.1f} GFLOP/s, {:.2f} GB/s of data\n",
             n / train_per_epoch / 1e6, flops_per_epoch / train_per_epoch / 1e9,
             bytes_per_epoch / train_per_epoch / 1e9);
  fmt::print(
      "  machine probe      {:8.1f} GFLOP/s peak{} on {} thread{}, {:.1f} GB/s read ({:.0f} MB, the data's "
      "size)\n",
      flops_per_second / 1e9,
      !bf16 ? ""
      : amx ? " (bfloat16, AMX)"
            : " (bfloat16)",
      config.threads, config.threads == 1 ? "" : "s", read_bytes_per_second / 1e9, read_megabytes);
  fmt::print("  floor per epoch    {:8.4f} s   (compute {:.4f} s, memory {:.4f} s)\n", floor, compute_floor,
             memory_floor);
  fmt::print("  ratio to floor     {:8.2f} x\n", train_per_epoch / floor);
  fmt::print("  peak memory        {:8.1f} MB   (resident, before the probe)\n", peak_mb);
  fmt::print("  final metrics      train loss {:.4f}, train acc {:.4f}, test acc {:.4f}\n", last.train_loss,
             last.train_acc, last.test_acc);
  return kExitOk;
}

}  // namespace

CommandRunner add_bench_command(CLI::App& app) {
  const double startup = seconds_since_process_start();
  const auto main_start = std::chrono::steady_clock::now();
  auto options = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Time the seed's recipe (or any shape, on synthetic data) phase by phase against this machine's floor");
  add_data_option(*cmd, options->data);
  cmd->add_option("--epochs", options->epochs, "Epochs to time")->capture_default_str();
  cmd->add_option("--threads", options->threads, "Threads (default: all cores)")->capture_default_str();
  cmd->add_option("--kernel", options->kernel, "fast (SIMD) or naive (the Eigen reference path)")
      ->check(CLI::IsMember({"fast", "naive"}))
      ->capture_default_str();
  cmd->add_option("--compute", options->compute,
                  "f32, or bf16: products in bfloat16 (train --compute); the floor is then the probe's "
                  "bfloat16 throughput")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--probe-seconds", options->probe_seconds, "How long the FMA probe runs")
      ->capture_default_str();
  cmd->add_option(
      "--simd", options->simd,
      "Force the fast path's instruction set, e.g. AVX2 or SSE4 (default: the best this CPU has)");
  cmd->add_flag("--json", options->json, "One JSON object for machines");
  cmd->add_option("--classes", options->classes, "Synthetic data with this many classes (default 10)");
  cmd->add_option("--features", options->features, "Synthetic data with this many features (default 784)");
  cmd->add_option("--dtype", options->dtype, "Synthetic data's values: u8 (scaled by 1/255) or f32")
      ->check(CLI::IsMember({"u8", "f32"}));
  cmd->add_option("--rows", options->rows, "Synthetic training rows (default 60000; test rows: a sixth)");
  return [options, startup, main_start] { return run_bench(*options, startup, main_start); };
}

}  // namespace softreg::cli
