// Files a run leaves behind: the run folder, metrics.csv and summary.json, all written atomically
// (temp file in the same folder, then rename) so a reader never sees half a file.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "softreg/atomic_file.hpp"
#include "softreg/metrics.hpp"
#include "softreg/train.hpp"

namespace softreg {

/// Creates runs_root/<UTC timestamp> (with a -2, -3... suffix if taken) and points runs_root/latest at it.
std::filesystem::path create_run_folder(const std::filesystem::path& runs_root);

/// Creates `folder` (and parents) if needed; an error if it exists and is not a folder.
void ensure_folder(const std::filesystem::path& folder);

/// A new run may go into `folder` unless it holds one already (its model.safetensors): a UsageError then,
/// pointing to --resume, as a new run there would replace that model and leave the other run's files
/// (best.safetensors, pictures) beside the new ones.
void check_folder_for_new_run(const std::filesystem::path& folder);

/// metrics.csv: header epoch,train_loss,train_acc,test_acc,test_loss,seconds (then val_loss,val_acc with
/// validation); numbers printed so they read back to the same double.
std::string metrics_csv(const std::vector<EpochMetrics>& epochs);

/// Reads a metrics.csv written by metrics_csv (for resuming a run); errors name the file and line.
std::vector<EpochMetrics> read_metrics_csv(const std::filesystem::path& path);

struct RunSummary {
  TrainConfig config;
  std::vector<EpochMetrics> epochs;
  std::vector<AcceptanceCheck> checks;  // empty when skipped
  std::string data_folder;
  std::string run_folder;
  std::size_t train_examples = 0;
  std::size_t test_examples = 0;
  /// The validation rows scored each epoch (held out by val_fraction, or given with the data); 0: none.
  std::size_t validation_examples = 0;
  /// A full-batch L-BFGS run's figures (optimizer "lbfgs").
  struct Lbfgs {
    int iterations = 0;
    int evaluations = 0;
    double objective = 0;
    double grad_inf_norm = 0;
    std::string stop_reason;
    int history = 0;  // correction pairs kept (history_size, or fewer for a very large model)
  };
  std::optional<Lbfgs> lbfgs;
  int best_epoch = 0;          // with validation: the epoch of the best validation accuracy (1-based)
  bool stopped_early = false;  // early stopping ended the run before its last epoch
  double seconds_load = 0;
  double seconds_train = 0;
  double seconds_checkpoints = 0;  // of seconds_train: the folder's refreshes (checkpoints and curves)
  int checkpoints = 0;             // how many refreshes of the folder train() made
  double seconds_total = 0;
  /// What a user should know about the result (chance_level_note in run.hpp); empty: nothing.
  std::string note;

  /// The epoch whose model the run keeps: the best one after early stopping, else the last.
  const EpochMetrics& kept_epoch() const;
};

/// The recipe as summary.json records it (a JSON object: lr, batch_size, epochs, optimizer, ...).
std::string recipe_json(const TrainConfig& config);

/// summary.json: the recipe, seed, threads, final metrics and timings.
std::string summary_json(const RunSummary& summary);

}  // namespace softreg
