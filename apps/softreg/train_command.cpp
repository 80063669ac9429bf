// softreg train: the seed's recipe on Fashion-MNIST (or any IDX folder), with a per-epoch table, a run
// folder (metrics.csv, summary.json, model.safetensors saved after every epoch), the seed's acceptance
// checks at the end, and Ctrl-C / --resume that continue a run bit for bit.
#include <unistd.h>

#include <fmt/format.h>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <optional>

#include "commands.hpp"
#include "common.hpp"
#include "pictures.hpp"
#include "softreg/dataset.hpp"
#include "softreg/error.hpp"
#include "softreg/io.hpp"
#include "softreg/metrics.hpp"
#include "softreg/model_io.hpp"
#include "softreg/parallel.hpp"
#include "softreg/plot.hpp"
#include "softreg/train.hpp"
#include "terminal.hpp"

namespace softreg::cli {
namespace {

// Upper bound that only catches typos.
constexpr long long kMaxEpochs = 1'000'000;
// Table rows kept in the live terminal view (all of them are in metrics.csv).
constexpr std::size_t kLiveTableRows = 15;
// The conventional exit status of a program stopped by SIGINT.
constexpr int kExitInterrupted = 130;

std::atomic<bool> g_stop_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the SIGINT handler needs a lock-free flag");

extern "C" void on_sigint(int) {
  g_stop_requested.store(true);
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C stops at once
}

struct TrainOptions {
  std::string data;
  long long epochs = 10;
  long long batch_size = 256;
  double lr = 0.1;
  unsigned long long seed = 0;
  double init_std = 0.01;
  long long threads = hardware_threads();
  std::string out;
  std::string resume;
  bool json = false;
  bool quiet = false;
  bool no_check = false;
  bool no_plots = false;
  std::string kernel = "fast";
  long long grid_count = 6;
  bool misclassified = false;
  // Set after parsing: which recipe flags the user gave (a resumed run keeps its checkpoint's recipe).
  std::vector<std::string> recipe_flags_given;
  bool epochs_given = false;
};

void check_epochs(long long epochs) {
  if (epochs < 1 || epochs > kMaxEpochs) {
    throw UsageError(fmt::format("--epochs must be between 1 and {}, got {}", kMaxEpochs, epochs));
  }
}

void check_grid_count(long long n) {
  if (n < 1) throw UsageError(fmt::format("--n must be >= 1, got {}", n));
}

TrainConfig validated_config(const TrainOptions& o) {
  if (!std::isfinite(o.lr) || o.lr <= 0) throw UsageError(fmt::format("--lr must be > 0, got {}", o.lr));
  if (o.batch_size < 1) throw UsageError(fmt::format("--batch-size must be >= 1, got {}", o.batch_size));
  check_epochs(o.epochs);
  check_threads(o.threads);
  check_grid_count(o.grid_count);
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
  config.kernel = o.kernel == "naive" ? KernelChoice::kNaive : KernelChoice::kFast;
  return config;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Where a run starts from: a fresh recipe, or a checkpoint in a run folder.
struct RunStart {
  TrainConfig config;
  std::optional<TrainerState> state;
  std::vector<EpochMetrics> history;
  std::optional<std::filesystem::path> data;
  std::optional<std::filesystem::path> run_folder;
};

RunStart resume_from(const TrainOptions& options) {
  if (!options.recipe_flags_given.empty()) {
    throw UsageError(
        options.recipe_flags_given.front() +
        " cannot be changed with --resume (the checkpoint's recipe is used; --epochs may be raised)");
  }
  const std::filesystem::path folder = options.resume;
  const std::filesystem::path model_path = folder / "model.safetensors";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(model_path, ec)) {
    throw Error("--resume " + folder.string() + ": no model.safetensors there (not a softreg run folder?)");
  }
  const ModelFile checkpoint = load_model(model_path);
  RunStart start;
  start.config = config_from_metadata(checkpoint, model_path.string());
  check_grid_count(options.grid_count);
  if (options.epochs_given) {
    check_epochs(options.epochs);
    start.config.epochs = static_cast<int>(options.epochs);
  }
  start.state = trainer_state_from(checkpoint, model_path.string());
  if (start.state->epochs_done > start.config.epochs) {
    throw UsageError(fmt::format("--epochs {} is less than the {} epochs {} already has", start.config.epochs,
                                 start.state->epochs_done, folder.string()));
  }
  std::vector<EpochMetrics> history = read_metrics_csv(folder / "metrics.csv");
  if (history.size() < static_cast<std::size_t>(start.state->epochs_done)) {
    throw Error::in_file(folder / "metrics.csv", fmt::format("has {} epochs, the checkpoint {}",
                                                             history.size(), start.state->epochs_done));
  }
  history.resize(static_cast<std::size_t>(start.state->epochs_done));
  start.history = std::move(history);
  start.data = optional_path(options.data);
  if (!start.data) {
    if (auto it = checkpoint.metadata.find("data_folder"); it != checkpoint.metadata.end())
      start.data = it->second;
  }
  start.run_folder = folder;
  return start;
}

int run_train(const TrainOptions& options, std::chrono::steady_clock::time_point process_start) {
  RunStart start;
  if (options.resume.empty()) {
    start.config = validated_config(options);
    start.data = optional_path(options.data);
  } else {
    start = resume_from(options);
  }
  const TrainConfig& config = start.config;

  g_stop_requested = false;
  std::signal(SIGINT, on_sigint);
  // With --json the summary is the only thing on stdout; the human-readable table moves to stderr.
  std::FILE* table = options.json ? stderr : stdout;
  const bool show_table = !options.quiet;
  // On a terminal the curves are drawn in braille above the table, redrawn after every epoch; the
  // table is then part of that view, and goes to stdout as plain lines only when stdout is not a terminal.
  const bool live = !options.quiet && is_terminal(STDERR_FILENO);
  const bool table_lines = show_table && (!live || (!options.json && !is_terminal(STDOUT_FILENO)));
  ProgressBar progress(live);
  LiveView live_view(live);

  const DataFiles files = locate_data(start.data);
  const auto load_start = std::chrono::steady_clock::now();
  progress.message("loading " + files.folder.string() + " ...");
  const TrainTestData data = load_train_test(files);
  const double seconds_load = seconds_since(load_start);
  progress.clear();

  std::filesystem::path run_folder;
  if (start.run_folder) {
    run_folder = *start.run_folder;
  } else if (options.out.empty()) {
    run_folder = create_run_folder("runs");
  } else {
    run_folder = options.out;
    ensure_folder(run_folder);
  }

  Trainer trainer(config, data.train, data.test);
  if (start.state) trainer.restore(*start.state);

  RunSummary summary;
  summary.config = config;
  summary.data_folder = files.folder.string();
  summary.run_folder = run_folder.string();
  summary.train_examples = data.train.count;
  summary.test_examples = data.test.count;
  summary.seconds_load = seconds_load;
  summary.epochs = std::move(start.history);

  const std::string table_header = fmt::format("{:>5}  {:>10}  {:>9}  {:>8}  {:>9}  {:>7}", "epoch",
                                               "train_loss", "train_acc", "test_acc", "test_loss", "seconds");
  const auto format_row = [](const EpochMetrics& m) {
    return fmt::format("{:>5}  {:>10.4f}  {:>9.4f}  {:>8.4f}  {:>9.4f}  {:>7.3f}", m.epoch, m.train_loss,
                       m.train_acc, m.test_acc, m.test_loss, m.seconds);
  };
  const auto print_row = [&](const EpochMetrics& m) {
    if (!table_lines) return;
    fmt::print(table, "{}\n", format_row(m));
    std::fflush(table);
  };
  const auto redraw_live = [&] {
    if (!live) return;
    std::vector<std::string> lines = plot::braille_chart(curve_series(summary.epochs), config.epochs,
                                                         /*width=*/60, /*height=*/8, /*color=*/true);
    lines.push_back(table_header);
    const std::size_t shown = std::min<std::size_t>(summary.epochs.size(), kLiveTableRows);
    for (std::size_t i = summary.epochs.size() - shown; i < summary.epochs.size(); ++i) {
      lines.push_back(format_row(summary.epochs[i]));
    }
    live_view.draw(lines);
  };
  if (show_table) {
    fmt::print(table, "data: {} ({} train, {} test, {}x{}), loaded in {:.2f} s\n", files.folder.string(),
               data.train.count, data.test.count, data.train.height, data.train.width, seconds_load);
    fmt::print(table, "recipe: lr {}, batch size {}, {} epochs, seed {}, {} thread{}\n", config.lr,
               config.batch_size, config.epochs, config.seed, config.threads, config.threads == 1 ? "" : "s");
    if (start.state) {
      fmt::print(table, "resuming {} at epoch {}, batch {}\n", run_folder.string(),
                 start.state->epochs_done + 1, start.state->batches_done);
    }
    if (table_lines) fmt::print(table, "{}\n", table_header);
    for (const EpochMetrics& m : summary.epochs)
      print_row(m);
  }
  redraw_live();

  const auto save_checkpoint = [&] {
    ModelFile file;
    file.model = trainer.model();
    file.class_names = default_class_names(trainer.model().classes());
    file.height = static_cast<int>(data.train.height);
    file.width = static_cast<int>(data.train.width);
    file.metadata =
        checkpoint_metadata(config, trainer.state(),
                            summary.epochs.empty() ? nullptr : &summary.epochs.back(), files.folder.string());
    save_model(run_folder / "model.safetensors", file);
    write_file_atomic(run_folder / "metrics.csv", metrics_csv(summary.epochs));
  };

  const auto train_start = std::chrono::steady_clock::now();
  while (trainer.epochs_done() < config.epochs) {
    const std::string label = fmt::format("epoch {}/{}", trainer.epochs_done() + 1, config.epochs);
    const std::optional<EpochMetrics> m =
        trainer.run_epoch([&](std::size_t done, std::size_t total) { progress.update(label, done, total); },
                          [] { return g_stop_requested.load(); });
    progress.clear();
    if (m) {
      summary.epochs.push_back(*m);
      print_row(*m);
      redraw_live();
      // Redrawn and replaced atomically after every epoch: a viewer open on it follows training.
      if (!options.no_plots) write_curves(run_folder, summary.epochs, config.epochs);
    }
    // Saved after every epoch (and at a stop), so an interrupted run loses at most one batch.
    save_checkpoint();
    if (g_stop_requested && trainer.epochs_done() < config.epochs) {
      const TrainerState state = trainer.state();
      const std::string where =
          state.batches_done > 0
              ? fmt::format("in epoch {} after {} batches", state.epochs_done + 1, state.batches_done)
              : fmt::format("after epoch {}", state.epochs_done);
      fmt::print(stderr, "softreg: interrupted {}; saved {}; resume with: softreg train --resume {}\n", where,
                 (run_folder / "model.safetensors").string(), run_folder.string());
      return kExitInterrupted;
    }
  }
  std::signal(SIGINT, SIG_DFL);
  summary.seconds_train = seconds_since(train_start);

  std::vector<std::string> pictures;
  if (!options.no_plots) {
    progress.message("drawing pictures ...");
    write_curves(run_folder, summary.epochs, config.epochs);
    const Evaluation test = evaluate(trainer.model(), data.test, trainer.pool());
    pictures = write_model_pictures(run_folder, trainer.model(), data.test, test.predictions,
                                    default_class_names(trainer.model().classes()),
                                    {static_cast<int>(options.grid_count), options.misclassified});
    pictures.insert(pictures.begin(), {"curves.png", "curves.svg"});
    progress.clear();
  }

  const EpochMetrics& last = summary.epochs.back();
  if (!options.no_check) summary.checks = acceptance_checks(last.train_loss, last.train_acc, last.test_acc);
  summary.seconds_total = seconds_since(process_start);
  write_file_atomic(run_folder / "summary.json", summary_json(summary));

  if (options.json) fmt::print("{}", summary_json(summary));
  if (show_table) {
    fmt::print(table,
               "test accuracy {:.4f} after {} epochs; {:.2f} s in all (load {:.2f} s, train {:.2f} s)\n",
               last.test_acc, last.epoch, summary.seconds_total, summary.seconds_load, summary.seconds_train);
    fmt::print(table, "run folder: {}{}\n", run_folder.string(),
               pictures.empty() ? "" : fmt::format(" (pictures: {})", fmt::join(pictures, ", ")));
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
  add_data_option(*cmd, options->data);
  CLI::Option* epochs =
      cmd->add_option("--epochs", options->epochs, "Passes over the training set (in all, when resuming)")
          ->capture_default_str();
  const std::vector<CLI::Option*> recipe = {
      cmd->add_option("--batch-size", options->batch_size,
                      "Examples per SGD step (the last batch may be smaller)")
          ->capture_default_str(),
      cmd->add_option("--lr", options->lr, "Learning rate")->capture_default_str(),
      cmd->add_option("--seed", options->seed, "Seed for the initial weights and the shuffling")
          ->capture_default_str(),
      cmd->add_option("--init-std", options->init_std, "Standard deviation of the initial weights")
          ->capture_default_str(),
      cmd->add_option("--threads", options->threads,
                      "Threads (default: all cores); results depend on the count")
          ->capture_default_str(),
  };
  CLI::Option* out = cmd->add_option(
      "--out", options->out, "Run folder (default: runs/<UTC timestamp>, with runs/latest pointing at it)");
  cmd->add_option(
         "--resume", options->resume,
         "Continue the run in this folder from its model.safetensors (after Ctrl-C or to add epochs)")
      ->excludes(out);
  cmd->add_flag("--json", options->json, "Print only the summary JSON on stdout (the table goes to stderr)");
  cmd->add_flag("--quiet", options->quiet, "No progress bar and no table");
  cmd->add_flag("--no-check", options->no_check, "Skip the seed's acceptance checks");
  cmd->add_option("--kernel", options->kernel, "fast (SIMD, 10 classes) or naive (the Eigen reference path)")
      ->check(CLI::IsMember({"fast", "naive"}))
      ->capture_default_str();
  cmd->add_flag("--no-plots", options->no_plots,
                "Draw no pictures (curves, predictions, confusion matrix, weight templates)");
  cmd->add_option("--n", options->grid_count, "Test images in predictions.png")->capture_default_str();
  cmd->add_flag("--misclassified", options->misclassified, "predictions.png shows only wrong predictions");
  return [options, process_start, epochs, recipe] {
    options->epochs_given = epochs->count() > 0;
    for (const CLI::Option* o : recipe) {
      if (o->count() > 0) options->recipe_flags_given.push_back(o->get_name());
    }
    return run_train(*options, process_start);
  };
}

}  // namespace softreg::cli
