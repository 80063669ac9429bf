// softreg tune: chooses the L2 penalty (and, for minibatch optimizers, the learning rate) on a
// validation split, then refits the winner on all training rows as an ordinary run folder and reports its
// test accuracy once. The sweep is the library's softreg::tune; this file parses flags and prints.
#include <fmt/format.h>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "recipe_flags.hpp"
#include "softreg/error.hpp"
#include "softreg/io.hpp"
#include "softreg/plot.hpp"
#include "softreg/run.hpp"
#include "softreg/tune.hpp"
#include "tune_record.hpp"

namespace softreg::cli {
namespace {

// Upper bound on the grid's size, which only catches typos.
constexpr int kMaxGridPoints = 1000;
// Three penalties a decade: on Fashion-MNIST the test accuracy at the optimum moves by 0.001 between
// neighbours of a two-a-decade grid around the best penalty (0.8461 at 1e-4, 0.8453 at 3.16e-4).
constexpr const char* kDefaultGrid = "1e-7:1e-1:19";

struct TuneCommandOptions {
  DataSourceFlags data;
  RecipeFlags recipe;
  std::string grid = kDefaultGrid;
  std::string lrs;
  std::string select = "loss";
  double refit_tol = 1e-5;
  bool refit_tol_given = false;
  std::string out;
  bool json = false;
  bool quiet = false;
  bool check = false;
  bool no_check = false;
  bool no_plots = false;
};

double parse_non_negative(const std::string& text, const char* flag, const std::string& whole) {
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || !std::isfinite(value) || value < 0) {
    throw UsageError(fmt::format("{} needs numbers >= 0, got '{}' in '{}'", flag, text, whole));
  }
  return value;
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::size_t begin = 0;
  while (true) {
    const std::size_t end = text.find(separator, begin);
    parts.push_back(text.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
    if (end == std::string::npos) return parts;
    begin = end + 1;
  }
}

// --grid FROM:TO:COUNT (a log grid) or a list X,Y,...
std::vector<double> parse_grid(const std::string& text) {
  const std::vector<std::string> range = split(text, ':');
  if (range.size() == 3) {
    const double from = parse_non_negative(range[0], "--grid", text);
    const double to = parse_non_negative(range[1], "--grid", text);
    int count = 0;
    const auto [ptr, ec] = std::from_chars(range[2].data(), range[2].data() + range[2].size(), count);
    if (ec != std::errc() || ptr != range[2].data() + range[2].size() || count < 1 ||
        count > kMaxGridPoints) {
      throw UsageError(fmt::format("--grid FROM:TO:COUNT needs a COUNT between 1 and {}, got '{}'",
                                   kMaxGridPoints, range[2]));
    }
    if (!(from > 0 && to > 0))
      throw UsageError(fmt::format("--grid FROM:TO:COUNT needs FROM, TO > 0, got '{}'", text));
    return log_grid(from, to, count);
  }
  if (range.size() != 1)
    throw UsageError(fmt::format("--grid is FROM:TO:COUNT or a list X,Y,..., got '{}'", text));
  std::vector<double> values;
  for (const std::string& part : split(text, ','))
    values.push_back(parse_non_negative(part, "--grid", text));
  if (values.size() > static_cast<std::size_t>(kMaxGridPoints))
    throw UsageError(fmt::format("--grid has more than {} values", kMaxGridPoints));
  return values;
}

// The learning rates to try: --lrs, else --lr alone if given, else a grid around the optimizer's usual rate.
std::vector<double> learning_rates(const TuneCommandOptions& o) {
  if (!o.lrs.empty()) {
    std::vector<double> rates;
    for (const std::string& part : split(o.lrs, ',')) {
      rates.push_back(parse_non_negative(part, "--lrs", o.lrs));
      if (!(rates.back() > 0))
        throw UsageError(fmt::format("--lrs needs learning rates > 0, got '{}'", o.lrs));
    }
    return rates;
  }
  if (std::find(o.recipe.given.begin(), o.recipe.given.end(), "--lr") != o.recipe.given.end())
    return {o.recipe.lr};
  if (o.recipe.optimizer.starts_with("adam")) return {1e-4, 3e-4, 1e-3, 3e-3, 1e-2};
  return {0.01, 0.03, 0.1, 0.3, 1.0};
}

std::string trial_row(const TuneTrial& t, bool with_lr) {
  return fmt::format("{:>10.3g}{}  {:>7.4f}  {:>8.4f}  {:>10.4f}  {:>5}  {:>7.2f}  {}", t.l2,
                     with_lr ? fmt::format("  {:>7.3g}", t.lr) : "", t.val_acc, t.val_loss, t.train_loss,
                     t.steps, t.seconds, t.status);
}

int run_tune(TuneCommandOptions& o, std::chrono::steady_clock::time_point process_start) {
  const auto given = [&](const char* flag) {
    return std::find(o.recipe.given.begin(), o.recipe.given.end(), flag) != o.recipe.given.end();
  };
  if (given("--l2")) throw UsageError("--l2 is what tune chooses: give the penalties to try with --grid");
  if (o.recipe.compute != "f32")
    throw UsageError("--compute bf16 does not apply to tune (it needs l2 0, and tune chooses l2)");
  if (given("--early-stop"))
    throw UsageError("--early-stop does not apply to tune (each trial trains to its end)");
  const bool full_batch = o.recipe.optimizer == "lbfgs";
  if (full_batch && !o.lrs.empty()) throw UsageError("--lrs does not apply to --optimizer lbfgs");
  if (!(o.refit_tol >= 0) || !std::isfinite(o.refit_tol))
    throw UsageError(fmt::format("--refit-tol must be >= 0, got {}", o.refit_tol));
  if (!full_batch && o.refit_tol_given)
    throw UsageError(fmt::format("--refit-tol applies to --optimizer lbfgs, not {}", o.recipe.optimizer));
  if (!o.lrs.empty() && given("--lr"))
    throw UsageError("--lr and --lrs: give the learning rates with --lrs alone");
  const bool val_fraction_given = given("--val-fraction");
  o.recipe.val_fraction_given = true;  // tune always validates (default 0.1)
  const TrainConfig base = recipe_config(o.recipe);
  warn_of_more_threads_than_cores(base.threads);
  if (!o.out.empty()) check_folder_for_new_run(o.out);  // before the sweep, not after it
  TuneOptions tune_options{base, parse_grid(o.grid), full_batch ? std::vector<double>{} : learning_rates(o),
                           base.val_fraction,
                           o.select == "accuracy" ? TuneCriterion::kAccuracy : TuneCriterion::kLoss};
  const bool with_lr = !full_batch;
  std::FILE* table = o.json ? stderr : stdout;
  const bool show = !o.quiet;

  const auto load_start = std::chrono::steady_clock::now();
  const DataSource source = o.data.source(base.seed, base.threads);
  const LoadedData loaded = load_data(source);
  const TrainTestData& data = loaded.data;
  const double seconds_load = seconds_since(load_start);
  // The data's own validation set scores the trials; --val-fraction (given, not the default) would hold
  // out others.
  TrainConfig given_recipe = base;
  if (!val_fraction_given) given_recipe.val_fraction = 0;
  check_validation_choice(given_recipe, loaded);
  print_data_notes(loaded);
  warn_of_classes_without_training_rows(data.train);
  if (data.validation) tune_options.validation = &*data.validation;
  if (show) {
    fmt::print(table, "data: {} ({}: {} train, {} test, {} classes), loaded in {:.2f} s\n",
               loaded.folder.string(), loaded.kind, data.train.count, data.test.count, data.train.num_classes,
               seconds_load);
    fmt::print(table, "tuning {}{} over {} L2 penalt{}{} on {}{}\n", base.optimizer,
               full_batch ? fmt::format(" (to --tol {:g} or {} iterations)", base.tol, base.max_iter)
                          : fmt::format(" ({} epoch{})", base.epochs, base.epochs == 1 ? "" : "s"),
               tune_options.lambdas.size(), tune_options.lambdas.size() == 1 ? "y" : "ies",
               with_lr ? fmt::format(" x {} learning rate{}", tune_options.learning_rates.size(),
                                     tune_options.learning_rates.size() == 1 ? "" : "s")
                       : "",
               data.validation ? fmt::format("the validation set {} ({} rows)",
                                             loaded.validation_file.string(), data.validation->count)
                               : fmt::format("a validation split of {:g}", base.val_fraction),
               base.standardize ? ", standardized inputs" : "");
    fmt::print(table, "{:>10}{}  {:>7}  {:>8}  {:>10}  {:>5}  {:>7}  {}\n", "l2",
               with_lr ? fmt::format("  {:>7}", "lr") : "", "val_acc", "val_loss", "train_loss",
               full_batch ? "iters" : "epoch", "seconds", "status");
    std::fflush(table);
  }

  arm_stop_on_ctrl_c();
  const TuneResult result = tune(
      tune_options, data.train,
      [&](const TuneTrial& t) {
        if (!show) return;
        fmt::print(table, "{}\n", trial_row(t, with_lr));
        std::fflush(table);
      },
      stop_requested);
  if (stop_requested()) {
    fmt::print(stderr, "softreg: tuning interrupted after {} trial{}; nothing was refitted\n",
               result.trials.size(), result.trials.size() == 1 ? "" : "s");
    return interrupted_exit_code();
  }
  const TuneTrial& best = result.trials[result.best];
  if (show) {
    fmt::print(table,
               "best validation {}: l2 {:g}{}: val_acc {:.4f}, val_loss {:.4f} ({} trial{}, {:.2f} s)\n",
               o.select, best.l2, with_lr ? fmt::format(", lr {:g}", best.lr) : "", best.val_acc,
               best.val_loss, result.trials.size(), result.trials.size() == 1 ? "" : "s", result.seconds);
  }
  const std::string edge_note = result.edge_note();
  if (show && !edge_note.empty()) fmt::print(table, "note: {}\n", edge_note);

  // The refit: the winner's recipe on all training rows, an ordinary run folder. L-BFGS continues from
  // the winner's solution (the optimum is unique, the start only saves iterations); minibatch runs start
  // from the seed's weights like any run of that recipe.
  TrainConfig refit = result.best_config(base);
  if (full_batch) refit.tol = o.refit_tol;
  TrainingRun run(refit, data,
                  run_options_for(o.out.empty() ? create_run_folder("runs") : std::filesystem::path(o.out),
                                  loaded, source, !o.no_plots, seconds_load, process_start));
  if (full_batch) run.trainer().warm_start(result.best_parameters);
  if (run.train({.on_batch = {}, .on_epoch = {}, .should_stop = stop_requested, .on_iteration = {}}) ==
      RunStatus::kStopped) {
    fmt::print(stderr,
               "softreg: interrupted during the refit; saved {}; resume with: softreg train --resume {}\n",
               (*run.folder() / "model.safetensors").string(), run.folder()->string());
    return interrupted_exit_code();
  }
  disarm_stop_on_ctrl_c();
  const RunReport report =
      run.finish({.acceptance_checks = acceptance_checks_wanted(loaded, o.check, o.no_check),
                  .pictures = !o.no_plots,
                  .grid = {}});
  const std::filesystem::path folder = *run.folder();
  const EpochMetrics& last = report.summary.kept_epoch();
  const double seconds = seconds_since(process_start);

  nlohmann::ordered_json j;
  nlohmann::ordered_json best_params;
  best_params["optimizer"] = base.optimizer;
  best_params["l2"] = best.l2;
  if (with_lr) best_params["lr"] = best.lr;
  best_params["standardize"] = base.standardize;
  j["best"] = best_params;
  j["selected_by"] = o.select == "loss" ? "val_loss" : "val_acc";
  j["val_acc"] = best.val_acc;
  j["val_loss"] = best.val_loss;
  j["test_acc"] = last.test_acc;
  if (!edge_note.empty()) j["edge_note"] = edge_note;
  if (!report.summary.note.empty()) j["note"] = report.summary.note;
  j["seconds"] = seconds;
  j["train_rows"] = result.train_rows;
  j["val_rows"] = result.val_rows;
  j["run_folder"] = folder.string();
  j["trials"] = nlohmann::ordered_json::array();
  for (const TuneTrial& t : result.trials)
    j["trials"].push_back(trial_json(t, with_lr));
  write_file_atomic(folder / "tune.json", j.dump(2) + "\n");
  if (!o.no_plots) draw_tune(folder, result, with_lr);

  if (o.json) fmt::print("{}\n", j.dump(2));
  if (show) {
    fmt::print(table, "refit on all {} training rows: test accuracy {:.4f}; {:.2f} s in all\n",
               data.train.count, last.test_acc, seconds);
    if (!report.summary.note.empty()) fmt::print(table, "note: {}\n", report.summary.note);
    fmt::print(table, "run folder: {} (tune.json{})\n", folder.string(),
               o.no_plots ? "" : fmt::format(", tune.png, tune.svg, {}", fmt::join(report.pictures, ", ")));
  }
  return report_failed_checks(report);
}

}  // namespace

CommandRunner add_tune_command(CLI::App& app) {
  const auto process_start = std::chrono::steady_clock::now();
  auto options = std::make_shared<TuneCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "tune",
      "Choose the L2 penalty (and learning rate) on a validation split, then refit the winner on all "
      "training rows as a run folder");
  add_data_source_options(*cmd, options->data);
  options->recipe.optimizer = "lbfgs";
  options->recipe.val_fraction = 0.1;
  const RecipeOptions recipe = add_recipe_options(*cmd, options->recipe);
  cmd->add_option("--grid", options->grid,
                  "L2 penalties to try: FROM:TO:COUNT (log-spaced) or a list X,Y,...")
      ->capture_default_str();
  cmd->add_option("--lrs", options->lrs,
                  "Minibatch optimizers: learning rates to try, X,Y,... (default: --lr if given, else "
                  "0.01,0.03,0.1,0.3,1, or 1e-4..1e-2 for adam)");
  cmd->add_option("--select", options->select,
                  "What picks the winner on the validation rows: loss (mean cross-entropy, as cv.glmnet) or "
                  "accuracy (as LogisticRegressionCV)")
      ->check(CLI::IsMember({"loss", "accuracy"}))
      ->capture_default_str();
  const CLI::Option* refit_tol =
      cmd->add_option(
             "--refit-tol", options->refit_tol,
             "lbfgs: the refit's --tol (the trials only rank the penalties at --tol; the refit is the "
             "model you keep)")
          ->capture_default_str();
  cmd->add_option("--out", options->out, "Run folder of the refit (default: runs/<UTC timestamp>)");
  cmd->add_flag("--json", options->json,
                "Print only the result as JSON on stdout (the table goes to stderr)");
  cmd->add_flag("--quiet", options->quiet, "No table");
  add_check_flags(*cmd, options->check, options->no_check, " on the refit");
  cmd->add_flag("--no-plots", options->no_plots, "Draw no pictures (tune.png, the refit's pictures)");
  return [options, process_start, recipe, refit_tol] {
    recipe.note_given(options->recipe);
    options->refit_tol_given = refit_tol->count() > 0;
    return run_tune(*options, process_start);
  };
}

}  // namespace softreg::cli
