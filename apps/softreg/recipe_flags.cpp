// The training recipe's flags (see recipe_flags.hpp).
#include "recipe_flags.hpp"

#include <algorithm>
#include <string_view>
#include <vector>

#include "common.hpp"

namespace softreg::cli {

void check_epochs(long long epochs) {
  if (epochs < 1 || epochs > kMaxEpochs) {
    throw UsageError(fmt::format("--epochs must be between 1 and {}, got {}", kMaxEpochs, epochs));
  }
}

void check_validation_choice(const TrainConfig& config, const LoadedData& loaded) {
  if (loaded.data.validation && config.val_fraction > 0) {
    throw UsageError("--val-fraction does not apply: there is a validation set, " +
                     loaded.validation_file.string());
  }
  if (config.early_stop > 0 && config.val_fraction == 0 && !loaded.data.validation) {
    throw UsageError(
        "--early-stop needs a validation set (only it may choose the epoch): --val-fraction F, or one "
        "given with the data (an image folder's val/, an .npz's x_val and y_val, --val-csv, "
        "--val-features and --val-labels)");
  }
}

// A flag of another optimizer or schedule would change nothing: a usage error rather than a run the
// user takes for another (`--momentum 0.5` with the default optimizer trained plain SGD).
void check_flags_apply(const RecipeFlags& o) {
  const auto given = [&](std::string_view flag) {
    return std::find(o.given.begin(), o.given.end(), flag) != o.given.end();
  };
  if (o.optimizer == "lbfgs") {
    for (const char* flag : {"--lr", "--batch-size", "--schedule", "--warmup", "--lr-step", "--lr-gamma"}) {
      if (given(flag)) {
        throw UsageError(fmt::format(
            "{} does not apply to --optimizer lbfgs (one full-batch fit, its steps found by a line search)",
            flag));
      }
    }
  }
  struct Scope {
    std::vector<const char*> flags;
    bool applies;
    const char* to;
    std::string_view chosen;
    const char* hint = "";
  };
  const bool adam = o.optimizer == "adam" || o.optimizer == "adamw";
  const Scope scopes[] = {
      {{"--momentum"},
       o.optimizer == "momentum" || o.optimizer == "nesterov",
       "--optimizer momentum and nesterov",
       o.optimizer},
      {{"--beta1", "--beta2", "--eps"}, adam, "--optimizer adam and adamw", o.optimizer},
      {{"--weight-decay"},
       o.optimizer == "adamw",
       "--optimizer adamw",
       o.optimizer,
       " (a penalty in the loss is --l2)"},
      {{"--max-iter", "--tol", "--history-size"}, o.optimizer == "lbfgs", "--optimizer lbfgs", o.optimizer},
      {{"--lr-step", "--lr-gamma"}, o.schedule == "step", "--schedule step", o.schedule},
  };
  for (const Scope& scope : scopes) {
    for (const char* flag : scope.flags) {
      if (!scope.applies && given(flag))
        throw UsageError(fmt::format("{} applies to {}, not {}{}", flag, scope.to, scope.chosen, scope.hint));
    }
  }
}

TrainConfig recipe_config(const RecipeFlags& o) {
  check_threads(o.threads);
  if (o.val_fraction_given && !(o.val_fraction > 0 && o.val_fraction < 1))
    throw UsageError(fmt::format("--val-fraction must be in (0, 1), got {}", o.val_fraction));
  if (o.optimizer == "lbfgs" && o.epochs_given)
    throw UsageError("--epochs does not apply to --optimizer lbfgs, which runs to --tol or --max-iter");
  if (o.optimizer == "lbfgs" && o.early_stop > 0)
    throw UsageError("--early-stop does not apply to --optimizer lbfgs (one full-batch fit)");
  TrainConfig config;
  config.lr = o.lr;
  config.batch_size = narrowed<std::size_t>("--batch-size", o.batch_size);
  // The L-BFGS fit is recorded as the run's one epoch.
  config.epochs = o.optimizer == "lbfgs" ? 1 : narrowed<int>("--epochs", o.epochs);
  config.seed = o.seed;
  config.init_std = o.init_std;
  config.threads = static_cast<int>(o.threads);
  config.kernel = o.kernel == "naive" ? KernelChoice::kNaive : KernelChoice::kFast;
  config.optimizer = o.optimizer;
  config.momentum = o.momentum;
  config.beta1 = o.beta1;
  config.beta2 = o.beta2;
  config.eps = o.eps;
  config.weight_decay = o.weight_decay;
  config.l2 = o.l2;
  config.schedule = {o.schedule, o.warmup, narrowed<int>("--lr-step", o.lr_step), o.lr_gamma};
  config.val_fraction = o.val_fraction_given ? o.val_fraction : 0;
  config.early_stop = narrowed<int>("--early-stop", o.early_stop);
  config.max_iter = narrowed<int>("--max-iter", o.max_iter);
  config.tol = o.tol;
  config.history_size = narrowed<int>("--history-size", o.history_size);
  config.standardize = o.standardize;
  config.compute = o.compute;
  check_recipe_flags(config);
  check_flags_apply(o);
  return config;
}

void check_recipe_flags(const TrainConfig& config) {
  try {
    check_recipe(config);
  } catch (const Error& e) {
    throw UsageError(std::string("--") + e.what());
  }
}

RecipeOptions add_recipe_options(CLI::App& cmd_ref, RecipeFlags& flags) {
  CLI::App* cmd = &cmd_ref;
  RecipeOptions options;
  options.epochs =
      cmd->add_option("--epochs", flags.epochs, "Passes over the training set (in all, when resuming)")
          ->capture_default_str();
  options.recipe = {
      cmd->add_option("--batch-size", flags.batch_size,
                      "Examples per SGD step (the last batch may be smaller)")
          ->capture_default_str(),
      cmd->add_option("--lr", flags.lr, "Learning rate")->capture_default_str(),
      cmd->add_option("--seed", flags.seed, "Seed for the initial weights and the shuffling (>= 0)")
          // An unsigned parse would turn -1 into 18446744073709551615.
          ->check(CLI::Validator(
              [](std::string& text) {
                return text.find('-') == std::string::npos ? std::string() : "must be >= 0, got " + text;
              },
              "SEED"))
          ->capture_default_str(),
      cmd->add_option("--init-std", flags.init_std, "Standard deviation of the initial weights, in [0, 1]")
          ->capture_default_str(),
      cmd->add_option("--threads", flags.threads,
                      "Threads (default: all cores); the same results on any count (--kernel naive: on the "
                      "same count)")
          ->capture_default_str(),
      cmd->add_option("--optimizer", flags.optimizer,
                      "sgd (the seed's), momentum, nesterov, adam or adamw (as torch.optim's), or lbfgs "
                      "(full-batch L-BFGS to --tol, in place of epochs)")
          ->check(CLI::IsMember({"sgd", "momentum", "nesterov", "adam", "adamw", "lbfgs"}))
          ->capture_default_str(),
      cmd->add_option("--momentum", flags.momentum, "Momentum of momentum and nesterov, in [0, 1)")
          ->capture_default_str(),
      cmd->add_option("--beta1", flags.beta1, "Adam's first-moment decay, in [0, 1)")->capture_default_str(),
      cmd->add_option("--beta2", flags.beta2, "Adam's second-moment decay, in [0, 1)")->capture_default_str(),
      cmd->add_option("--eps", flags.eps, "Adam's epsilon, > 0")->capture_default_str(),
      cmd->add_option("--weight-decay", flags.weight_decay, "AdamW's decoupled weight decay of W, >= 0")
          ->capture_default_str(),
      cmd->add_option("--l2", flags.l2,
                      "L2 penalty: objective = mean cross-entropy + L2/2 * ||W||^2 (b not penalized); "
                      "scikit-learn's C is 1 / (L2 * training examples)")
          ->capture_default_str(),
      cmd->add_option("--schedule", flags.schedule,
                      "Learning rate over the run: constant, step (times --lr-gamma every --lr-step "
                      "epochs) or cosine (down to 0 at the end)")
          ->check(CLI::IsMember({"constant", "step", "cosine"}))
          ->capture_default_str(),
      cmd->add_option("--warmup", flags.warmup, "Epochs of linear warmup before the schedule")
          ->capture_default_str(),
      cmd->add_option("--lr-step", flags.lr_step, "step schedule: epochs between reductions")
          ->capture_default_str(),
      cmd->add_option("--lr-gamma", flags.lr_gamma, "step schedule: factor of each reduction, in (0, 1]")
          ->capture_default_str(),
      cmd->add_option(
          "--val-fraction", flags.val_fraction,
          "Hold out this part of the training set (seeded, stratified) for validation, in (0, 1)"),
      cmd->add_option("--max-iter", flags.max_iter, "lbfgs: most iterations")->capture_default_str(),
      cmd->add_option("--tol", flags.tol, "lbfgs: stop when the gradient's largest entry is at most this")
          ->capture_default_str(),
      cmd->add_option("--history-size", flags.history_size, "lbfgs: correction pairs kept")
          ->capture_default_str(),
      cmd->add_flag("--standardize", flags.standardize,
                    "Train on standardized inputs, (x - mean) / std of the training rows; the model file's "
                    "weights include the scaling"),
      cmd->add_option(
          "--early-stop", flags.early_stop,
          "With a validation set (--val-fraction, or one given with the data): stop after "
          "this many epochs without a better validation accuracy and keep the best epoch's model"),
  };
  options.compute =
      cmd->add_option("--compute", flags.compute,
                      "f32, or bf16: the fast path's products in bfloat16 (about twice as fast on CPUs with "
                      "AVX-512 BF16; plain SGD only)")
          ->check(CLI::IsMember({"f32", "bf16"}))
          ->capture_default_str();
  options.kernel =
      cmd->add_option("--kernel", flags.kernel, "fast (SIMD) or naive (the Eigen reference path)")
          ->check(CLI::IsMember({"fast", "naive"}))
          ->capture_default_str();
  return options;
}

void RecipeOptions::note_given(RecipeFlags& flags) const {
  flags.epochs_given = epochs->count() > 0;
  flags.kernel_given = kernel->count() > 0;
  flags.compute_given = compute->count() > 0;
  flags.val_fraction_given = std::any_of(recipe.begin(), recipe.end(), [](const CLI::Option* o) {
    return o->get_name() == "--val-fraction" && o->count() > 0;
  });
  flags.given.clear();
  for (const CLI::Option* o : recipe) {
    if (o->count() > 0) flags.given.push_back(o->get_name());
  }
}

}  // namespace softreg::cli
