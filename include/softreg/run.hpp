// A training run as one object, shared by every front end (the CLI, Python, the server): the recipe,
// the data, the trainer and the per-epoch history, and optionally a run folder that it keeps current.
// With a folder, every epoch (and every stop) leaves a checkpoint that resumes bit for bit
// (model.safetensors) and metrics.csv, optionally the live curves; finish() adds the acceptance
// checks, the pictures and summary.json. Without a folder nothing is written: training alone.
//
//   TrainingRun run(config, data, {.folder = "runs/a"});
//   if (run.train({.should_stop = stop}) == RunStatus::kStopped) { /* later: */ }
//   TrainingRun resumed(load_saved_run("runs/a"), data);   // continues bit for bit
//   const RunReport report = run.finish({});
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "softreg/atomic_file.hpp"
#include "softreg/dataset.hpp"
#include "softreg/io.hpp"
#include "softreg/lbfgs.hpp"
#include "softreg/metrics.hpp"
#include "softreg/model_io.hpp"
#include "softreg/plot.hpp"
#include "softreg/sources.hpp"
#include "softreg/train.hpp"

namespace softreg {

/// How a run is kept and reported.
struct RunOptions {
  /// The run folder (created if missing). None: the run writes no file.
  std::optional<std::filesystem::path> folder;
  /// Where the data came from: recorded in the checkpoint (a resumed run looks there) and summary.json.
  std::string data_folder;
  std::string data_source;  // source_to_json of where the data came from ("" when not known)
  /// Redraw curves.png and curves.svg in the folder with each refresh, so a viewer follows training.
  bool live_curves = true;
  /// The folder's refresh (model.safetensors, metrics.csv, best.safetensors, the live curves) after an
  /// epoch once this many seconds have passed since the last one (or since train() began); 0: after
  /// every epoch. Always after the last epoch, at a stop and at an early stop. At the seed's 12 ms an
  /// epoch, writing every epoch cost 7 % of a --no-plots run and doubled the run with its curves
  /// (BENCHMARKS.md); a killed run loses at most this long of training.
  double save_every_seconds = 0.5;
  /// Class names for the model file and the pictures; empty: default_class_names(K).
  std::vector<std::string> class_names;
  /// Seconds the front end spent loading the data (summary.json's seconds_load).
  double seconds_load = 0;
  /// What summary.json's seconds_total counts from; none: the construction of the TrainingRun.
  std::optional<std::chrono::steady_clock::time_point> started;
};

/// Hooks into train(); each may be empty. With validation (TrainConfig::val_fraction), the folder also
/// gets best.safetensors, the checkpoint of the best validation accuracy so far; with early stopping
/// (TrainConfig::early_stop) train() ends once that many epochs bring no better one, and the run's model
/// (and model.safetensors) goes back to the best epoch's.
struct RunCallbacks {
  /// After every batch: examples done in the epoch and the epoch's total.
  Trainer::BatchCallback on_batch;
  /// After every finished epoch, once the folder's refresh is done when one was due.
  std::function<void(const EpochMetrics&)> on_epoch;
  /// Asked after every batch but an epoch's last, and after every epoch; true stops the run there
  /// (with a checkpoint in the folder) and train() returns kStopped.
  Trainer::StopRequest should_stop;
  /// optimizer "lbfgs": after every iteration of the full-batch fit.
  std::function<void(const LbfgsIteration&)> on_iteration;
};

enum class RunStatus {
  kFinished,  // all the recipe's epochs are done
  kStopped,   // should_stop asked to stop first; train() again continues from there
};

/// A run folder read back to resume it: the recipe, the trainer state and the epochs already done.
struct SavedRun {
  std::filesystem::path folder;
  TrainConfig config;
  TrainerState state;
  std::vector<EpochMetrics> history;  // epochs_done rows of metrics.csv
  std::string data_folder;            // as recorded ("" when none was)
  std::string data_source;            // as recorded (source_to_json), "" in older checkpoints
  int image_height = 0;               // an image model's input size (0: a model of feature rows)
  int image_width = 0;
};

/// Reads folder/model.safetensors and folder/metrics.csv; an error names the file and what is wrong.
SavedRun load_saved_run(const std::filesystem::path& folder);

/// A run folder's model file, folder/model.safetensors; an Error naming the folder where there is none.
std::filesystem::path run_model_file(const std::filesystem::path& folder);
/// A model file, or a run folder's (run_model_file): what eval, predict and Python's load accept.
std::filesystem::path model_file_or_run_folder(const std::filesystem::path& path);

/// What finish() adds at the end.
struct FinishOptions {
  bool acceptance_checks = true;  // the seed's checks on the last epoch
  bool pictures = true;           // curves, prediction grid, confusion matrix, weights (folder only)
  plot::GridChoice grid;
};

struct RunReport {
  RunSummary summary;                 // as written to summary.json (with its note, chance_level_note)
  std::vector<std::string> pictures;  // the picture files drawn, by name
  std::vector<AcceptanceCheck> failed_checks;
};

class TrainingRun {
 public:
  /// A new run of `config` on `data`, which must outlive the run.
  TrainingRun(const TrainConfig& config, const TrainTestData& data, RunOptions options = {});
  /// Continues a saved run (saved.config.epochs may have been raised). Without options.folder it
  /// keeps writing into saved.folder; options.data_folder defaults to the recorded one.
  TrainingRun(const SavedRun& saved, const TrainTestData& data, RunOptions options = {});

  /// Trains epoch after epoch up to config().epochs, refreshing the folder as RunOptions::save_every_seconds
  /// says; see RunCallbacks.
  RunStatus train(const RunCallbacks& callbacks = {});

  /// After training: the acceptance checks, the pictures and summary.json (those two with a folder).
  RunReport finish(const FinishOptions& options = {});

  /// Writes model.safetensors and metrics.csv now (train() does with each refresh of the folder).
  void save_checkpoint() const;

  /// The model with what a reader needs (class names, image size) and the checkpoint metadata.
  ModelFile model_file() const;
  /// The same for a state of this run (a best epoch kept aside).
  ModelFile model_file_of(const TrainerState& state) const;

  const std::vector<EpochMetrics>& history() const { return history_; }
  const TrainConfig& config() const { return trainer_.config(); }
  const SoftmaxModel& model() const { return trainer_.model(); }
  TrainerState state() const { return trainer_.state(); }
  int epochs_done() const { return trainer_.epochs_done(); }
  /// The epochs of the checkpoint the folder holds: the last one this run wrote, or the one it resumed
  /// from in that folder; 0 when there is none (epochs are written every save_every_seconds, so a run
  /// that fails may be epochs ahead of its checkpoint).
  int epochs_saved() const { return epochs_saved_; }
  const std::optional<std::filesystem::path>& folder() const { return options_.folder; }
  const std::vector<std::string>& class_names() const { return options_.class_names; }
  Trainer& trainer() { return trainer_; }
  /// With validation: the epoch (1-based) of the best validation accuracy so far, 0 before the first.
  int best_epoch() const { return best_epoch_; }
  /// True when early stopping ended training; the run's model is then the best epoch's.
  bool stopped_early() const { return stopped_early_; }

 private:
  const TrainTestData& data_;
  RunOptions options_;
  // Held while the run lives: a second process training into the same folder stops with an error
  // instead of interleaving checkpoints with this one.
  std::unique_ptr<FolderLock> folder_lock_;
  Trainer trainer_;
  std::vector<EpochMetrics> history_;
  std::chrono::steady_clock::time_point started_;
  // optimizer "lbfgs": the full-batch fit in place of the epochs.
  RunStatus train_full_batch(const RunCallbacks& callbacks);

  // The folder's refresh after an epoch: best.safetensors when a better epoch is not yet saved, the live
  // curves, then the checkpoint.
  void refresh_folder();

  double seconds_train_ = 0;
  double seconds_checkpoints_ = 0;
  int checkpoints_written_ = 0;
  int epochs_saved_ = 0;
  std::chrono::steady_clock::time_point last_refresh_;
  bool best_unsaved_ = false;         // best_state_ is newer than best.safetensors
  std::size_t curves_drawn_for_ = 0;  // the epochs in the live curves last drawn
  std::optional<RunSummary::Lbfgs> lbfgs_;
  // The best validation accuracy so far: its epoch and the state to go back to when stopping early.
  int best_epoch_ = 0;
  double best_val_acc_ = -1;
  std::optional<TrainerState> best_state_;
  bool stopped_early_ = false;
};

/// A class as messages name it: "dog" in quotes, or "class 3" when there are no names.
std::string quoted_class_name(std::size_t label, const std::vector<std::string>& class_names);

/// A one-line note when the model a run keeps does no better on the test rows than always answering
/// their most common class (`test_per_class`: the test rows of each class), with what the epochs'
/// train losses suggest and the flags to try: losses that rose or ended above a fresh model's (ln K),
/// steps too large for the features; losses still falling, too few or too small steps; losses that
/// settled, features that may not tell the classes apart. Empty when the model does better, or
/// without test rows. `class_names` name the class (empty: its number).
std::string chance_level_note(const RunSummary& summary, const std::vector<std::int64_t>& test_per_class,
                              const std::vector<std::string>& class_names);

/// Redraws the pictures of the run folder `run` into `out` from its model.safetensors (on the test
/// split of `data`, by default the data the model records) and its metrics.csv when present. Returns
/// the names of the files written.
std::vector<std::string> redraw_run_pictures(const std::filesystem::path& run,
                                             const std::filesystem::path& out,
                                             const std::optional<DataSource>& data,
                                             const plot::GridChoice& grid, ThreadPool& pool);

}  // namespace softreg
