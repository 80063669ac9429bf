// softreg train: the seed's recipe on Fashion-MNIST (or any IDX folder), with a per-epoch table and a
// live terminal chart, Ctrl-C and --resume. The run itself (its folder, checkpoints, checks, pictures)
// is the library's softreg::TrainingRun; this file parses flags, turns SIGINT into a stop request and prints.
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>

#include "commands.hpp"
#include "common.hpp"
#include "dashboard.hpp"
#include "download_command.hpp"
#include "recipe_flags.hpp"
#include "softreg/dataset.hpp"
#include "softreg/error.hpp"
#include "softreg/plot.hpp"
#include "softreg/run.hpp"
#include "terminal.hpp"

namespace softreg::cli {
namespace {

// Table rows kept in the live terminal view (all of them are in metrics.csv).
constexpr std::size_t kLiveTableRows = 15;

struct TrainOptions {
  DataSourceFlags data;
  RecipeFlags recipe;
  std::string out;
  std::string resume;
  bool json = false;
  bool quiet = false;
  bool check = false;     // the seed's acceptance checks on any data
  bool no_check = false;  // nor on Fashion-MNIST
  bool no_plots = false;
  long long grid_count = 6;
  double save_every = RunOptions{}.save_every_seconds;
  bool misclassified = false;
  bool download = false;
  std::vector<std::string> mirrors;
  bool serve = false;
  std::string serve_host = "127.0.0.1";
  long long serve_port = 8765;
};

void check_grid_count(long long n) {
  if (n < 1) throw UsageError(fmt::format("--n must be >= 1, got {}", n));
}

void check_save_every(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds))
    throw UsageError(fmt::format("--save-every must be a number of seconds, 0 or more, got {}", seconds));
}

// The saved run that --resume names, with --epochs applied; the recipe flags may not change, but for
// --threads where the results do not depend on it (the fast kernel).
SavedRun saved_run_to_resume(const TrainOptions& options) {
  SavedRun saved;
  try {
    saved = load_saved_run(options.resume);
  } catch (const Error& e) {
    throw Error(std::string("--resume ") + e.what());
  }
  const bool any_threads = saved.config.kernel == KernelChoice::kFast;
  std::vector<std::string> fixed = options.recipe.given;
  if (options.recipe.kernel_given) fixed.insert(fixed.begin(), "--kernel");
  if (options.recipe.compute_given) fixed.insert(fixed.begin(), "--compute");
  if (any_threads) std::erase(fixed, std::string("--threads"));
  if (!fixed.empty()) {
    throw UsageError(
        fmt::format("{} cannot be changed with --resume (the checkpoint's recipe is used; --epochs "
                    "may be raised{})",
                    fixed.front(), any_threads ? ", --threads set" : ""));
  }
  if (any_threads) {
    // The same results on any count: the one asked for, else the run's own but no more than the cores here
    // (a run from a larger machine would otherwise crowd this one's cores).
    const bool given = std::find(options.recipe.given.begin(), options.recipe.given.end(), "--threads") !=
                       options.recipe.given.end();
    if (given) check_threads(options.recipe.threads);
    saved.config.threads =
        given ? static_cast<int>(options.recipe.threads) : std::min(saved.config.threads, hardware_threads());
  }
  check_grid_count(options.grid_count);
  if (options.recipe.epochs_given && saved.config.optimizer == "lbfgs")
    throw UsageError("--epochs does not apply to --optimizer lbfgs, which runs to --tol or --max-iter");
  if (options.recipe.epochs_given) {
    check_epochs(options.recipe.epochs);
    saved.config.epochs = static_cast<int>(options.recipe.epochs);
  }
  if (saved.state.epochs_done > saved.config.epochs) {
    throw UsageError(fmt::format("--epochs {} is less than the {} epochs {} already has", saved.config.epochs,
                                 saved.state.epochs_done, options.resume));
  }
  return saved;
}

// train --dataset NAME --download: when the data set is nowhere to be found, download it first.
void fetch_dataset_if_missing(const DataSource& source, const std::vector<std::string>& mirrors) {
  if (source.dataset.empty()) throw UsageError("--download needs --dataset NAME");
  if (source.data) return;  // an explicit folder is looked in alone
  const KnownDataset& dataset = known_dataset(source.dataset);
  if (find_dataset(dataset)) return;
  const std::filesystem::path folder = default_download_folder(dataset);
  fmt::print(stderr, "softreg: {} is not here yet; downloading it into {}\n", dataset.name, folder.string());
  try {
    DownloadOptions download;
    download.mirrors = mirrors;
    download_with_progress(dataset, folder, download);
  } catch (const DownloadInterrupted&) {
    throw Error("download interrupted; nothing unverified was left in " + folder.string());
  }
}

int run_train(const TrainOptions& options, std::chrono::steady_clock::time_point process_start) {
  if (options.serve_port < 0 || options.serve_port > 65535)
    throw UsageError(
        fmt::format("--serve-port must be from 0 to 65535 (0: any free port), got {}", options.serve_port));
  check_save_every(options.save_every);
  std::optional<SavedRun> saved;
  if (!options.resume.empty()) saved = saved_run_to_resume(options);
  if (!saved) check_grid_count(options.grid_count);  // resuming checks it with the saved run
  const TrainConfig config = saved ? saved->config : recipe_config(options.recipe);
  warn_of_more_threads_than_cores(config.threads);
  // The data: from the flags, else (resuming) where the run's data came from, with the options the flags
  // give (--skip-bad-images, say) applied to it.
  DataSource source = options.data.source(config.seed, config.threads);
  if (!names_data(source) && saved) {
    if (!saved->data_source.empty()) {
      const DataSource options_given = source;
      source = source_from_json(saved->data_source, options.resume + "/model.safetensors");
      apply_options(options_given, source);
    } else if (!saved->data_folder.empty()) {
      source.data = saved->data_folder;
    }
  }
  if (saved) read_images_at_model_size(saved->image_height, saved->image_width, source);
  if (!saved && !options.out.empty()) check_folder_for_new_run(options.out);  // before the data's load

  arm_stop_on_ctrl_c();
  // With --json the summary is the only thing on stdout; the human-readable table moves to stderr.
  std::FILE* table = options.json ? stderr : stdout;
  const bool show_table = !options.quiet;
  // On a terminal the curves are drawn in braille above the table, redrawn after every epoch; the
  // table is then part of that view, and goes to stdout as plain lines only when stdout is not a terminal.
  const bool live = !options.quiet && is_terminal(STDERR_FILENO);
  const bool table_lines = show_table && (!live || (!options.json && !is_terminal(STDOUT_FILENO)));
  ProgressBar progress(live);
  LiveView live_view(live);

  if (!options.mirrors.empty() && !options.download) throw UsageError("--mirror applies to --download");
  if (options.download) fetch_dataset_if_missing(source, options.mirrors);
  const auto load_start = std::chrono::steady_clock::now();
  progress.message("loading data ...");
  const LoadedData loaded = load_data(source);
  const TrainTestData& data = loaded.data;
  const double seconds_load = seconds_since(load_start);
  progress.clear();
  check_validation_choice(config, loaded);
  print_data_notes(loaded);
  warn_of_classes_without_training_rows(data.train);

  // --serve: the dashboard over the folder that holds this run, started before the run folder is made, so
  // a busy port leaves nothing behind; opened at this run.
  std::unique_ptr<ServedDashboard> dashboard;
  std::string dashboard_url;
  std::filesystem::path dashboard_root;
  if (options.serve) {
    const std::filesystem::path inside = saved ? saved->folder : std::filesystem::path(options.out);
    dashboard_root = options.out.empty() && !saved ? std::filesystem::path("runs")
                     : inside.has_parent_path()    ? inside.parent_path()
                                                   : std::filesystem::path(".");
    ensure_folder(dashboard_root);
    dashboard = std::make_unique<ServedDashboard>(dashboard_root, options.serve_host,
                                                  static_cast<int>(options.serve_port));
  }
  const std::filesystem::path folder = saved                 ? saved->folder
                                       : options.out.empty() ? create_run_folder("runs")
                                                             : std::filesystem::path(options.out);
  RunOptions run_options =
      run_options_for(folder, loaded, source, !options.no_plots, seconds_load, process_start);
  run_options.save_every_seconds = options.save_every;
  TrainingRun run = saved ? TrainingRun(*saved, data, run_options) : TrainingRun(config, data, run_options);
  const std::filesystem::path run_folder = *run.folder();
  if (dashboard) {
    dashboard_url = dashboard->url() + "#run=" + run_folder.filename().string();
    announce_dashboard(table, dashboard_url, options.serve_host, dashboard_root.string());
  }

  const bool validation = run.trainer().validation().has_value();
  const std::string table_header = fmt::format(
      "{:>5}  {:>10}  {:>9}  {:>8}  {:>9}  {:>7}{}", "epoch", "train_loss", "train_acc", "test_acc",
      "test_loss", "seconds", validation ? fmt::format("  {:>8}  {:>7}", "val_loss", "val_acc") : "");
  const auto format_row = [validation](const EpochMetrics& m) {
    return fmt::format("{:>5}  {:>10.4f}  {:>9.4f}  {:>8.4f}  {:>9.4f}  {:>7.3f}{}", m.epoch, m.train_loss,
                       m.train_acc, m.test_acc, m.test_loss, m.seconds,
                       validation ? fmt::format("  {:>8.4f}  {:>7.4f}", m.val_loss, m.val_acc) : "");
  };
  const auto print_row = [&](const EpochMetrics& m) {
    if (!table_lines) return;
    fmt::print(table, "{}\n", format_row(m));
    std::fflush(table);
  };
  const auto redraw_live = [&] {
    if (!live) return;
    const std::vector<EpochMetrics>& epochs = run.history();
    std::vector<std::string> lines = plot::braille_chart(plot::curve_series(epochs), config.epochs,
                                                         /*width=*/60, /*height=*/8, /*color=*/true);
    lines.push_back(table_header);
    const std::size_t shown = std::min<std::size_t>(epochs.size(), kLiveTableRows);
    for (std::size_t i = epochs.size() - shown; i < epochs.size(); ++i) {
      lines.push_back(format_row(epochs[i]));
    }
    live_view.draw(lines);
  };
  if (show_table) {
    const std::string shape =
        data.train.kind == InputKind::kImages
            ? fmt::format("{}x{} images", data.train.height, data.train.width)
            : fmt::format("{} {} features", data.train.features(), element_name(data.train.element));
    fmt::print(
        table, "data: {} ({}: {} train, {} test, {}, {} classes{}), loaded in {:.2f} s\n",
        loaded.folder.string(), loaded.kind, data.train.count, data.test.count, shape, data.train.num_classes,
        loaded.skipped_images > 0 ? fmt::format(", {} unreadable image{} skipped", loaded.skipped_images,
                                                loaded.skipped_images == 1 ? "" : "s")
                                  : "",
        seconds_load);
    fmt::print(table, "recipe: {}lr {}, batch size {}, {} epoch{}, seed {}, {} thread{}{}\n",
               config.optimizer == "sgd" ? "" : config.optimizer + ", ", config.lr, config.batch_size,
               config.epochs, config.epochs == 1 ? "" : "s", config.seed, config.threads,
               config.threads == 1 ? "" : "s", config.l2 > 0 ? fmt::format(", l2 {}", config.l2) : "");
    if (saved && config.optimizer == "lbfgs" && saved->state.epochs_done >= 1) {
      fmt::print(table, "{} holds a finished L-BFGS fit: nothing to train\n", run_folder.string());
    } else if (saved && saved->state.epochs_done >= config.epochs) {
      fmt::print(table,
                 "{} has trained its {} epoch{}: nothing to train (--epochs N, more than {}, trains on)\n",
                 run_folder.string(), config.epochs, config.epochs == 1 ? "" : "s", config.epochs);
    } else if (saved) {
      fmt::print(table, "resuming {} at epoch {}, batch {}\n", run_folder.string(),
                 saved->state.epochs_done + 1, saved->state.batches_done);
    }
    if (table_lines && config.optimizer != "lbfgs") fmt::print(table, "{}\n", table_header);
    for (const EpochMetrics& m : run.history())
      print_row(m);
  }
  redraw_live();

  RunCallbacks callbacks;
  if (live) {
    callbacks.on_batch = [&](std::size_t done, std::size_t total) {
      progress.update(fmt::format("epoch {}/{}", run.epochs_done() + 1, config.epochs), done, total);
    };
  }
  callbacks.on_epoch = [&](const EpochMetrics& m) {
    progress.clear();
    if (table_lines && config.optimizer == "lbfgs") fmt::print(table, "{}\n", table_header);
    print_row(m);
    redraw_live();
  };
  callbacks.should_stop = stop_requested;
  if (config.optimizer == "lbfgs" && table_lines) {
    fmt::print(table, "{:>5}  {:>12}  {:>10}  {:>8}  {:>5}  {:>7}\n", "iter", "objective", "grad_inf", "step",
               "evals", "seconds");
    callbacks.on_iteration = [&](const LbfgsIteration& it) {
      fmt::print(table, "{:>5}  {:>12.8f}  {:>10.3e}  {:>8.3g}  {:>5}  {:>7.3f}\n", it.iteration,
                 it.objective, it.grad_inf_norm, it.step, it.evaluations, it.seconds);
      std::fflush(table);
    };
  }
  RunStatus status;
  try {
    status = run.train(callbacks);
  } catch (const TrainingDiverged& e) {
    progress.clear();
    const int kept = run.epochs_saved();  // the epochs of the checkpoint in the folder, if any
    // Feature values of any scale (not pixels in [0, 1]) diverge at the recipe's step when large.
    const std::string hint = fmt::format(
        "{}a smaller --lr than {:g}",
        !config.standardize && data.train.element == ElementType::kF32 ? "--standardize or " : "", e.lr);
    throw Error(
        fmt::format("training diverged in epoch {}, batch {}: mean batch loss {:.4g} (a fresh model's is "
                    "{:.2f}); try {}; {}",
                    e.epoch, e.batch, e.mean_loss, std::log(data.train.num_classes), hint,
                    kept > 0 ? fmt::format("{} keeps the checkpoint of epoch {}", run_folder.string(), kept)
                             : std::string("no checkpoint was written")));
  }
  if (status == RunStatus::kStopped) {
    progress.clear();
    const TrainerState state = run.state();
    const std::string where = state.batches_done > 0 ? fmt::format("in epoch {} after {} batches",
                                                                   state.epochs_done + 1, state.batches_done)
                                                     : fmt::format("after epoch {}", state.epochs_done);
    fmt::print(stderr, "softreg: interrupted {}; saved {}; resume with: softreg train --resume {}\n", where,
               (run_folder / "model.safetensors").string(), run_folder.string());
    return interrupted_exit_code();
  }
  disarm_stop_on_ctrl_c();

  if (!options.no_plots) progress.message("drawing pictures ...");
  const RunReport report =
      run.finish({.acceptance_checks = acceptance_checks_wanted(loaded, options.check, options.no_check),
                  .pictures = !options.no_plots,
                  .grid = {static_cast<int>(options.grid_count), options.misclassified}});
  progress.clear();
  const RunSummary& summary = report.summary;

  const EpochMetrics& last = summary.kept_epoch();
  if (options.json) fmt::print("{}", summary_json(summary));
  if (show_table && run.stopped_early()) {
    fmt::print(
        table, "early stop after epoch {}: no better validation accuracy for {} epoch{}; kept epoch {}\n",
        summary.epochs.back().epoch, config.early_stop, config.early_stop == 1 ? "" : "s", run.best_epoch());
  }
  if (show_table && validation) {
    fmt::print(table, "best validation accuracy {:.4f} at epoch {}: best.safetensors{}\n",
               summary.epochs[static_cast<std::size_t>(run.best_epoch() - 1)].val_acc, run.best_epoch(),
               run.stopped_early() ? " (and model.safetensors, as the run stopped early)" : "");
  }
  if (show_table) {
    fmt::print(table,
               "test accuracy {:.4f} after {} epoch{}; {:.2f} s in all (load {:.2f} s, train {:.2f} s)\n",
               last.test_acc, last.epoch, last.epoch == 1 ? "" : "s", summary.seconds_total,
               summary.seconds_load, summary.seconds_train);
    if (!summary.note.empty()) fmt::print(table, "note: {}\n", summary.note);
    fmt::print(
        table, "run folder: {}{}\n", run_folder.string(),
        report.pictures.empty() ? "" : fmt::format(" (pictures: {})", fmt::join(report.pictures, ", ")));
  }
  int exit_code = kExitOk;
  if (!report.failed_checks.empty()) {
    exit_code = report_failed_checks(report);
  } else if (show_table && !summary.checks.empty()) {
    fmt::print(table, "acceptance checks passed: train loss < 0.5, train acc > 0.7, test acc > 0.7\n");
  }
  if (dashboard) {
    // The page stays useful after training (curves, confusion matrix, draw to predict) until Ctrl-C.
    fmt::print(table, "training done; the dashboard stays up at {} (Ctrl-C to stop)\n", dashboard_url);
    std::fflush(table);
    arm_stop_on_ctrl_c();
    wait_for_stop_request();
    dashboard.reset();  // stops it
  }
  return exit_code;
}

}  // namespace

CommandRunner add_train_command(CLI::App& app) {
  const auto process_start = std::chrono::steady_clock::now();
  auto options = std::make_shared<TrainOptions>();
  CLI::App* cmd =
      app.add_subcommand("train", "Train softmax regression with the seed's recipe (minibatch SGD)");
  add_data_source_options(*cmd, options->data);
  const RecipeOptions recipe = add_recipe_options(*cmd, options->recipe);
  CLI::Option* out = cmd->add_option(
      "--out", options->out, "Run folder (default: runs/<UTC timestamp>, with runs/latest pointing at it)");
  cmd->add_option(
         "--resume", options->resume,
         "Continue the run in this folder from its model.safetensors (after Ctrl-C or to add epochs)")
      ->excludes(out);
  cmd->add_flag("--json", options->json, "Print only the summary JSON on stdout (the table goes to stderr)");
  cmd->add_flag("--quiet", options->quiet, "No progress bar and no table");
  add_check_flags(*cmd, options->check, options->no_check);
  cmd->add_flag("--no-plots", options->no_plots,
                "Draw no pictures (curves, predictions, confusion matrix, weight templates)");
  cmd->add_option("--save-every", options->save_every,
                  "Seconds between refreshes of the run folder (model.safetensors, metrics.csv, live "
                  "curves) during training; 0: after every epoch. Always after the last epoch and at a stop")
      ->capture_default_str();
  cmd->add_option("--n", options->grid_count, "Test images in predictions.png")->capture_default_str();
  cmd->add_flag("--misclassified", options->misclassified, "predictions.png shows only wrong predictions");
  cmd->add_flag("--download", options->download,
                "With --dataset: download the data set when it is not found");
  cmd->add_option("--mirror", options->mirrors,
                  "With --download: base URLs to fetch from instead of the built-in ones");
  CLI::Option* serve = cmd->add_flag(
      "--serve", options->serve,
      "Start the dashboard (softreg serve) over the run's parent folder and print its URL; it stays "
      "up after training until Ctrl-C");
  cmd->add_option("--serve-host", options->serve_host, "With --serve: the address to listen on")
      ->capture_default_str()
      ->needs(serve);
  cmd->add_option("--serve-port", options->serve_port, "With --serve: the port (0: any free port)")
      ->capture_default_str()
      ->needs(serve);
  return [options, process_start, recipe] {
    recipe.note_given(options->recipe);
    return run_train(*options, process_start);
  };
}

}  // namespace softreg::cli
