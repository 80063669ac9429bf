// softreg train: the seed's recipe on Fashion-MNIST (or any IDX folder), with a per-epoch table,
// metrics.csv and summary.json in a run folder, and the seed's acceptance checks at the end.
#include <unistd.h>

#include <fmt/format.h>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>

#include "commands.hpp"
#include "softreg/dataset.hpp"
#include "softreg/error.hpp"
#include "softreg/io.hpp"
#include "softreg/metrics.hpp"
#include "softreg/parallel.hpp"
#include "softreg/train.hpp"
#include "terminal.hpp"

namespace softreg::cli {
namespace {

// Upper bounds that only catch typos; nothing in the math needs them.
constexpr long long kMaxThreads = 1024;
constexpr long long kMaxEpochs = 1'000'000;

struct TrainOptions {
  std::string data;
  long long epochs = 10;
  long long batch_size = 256;
  double lr = 0.1;
  unsigned long long seed = 0;
  double init_std = 0.01;
  long long threads = hardware_threads();
  std::string out;
  bool json = false;
  bool quiet = false;
  bool no_check = false;
};

TrainConfig validated_config(const TrainOptions& o) {
  if (!std::isfinite(o.lr) || o.lr <= 0) throw UsageError(fmt::format("--lr must be > 0, got {}", o.lr));
  if (o.batch_size < 1) throw UsageError(fmt::format("--batch-size must be >= 1, got {}", o.batch_size));
  if (o.epochs < 1 || o.epochs > kMaxEpochs) {
    throw UsageError(fmt::format("--epochs must be between 1 and {}, got {}", kMaxEpochs, o.epochs));
  }
  if (o.threads < 1 || o.threads > kMaxThreads) {
    throw UsageError(fmt::format("--threads must be between 1 and {}, got {}", kMaxThreads, o.threads));
  }
  if (!std::isfinite(o.init_std) || o.init_std < 0) {
    throw UsageError(fmt::format("--init-std must be >= 0, got {}", o.init_std));
  }
  TrainConfig config;
  config.lr = o.lr;
  config.batch_size = static_cast<std::size_t>(o.batch_size);
  config.epochs = static_cast<int>(o.epochs);
  config.seed = o.seed;
  config.init_std = o.init_std;
  config.threads = static_cast<int>(o.threads);
  return config;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int run_train(const TrainOptions& options, std::chrono::steady_clock::time_point process_start) {
  const TrainConfig config = validated_config(options);
  // With --json the summary is the only thing on stdout; the human-readable table moves to stderr.
  std::FILE* table = options.json ? stderr : stdout;
  const bool show_table = !options.quiet;
  ProgressBar progress(!options.quiet && is_terminal(STDERR_FILENO));

  const DataFiles files =
      locate_data(options.data.empty() ? std::nullopt : std::optional<std::filesystem::path>(options.data));
  const auto load_start = std::chrono::steady_clock::now();
  progress.message("loading " + files.folder.string() + " ...");
  const TrainTestData data = load_train_test(files);
  const double seconds_load = seconds_since(load_start);
  progress.clear();

  const std::filesystem::path run_folder =
      options.out.empty() ? create_run_folder("runs")
                          : (ensure_folder(options.out), std::filesystem::path(options.out));

  if (show_table) {
    fmt::print(table, "data: {} ({} train, {} test, {}x{}), loaded in {:.2f} s\n", files.folder.string(),
               data.train.count, data.test.count, data.train.height, data.train.width, seconds_load);
    fmt::print(table, "recipe: lr {}, batch size {}, {} epochs, seed {}, {} thread{}\n", config.lr,
               config.batch_size, config.epochs, config.seed, config.threads, config.threads == 1 ? "" : "s");
    fmt::print(table, "{:>5}  {:>10}  {:>9}  {:>8}  {:>9}  {:>7}\n", "epoch", "train_loss", "train_acc",
               "test_acc", "test_loss", "seconds");
    std::fflush(table);
  }

  Trainer trainer(config, data.train, data.test);
  RunSummary summary;
  summary.config = config;
  summary.data_folder = files.folder.string();
  summary.run_folder = run_folder.string();
  summary.train_examples = data.train.count;
  summary.test_examples = data.test.count;
  summary.seconds_load = seconds_load;

  const auto train_start = std::chrono::steady_clock::now();
  for (int epoch = 1; epoch <= config.epochs; ++epoch) {
    const std::string label = fmt::format("epoch {}/{}", epoch, config.epochs);
    const EpochMetrics m =
        trainer.run_epoch([&](std::size_t done, std::size_t total) { progress.update(label, done, total); });
    progress.clear();
    summary.epochs.push_back(m);
    if (show_table) {
      fmt::print(table, "{:>5}  {:>10.4f}  {:>9.4f}  {:>8.4f}  {:>9.4f}  {:>7.3f}\n", m.epoch, m.train_loss,
                 m.train_acc, m.test_acc, m.test_loss, m.seconds);
      std::fflush(table);
    }
    // Rewritten after every epoch so that a reader can follow the run as it goes.
    write_file_atomic(run_folder / "metrics.csv", metrics_csv(summary.epochs));
  }
  summary.seconds_train = seconds_since(train_start);

  const EpochMetrics& last = summary.epochs.back();
  if (!options.no_check) summary.checks = acceptance_checks(last.train_loss, last.train_acc, last.test_acc);
  summary.seconds_total = seconds_since(process_start);
  write_file_atomic(run_folder / "summary.json", summary_json(summary));

  if (options.json) fmt::print("{}", summary_json(summary));
  if (show_table) {
    fmt::print(table,
               "test accuracy {:.4f} after {} epochs; {:.2f} s in all (load {:.2f} s, train {:.2f} s)\n",
               last.test_acc, last.epoch, summary.seconds_total, summary.seconds_load, summary.seconds_train);
    fmt::print(table, "run folder: {}\n", run_folder.string());
  }
  std::string failed;
  for (const AcceptanceCheck& c : summary.checks) {
    if (!c.passed) failed += fmt::format("{}{} (got {:.4f})", failed.empty() ? "" : ", ", c.name, c.value);
  }
  if (!failed.empty()) {
    fmt::print(stderr, "softreg: acceptance check failed: {}\n", failed);
    return kExitFailure;
  }
  if (show_table && !summary.checks.empty()) {
    fmt::print(table, "acceptance checks passed: train loss < 0.5, train acc > 0.7, test acc > 0.7\n");
  }
  return kExitOk;
}

}  // namespace

CommandRunner add_train_command(CLI::App& app) {
  const auto process_start = std::chrono::steady_clock::now();
  auto options = std::make_shared<TrainOptions>();
  CLI::App* cmd =
      app.add_subcommand("train", "Train softmax regression with the seed's recipe (minibatch SGD)");
  cmd->add_option(
      "--data", options->data,
      "Folder with train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
      "t10k-labels-idx1-ubyte[.gz] (default: $SOFTREG_DATA, ./data/fashion-mnist, "
      "~/.cache/softreg/fashion-mnist, /usr/share/datasets/fashion-mnist)");
  cmd->add_option("--epochs", options->epochs, "Passes over the training set")->capture_default_str();
  cmd->add_option("--batch-size", options->batch_size,
                  "Examples per SGD step (the last batch may be smaller)")
      ->capture_default_str();
  cmd->add_option("--lr", options->lr, "Learning rate")->capture_default_str();
  cmd->add_option("--seed", options->seed, "Seed for the initial weights and the shuffling")
      ->capture_default_str();
  cmd->add_option("--init-std", options->init_std, "Standard deviation of the initial weights")
      ->capture_default_str();
  cmd->add_option("--threads", options->threads, "Threads (default: all cores)")->capture_default_str();
  cmd->add_option("--out", options->out,
                  "Run folder (default: runs/<UTC timestamp>, with runs/latest pointing at it)");
  cmd->add_flag("--json", options->json, "Print only the summary JSON on stdout (the table goes to stderr)");
  cmd->add_flag("--quiet", options->quiet, "No progress bar and no table");
  cmd->add_flag("--no-check", options->no_check, "Skip the seed's acceptance checks");
  return [options, process_start] { return run_train(*options, process_start); };
}

}  // namespace softreg::cli
