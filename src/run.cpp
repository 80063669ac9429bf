// The life of a training run: start or resume, epochs with the folder refreshed as they go, the final checks,
// pictures and summary. Front ends only choose the folder, parse flags and print.
#include "softreg/run.hpp"

#include <fmt/format.h>

#include <cmath>

#include "softreg/clock.hpp"
#include "softreg/error.hpp"
#include "softreg/inference.hpp"

namespace softreg {
namespace {

std::unique_ptr<FolderLock> lock_run_folder(const RunOptions& options) {
  if (!options.folder) return nullptr;
  return std::make_unique<FolderLock>(
      *options.folder / ".softreg.lock", FolderLock::IfBusy::kFail,
      options.folder->string() +
          ": another softreg process is training into this run folder; wait for it to "
          "finish or choose another --out");
}

RunOptions with_defaults(RunOptions options, const TrainTestData& data, bool new_run) {
  if (new_run && options.folder) check_folder_for_new_run(*options.folder);
  if (options.class_names.empty()) options.class_names = data.train.class_names;
  if (options.class_names.empty()) options.class_names = default_class_names(data.train.num_classes);
  if (options.class_names.size() != static_cast<std::size_t>(data.train.num_classes)) {
    throw Error(
        fmt::format("{} class names for {} classes", options.class_names.size(), data.train.num_classes));
  }
  if (options.folder) ensure_folder(*options.folder);
  return options;
}

}  // namespace

std::filesystem::path run_model_file(const std::filesystem::path& folder) {
  std::filesystem::path model_path = folder / "model.safetensors";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(model_path, ec)) {
    throw Error::in_file(folder, "no model.safetensors there (not a softreg run folder?)");
  }
  return model_path;
}

std::filesystem::path model_file_or_run_folder(const std::filesystem::path& path) {
  std::error_code ec;
  // A file, or what load_model names as missing or unreadable.
  return std::filesystem::is_directory(path, ec) ? run_model_file(path) : path;
}

SavedRun load_saved_run(const std::filesystem::path& folder) {
  const std::filesystem::path model_path = run_model_file(folder);
  const ModelFile checkpoint = load_model(model_path);
  SavedRun saved;
  saved.folder = folder;
  saved.config = config_from_metadata(checkpoint, model_path.string());
  saved.state = trainer_state_from(checkpoint, model_path.string());
  std::vector<EpochMetrics> history = read_metrics_csv(folder / "metrics.csv");
  if (history.size() < static_cast<std::size_t>(saved.state.epochs_done)) {
    throw Error::in_file(folder / "metrics.csv", fmt::format("has {} epochs, the checkpoint {}",
                                                             history.size(), saved.state.epochs_done));
  }
  history.resize(static_cast<std::size_t>(saved.state.epochs_done));
  saved.history = std::move(history);
  if (auto it = checkpoint.metadata.find("data_folder"); it != checkpoint.metadata.end())
    saved.data_folder = it->second;
  if (auto it = checkpoint.metadata.find("data_source"); it != checkpoint.metadata.end())
    saved.data_source = it->second;
  if (checkpoint.input == InputKind::kImages) {
    saved.image_height = checkpoint.height;
    saved.image_width = checkpoint.width;
  }
  return saved;
}

TrainingRun::TrainingRun(const TrainConfig& config, const TrainTestData& data, RunOptions options)
    : data_(data),
      options_(with_defaults(std::move(options), data, /*new_run=*/true)),
      folder_lock_(lock_run_folder(options_)),
      trainer_(config, data.train, data.test, data.validation ? &*data.validation : nullptr),
      started_(options_.started.value_or(std::chrono::steady_clock::now())) {}

TrainingRun::TrainingRun(const SavedRun& saved, const TrainTestData& data, RunOptions options)
    : data_(data),
      options_(with_defaults(
          [&] {
            if (!options.folder) options.folder = saved.folder;
            if (options.data_folder.empty()) options.data_folder = saved.data_folder;
            if (options.data_source.empty()) options.data_source = saved.data_source;
            return std::move(options);
          }(),
          data, /*new_run=*/false)),
      folder_lock_(lock_run_folder(options_)),
      trainer_(saved.config, data.train, data.test, data.validation ? &*data.validation : nullptr),
      history_(saved.history),
      started_(options_.started.value_or(std::chrono::steady_clock::now())) {
  if (saved.state.epochs_done > saved.config.epochs) {
    throw Error(fmt::format("{}: the recipe has {} epochs, but {} are already done", saved.folder.string(),
                            saved.config.epochs, saved.state.epochs_done));
  }
  try {
    trainer_.restore(saved.state);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", saved.folder.string(), e.what()));  // the run resumed
  }
  if (*options_.folder == saved.folder) epochs_saved_ = saved.state.epochs_done;
  for (const EpochMetrics& m : history_) {
    if (m.has_validation && m.val_acc > best_val_acc_) {
      best_val_acc_ = m.val_acc;
      best_epoch_ = m.epoch;
    }
  }
  std::error_code ec;
  const std::filesystem::path best = *options_.folder / "best.safetensors";
  if (best_epoch_ > 0 && std::filesystem::is_regular_file(best, ec)) {
    best_state_ = trainer_state_from(load_model(best), best.string());
  }
}

ModelFile TrainingRun::model_file() const {
  return model_file_of(trainer_.state());
}

ModelFile TrainingRun::model_file_of(const TrainerState& state) const {
  ModelFile file;
  const auto& standardization = trainer_.standardization();
  file.model = standardization ? fold_standardization(state.model, *standardization) : state.model;
  file.class_names = options_.class_names;
  file.feature_names = data_.train.feature_names;
  file.label_name = data_.train.label_name;
  file.height = static_cast<int>(data_.train.height);
  file.width = static_cast<int>(data_.train.width);
  file.input = data_.train.kind;
  file.element = data_.train.element;
  // The metrics of the epoch the weights come from (after early stopping, not the last one trained).
  const EpochMetrics* metrics =
      state.epochs_done > 0 && static_cast<std::size_t>(state.epochs_done) <= history_.size()
          ? &history_[static_cast<std::size_t>(state.epochs_done - 1)]
          : nullptr;
  file.metadata = checkpoint_metadata(trainer_.config(), state, metrics, options_.data_folder);
  if (!options_.data_source.empty()) file.metadata["data_source"] = options_.data_source;
  for (const auto& [name, values] : state.optimizer.buffers)
    file.extra_tensors["optimizer." + name] = values;
  if (const auto& s = trainer_.standardization()) {
    // weight and bias act on raw inputs; these let a reader see the scaling and training continue.
    file.extra_tensors[kStandardizeMean] = s->mean;
    file.extra_tensors[kStandardizeStd] = s->std;
    file.extra_tensors[kStandardizedWeight].assign(state.model.W.data(),
                                                   state.model.W.data() + state.model.W.size());
    file.extra_tensors[kStandardizedBias].assign(state.model.b.data(),
                                                 state.model.b.data() + state.model.b.size());
  }
  return file;
}

void TrainingRun::save_checkpoint() const {
  if (!options_.folder) return;
  // metrics.csv first: a process killed between the two renames leaves a row more than the model
  // has epochs, which resuming drops, never a model with an epoch that metrics.csv lacks.
  write_file_atomic(*options_.folder / "metrics.csv", metrics_csv(history_));
  save_model(*options_.folder / "model.safetensors", model_file());
}

RunStatus TrainingRun::train_full_batch(const RunCallbacks& callbacks) {
  const auto start = std::chrono::steady_clock::now();
  const TrainConfig& config = trainer_.config();
  SoftmaxModel model = trainer_.parameters();
  FullBatchObjective objective(data_.train, trainer_.train_rows(), config.l2, trainer_.pool(), config.kernel,
                               trainer_.standardization());
  const LbfgsResult r = lbfgs_minimize(model, objective, {config.max_iter, config.tol, config.history_size},
                                       callbacks.on_iteration, callbacks.should_stop);
  lbfgs_ =
      RunSummary::Lbfgs{r.iterations, r.evaluations, r.objective, r.grad_inf_norm, r.stop_reason, r.memory};
  // The fit counts as the run's one epoch: its figures, then the checkpoint.
  TrainerState state = trainer_.state();
  state.model = model;
  state.epochs_done = 1;
  trainer_.restore(state);
  EpochMetrics m;
  m.epoch = 1;
  m.train_loss = r.mean_loss;
  m.train_acc = static_cast<double>(r.correct) / static_cast<double>(objective.rows());
  m.train_seconds = seconds_since(start);
  const auto eval_start = std::chrono::steady_clock::now();
  trainer_.evaluate_held_out(m);
  if (m.has_validation) {
    best_epoch_ = 1;
    best_val_acc_ = m.val_acc;
  }
  m.eval_seconds = seconds_since(eval_start);
  m.seconds = seconds_since(start);
  history_.push_back(m);
  const auto saving = std::chrono::steady_clock::now();
  if (options_.folder && options_.live_curves) plot::write_curves(*options_.folder, history_, 1);
  save_checkpoint();
  if (options_.folder) {
    ++checkpoints_written_;
    epochs_saved_ = trainer_.epochs_done();
  }
  seconds_checkpoints_ += seconds_since(saving);
  seconds_train_ += seconds_since(start);
  if (callbacks.on_epoch) callbacks.on_epoch(m);
  return RunStatus::kFinished;
}

RunStatus TrainingRun::train(const RunCallbacks& callbacks) {
  if (stopped_early_) return RunStatus::kFinished;  // the model went back to the best epoch: done
  if (options_.folder && options_.live_curves) plot::check_drawing_available();  // not after an epoch
  if (trainer_.config().optimizer == "lbfgs") {
    if (trainer_.epochs_done() > 0) return RunStatus::kFinished;  // a full-batch run is one epoch
    return train_full_batch(callbacks);
  }
  const auto start = std::chrono::steady_clock::now();
  last_refresh_ = start;
  const int epochs = trainer_.config().epochs;
  RunStatus status = RunStatus::kFinished;
  while (trainer_.epochs_done() < epochs) {
    const std::optional<EpochMetrics> m = trainer_.run_epoch(callbacks.on_batch, callbacks.should_stop);
    if (m) history_.push_back(*m);
    if (m && m->has_validation && m->val_acc > best_val_acc_) {
      best_val_acc_ = m->val_acc;
      best_epoch_ = m->epoch;
      best_state_ = trainer_.state();
      best_unsaved_ = true;
    }
    const int patience = trainer_.config().early_stop;
    const bool stop_early = m && patience > 0 && best_state_ && m->epoch - best_epoch_ >= patience &&
                            trainer_.epochs_done() < epochs;
    if (stop_early) {
      trainer_.restore(*best_state_);  // keep the best epoch's model
      stopped_early_ = true;
    }
    // A stop mid-epoch (no m) and the run's end always refresh the folder, so an interrupted run loses
    // at most one batch; between them, the refresh waits for its interval.
    const bool refreshed = !m || stop_early || trainer_.epochs_done() >= epochs ||
                           seconds_since(last_refresh_) >= options_.save_every_seconds;
    if (refreshed) refresh_folder();
    if (stop_early) {
      if (callbacks.on_epoch) callbacks.on_epoch(*m);
      break;
    }
    if (m && callbacks.on_epoch) callbacks.on_epoch(*m);
    if (!m || (trainer_.epochs_done() < epochs && callbacks.should_stop && callbacks.should_stop())) {
      if (!refreshed) refresh_folder();
      status = RunStatus::kStopped;
      break;
    }
  }
  seconds_train_ += seconds_since(start);
  return status;
}

void TrainingRun::refresh_folder() {
  const auto saving = std::chrono::steady_clock::now();
  if (options_.folder && best_unsaved_) {
    // Before the checkpoint: a process killed between the two keeps a best.safetensors no older than
    // the best epoch metrics.csv can show.
    save_model(*options_.folder / "best.safetensors", model_file_of(*best_state_));
  }
  best_unsaved_ = false;
  // Replaced atomically with each refresh: a viewer open on them follows training.
  if (options_.folder && options_.live_curves) {
    plot::write_curves(*options_.folder, history_, trainer_.config().epochs);
    curves_drawn_for_ = history_.size();
  }
  save_checkpoint();
  if (options_.folder) {
    ++checkpoints_written_;
    epochs_saved_ = trainer_.epochs_done();
  }
  seconds_checkpoints_ += seconds_since(saving);
  last_refresh_ = std::chrono::steady_clock::now();
}

RunReport TrainingRun::finish(const FinishOptions& options) {
  if (history_.empty()) throw Error("the run has no finished epoch to report");
  RunReport report;
  RunSummary& summary = report.summary;
  summary.config = trainer_.config();
  summary.epochs = history_;
  summary.data_folder = options_.data_folder;
  summary.run_folder = options_.folder ? options_.folder->string() : "";
  summary.train_examples = data_.train.count;
  summary.test_examples = data_.test.count;
  if (trainer_.validation()) summary.validation_examples = trainer_.validation()->count;
  summary.seconds_load = options_.seconds_load;
  summary.seconds_train = seconds_train_;
  summary.seconds_checkpoints = seconds_checkpoints_;
  summary.checkpoints = checkpoints_written_;

  if (options_.folder && options.pictures) {
    const std::filesystem::path& folder = *options_.folder;
    // The last refresh drew them already when no epoch came since.
    if (curves_drawn_for_ != history_.size()) plot::write_curves(folder, history_, trainer_.config().epochs);
    const Evaluation test = evaluate(trainer_.model(), data_.test, trainer_.pool());
    report.pictures = plot::write_model_pictures(folder, trainer_.model(), data_.test, test.predictions,
                                                 options_.class_names, options.grid, trainer_.pool());
    report.pictures.insert(report.pictures.begin(), {"curves.png", "curves.svg"});
  }
  summary.lbfgs = lbfgs_;
  summary.best_epoch = best_epoch_;
  summary.stopped_early = stopped_early_;
  if (options.acceptance_checks) {
    const EpochMetrics& last = summary.kept_epoch();  // the checks judge the model the run keeps
    summary.checks = acceptance_checks(last.train_loss, last.train_acc, last.test_acc);
    for (const AcceptanceCheck& c : summary.checks) {
      if (!c.passed) report.failed_checks.push_back(c);
    }
  }
  summary.note = chance_level_note(summary, examples_per_class(data_.test), options_.class_names);
  summary.seconds_total = seconds_since(started_);
  if (options_.folder) write_file_atomic(*options_.folder / "summary.json", summary_json(summary));
  return report;
}

std::string quoted_class_name(std::size_t label, const std::vector<std::string>& class_names) {
  return label < class_names.size() ? fmt::format("\"{}\"", class_names[label])
                                    : fmt::format("class {}", label);
}

std::string chance_level_note(const RunSummary& summary, const std::vector<std::int64_t>& test_per_class,
                              const std::vector<std::string>& class_names) {
  if (summary.epochs.empty()) return "";
  const EpochMetrics& kept = summary.kept_epoch();
  if (!no_better_than_majority(kept.test_acc, test_per_class)) return "";  // or no test rows
  const MajorityClass majority = majority_class(test_per_class);
  std::string note = fmt::format(
      "test accuracy {:.4f} is no better than always answering {}, the most common class of the "
      "test rows ({:.4f} of them)",
      kept.test_acc, quoted_class_name(majority.label, class_names), majority.share);
  const bool standardized = summary.config.standardize;
  const std::string not_apart = standardized ? "these features may not tell the classes apart"
                                             : "these features may not tell the classes apart, or their "
                                               "scale hides it: try --standardize";
  if (summary.config.optimizer == "lbfgs") return note + "; " + not_apart;
  const std::vector<EpochMetrics>& epochs = summary.epochs;
  // A rise of more than 1 % counts: a loss that has settled wobbles by less.
  std::size_t rises = 0;
  for (std::size_t e = 1; e < epochs.size(); ++e)
    rises += epochs[e].train_loss > epochs[e - 1].train_loss * 1.01 ? 1 : 0;
  const double fresh = std::log(static_cast<double>(test_per_class.size()));  // uniform over K classes
  const double last = kept.train_loss;
  const bool above_fresh = !std::isfinite(last) || last > fresh * 1.01;
  if (rises > 0 || above_fresh) {
    std::string how;
    if (rises > 0) {
      how = epochs.size() == 2 ? std::string("the train loss rose in the second epoch")
                               : fmt::format("the train loss rose in {} of the {} epochs after the first",
                                             rises, epochs.size() - 1);
    }
    if (above_fresh) {
      how += fmt::format("{} ended at {:.4f}, above a fresh model's {:.4f}",
                         rises > 0 ? " and" : "the train loss", last, fresh);
    }
    return note +
           fmt::format("; {}: the steps are too large for these features; try {}a smaller --lr than {:g}",
                       how, standardized ? "" : "--standardize or ", summary.config.lr);
  }
  const std::string or_standardize = standardized ? "" : ", or --standardize";
  if (epochs.size() == 1) return note + fmt::format("; after one epoch: try more --epochs{}", or_standardize);
  if (last < epochs[epochs.size() - 2].train_loss * 0.999) {  // by more than a settled loss wobbles
    return note + fmt::format(
                      "; the train loss was still falling ({:.4f} to {:.4f}): try more --epochs or a "
                      "larger --lr{}",
                      epochs.front().train_loss, last, or_standardize);
  }
  return note + fmt::format("; the train loss settled at {:.4f}: {}", last, not_apart);
}

std::vector<std::string> redraw_run_pictures(const std::filesystem::path& run,
                                             const std::filesystem::path& out,
                                             const std::optional<DataSource>& data,
                                             const plot::GridChoice& grid, ThreadPool& pool) {
  const ModelFile model = load_model(run_model_file(run));
  ensure_folder(out);
  std::vector<std::string> written;
  std::error_code ec;
  if (std::filesystem::is_regular_file(run / "metrics.csv", ec)) {
    const std::vector<EpochMetrics> epochs = read_metrics_csv(run / "metrics.csv");
    if (!epochs.empty()) {
      int total = epochs.back().epoch;
      if (auto it = model.metadata.find("epochs"); it != model.metadata.end()) {
        total = std::max(total, std::atoi(it->second.c_str()));
      }
      plot::write_curves(out, epochs, total);
      written = {"curves.png", "curves.svg"};
    }
  }
  const Dataset test = load_split_for_model(model, data, "test").data;
  const Evaluation evaluation = evaluate(model.model, test, pool);
  const std::vector<std::string> pictures = plot::write_model_pictures(
      out, model.model, test, evaluation.predictions, model.class_names, grid, pool);
  written.insert(written.end(), pictures.begin(), pictures.end());
  return written;
}

}  // namespace softreg
