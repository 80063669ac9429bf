// The training recipe's flags, shared by `train` and `tune`: registered once, turned into a TrainConfig
// once. The ranges are the library's (check_recipe); here only what is about flags: their integer
// types, their combinations, and which of them were given.
#pragma once

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <limits>
#include <string>
#include <vector>

#include "softreg/error.hpp"
#include "softreg/parallel.hpp"
#include "softreg/sources.hpp"
#include "softreg/train.hpp"

namespace softreg::cli {

struct RecipeFlags {
  long long epochs = 10;
  long long batch_size = 256;
  double lr = 0.1;
  unsigned long long seed = 0;
  double init_std = 0.01;
  long long threads = hardware_threads();
  std::string kernel = "fast";
  std::string optimizer = "sgd";
  double momentum = 0.9;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
  double l2 = 0;
  std::string schedule = "constant";
  double warmup = 0;
  long long lr_step = 1;
  double lr_gamma = 0.1;
  double val_fraction = 0;
  long long early_stop = 0;
  long long max_iter = 100;
  double tol = 1e-4;
  long long history_size = 100;
  bool standardize = false;
  std::string compute = "f32";
  // Set after parsing by RecipeOptions::note_given.
  bool epochs_given = false;
  bool kernel_given = false;
  bool compute_given = false;
  bool val_fraction_given = false;
  std::vector<std::string> given;  // the recipe flags given, --epochs and --kernel aside
};

/// The registered options, to learn after parsing which were given.
struct RecipeOptions {
  CLI::Option* epochs = nullptr;
  CLI::Option* kernel = nullptr;
  CLI::Option* compute = nullptr;
  std::vector<CLI::Option*> recipe;
  void note_given(RecipeFlags& flags) const;
};

/// Registers --epochs, the recipe's flags and --kernel on `cmd`, with `flags` holding the defaults.
RecipeOptions add_recipe_options(CLI::App& cmd, RecipeFlags& flags);

void check_epochs(long long epochs);

/// A flag's integer in the recipe's narrower type, or a usage error naming the flag.
template <class T>
T narrowed(const char* flag, long long value) {
  if (value < static_cast<long long>(std::numeric_limits<T>::min()) ||
      static_cast<unsigned long long>(value) >
          static_cast<unsigned long long>(std::numeric_limits<T>::max())) {
    throw UsageError(fmt::format("{} is out of range, got {}", flag, value));
  }
  return static_cast<T>(value);
}

/// The recipe the flags give; a UsageError names the first bad flag.
TrainConfig recipe_config(const RecipeFlags& flags);
/// check_recipe, its complaint a UsageError naming the flag ("--lr must be > 0, got 0").
void check_recipe_flags(const TrainConfig& config);
/// Where the validation rows come from, once the data is loaded: --val-fraction or a validation set
/// given with the data, not both; --early-stop needs one of them.
void check_validation_choice(const TrainConfig& config, const LoadedData& loaded);

}  // namespace softreg::cli
