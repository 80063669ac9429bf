// The validation sweep over L2 penalties (and learning rates) with warm starts; see tune.hpp.
#include "softreg/tune.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>

#include "softreg/clock.hpp"
#include "softreg/error.hpp"
#include "softreg/lbfgs.hpp"
#include "softreg/metrics.hpp"
#include "softreg/standardize.hpp"

namespace softreg {
namespace {

// True when `a` beats `b` strictly (so ties keep the earlier trial: the larger penalty).
bool better(const TuneTrial& a, const TuneTrial& b, TuneCriterion criterion) {
  if (!a.scored()) return false;
  if (!b.scored()) return true;
  if (criterion == TuneCriterion::kLoss)
    return a.val_loss < b.val_loss || (a.val_loss == b.val_loss && a.val_acc > b.val_acc);
  return a.val_acc > b.val_acc || (a.val_acc == b.val_acc && a.val_loss < b.val_loss);
}

}  // namespace

std::vector<double> log_grid(double from, double to, int count) {
  if (!(from > 0) || !(to > 0) || !std::isfinite(from) || !std::isfinite(to) || count < 1)
    throw Error(
        fmt::format("a log grid needs two positive ends and a count >= 1, got {}:{}:{}", from, to, count));
  std::vector<double> grid;
  for (int i = 0; i < count; ++i) {
    const double t = count == 1 ? 0.0 : static_cast<double>(i) / (count - 1);
    grid.push_back(std::pow(10.0, std::log10(from) + t * (std::log10(to) - std::log10(from))));
  }
  return grid;
}

TrainConfig TuneResult::best_config(const TrainConfig& base) const {
  TrainConfig config = base;
  config.l2 = trials.at(best).l2;
  if (base.optimizer != "lbfgs") config.lr = trials.at(best).lr;
  config.val_fraction = 0;
  config.early_stop = 0;
  return config;
}

std::string TuneResult::edge_note() const {
  if (trials.empty()) return {};
  const TuneTrial& chosen = trials.at(best);
  std::vector<std::string> notes;
  // `value` of the winner against every trial's: the note for the lowest or highest of several.
  const auto at_edge = [&](auto value_of, const char* name, const char* what, const char* flag) {
    double low = value_of(trials.front()), high = low;
    for (const TuneTrial& t : trials) {
      low = std::min(low, value_of(t));
      high = std::max(high, value_of(t));
    }
    const double value = value_of(chosen);
    if (low == high) return;
    if (value == low && value > 0) {
      notes.push_back(
          fmt::format("the chosen {} {:g} is the smallest {} tried: smaller ones may score better; "
                      "widen {}",
                      name, value, what, flag));
    } else if (value == high) {
      notes.push_back(
          fmt::format("the chosen {} {:g} is the largest {} tried: larger ones may score better; "
                      "widen {}",
                      name, value, what, flag));
    }
  };
  at_edge([](const TuneTrial& t) { return t.l2; }, "l2", "penalty", "--grid");
  at_edge([](const TuneTrial& t) { return t.lr; }, "lr", "learning rate", "--lrs");
  return fmt::format("{}", fmt::join(notes, "; "));
}

TuneResult tune(const TuneOptions& options, const Dataset& train,
                const std::function<void(const TuneTrial&)>& on_trial,
                const std::function<bool()>& should_stop) {
  const auto start = std::chrono::steady_clock::now();
  if (options.lambdas.empty()) throw Error("tune needs at least one L2 penalty");
  for (double lambda : options.lambdas) {
    if (!(lambda >= 0) || !std::isfinite(lambda))
      throw Error(fmt::format("every L2 penalty must be finite and >= 0, got {}", lambda));
  }
  if (!options.validation && !(options.val_fraction > 0 && options.val_fraction < 1))
    throw Error(fmt::format("the validation fraction must be in (0, 1), got {}", options.val_fraction));
  std::vector<double> lambdas = options.lambdas;
  std::sort(lambdas.begin(), lambdas.end(), std::greater<>());
  lambdas.erase(std::unique(lambdas.begin(), lambdas.end()), lambdas.end());
  const bool full_batch = options.base.optimizer == "lbfgs";
  std::vector<double> rates = options.learning_rates;
  if (full_batch || rates.empty()) rates = {options.base.lr};

  TrainConfig config = options.base;
  config.val_fraction = options.validation ? 0 : options.val_fraction;
  config.early_stop = 0;
  config.l2 = lambdas.front();
  check_recipe(config);
  for (double lr : rates) {
    config.lr = lr;
    check_recipe(config);
  }

  // An empty test set: the trials are scored on validation rows only.
  Dataset no_test;
  no_test.height = train.height;
  no_test.width = train.width;
  no_test.num_classes = train.num_classes;
  no_test.kind = train.kind;
  no_test.element = train.element;

  TuneResult result;
  bool stopped = false;
  const auto record = [&](TuneTrial trial, const SoftmaxModel& parameters) {
    result.trials.push_back(trial);
    if (result.trials.size() == 1 || better(trial, result.trials[result.best], options.criterion)) {
      result.best = result.trials.size() - 1;
      result.best_parameters = parameters;
    }
    if (on_trial) on_trial(trial);
    if (should_stop && should_stop()) stopped = true;
  };

  if (full_batch) {
    // One trainer provides the split, the standardization, the threads and the starting weights.
    Trainer split(config, train, no_test, options.validation);
    result.train_rows = split.train_count();
    result.val_rows = split.validation()->count;
    SoftmaxModel parameters = split.parameters();
    SoftmaxModel folded;
    for (double lambda : lambdas) {
      const auto trial_start = std::chrono::steady_clock::now();
      FullBatchObjective objective(train, split.train_rows(), lambda, split.pool(), config.kernel,
                                   split.standardization());
      const LbfgsResult r =
          lbfgs_minimize(parameters, objective, {config.max_iter, config.tol, config.history_size});
      if (split.standardization()) fold_standardization(parameters, *split.standardization(), folded);
      const Evaluation val = evaluate(split.standardization() ? folded : parameters, *split.validation(),
                                      split.pool(), config.kernel);
      record({lambda, 0.0, val.accuracy, val.loss, r.mean_loss, r.iterations, seconds_since(trial_start),
              r.converged ? "converged" : r.stop_reason},
             parameters);
      if (stopped) break;
    }
  } else {
    for (double lr : rates) {
      std::optional<SoftmaxModel> previous;  // the last good solution on this learning rate's path
      for (double lambda : lambdas) {
        const auto trial_start = std::chrono::steady_clock::now();
        config.lr = lr;
        config.l2 = lambda;
        Trainer trainer(config, train, no_test, options.validation);
        result.train_rows = trainer.train_count();
        result.val_rows = trainer.validation()->count;
        if (previous) trainer.warm_start(*previous);
        TuneTrial trial{lambda, lr, 0, 0, 0, 0, 0, "trained"};
        try {
          EpochMetrics last;
          for (int e = 0; e < config.epochs; ++e)
            last = *trainer.run_epoch();
          trial.val_acc = last.val_acc;
          trial.val_loss = last.val_loss;
          trial.train_loss = last.train_loss;
          trial.steps = config.epochs;
          previous = trainer.parameters();
        } catch (const TrainingDiverged& e) {
          trial.status = "diverged";
          trial.val_acc = std::numeric_limits<double>::quiet_NaN();
          trial.val_loss = std::numeric_limits<double>::quiet_NaN();
          trial.train_loss = std::numeric_limits<double>::quiet_NaN();
          trial.steps = e.epoch;
        }
        trial.seconds = seconds_since(trial_start);
        record(trial, trainer.parameters());
        if (stopped) break;
      }
      if (stopped) break;
    }
  }
  if (!result.trials[result.best].scored()) throw Error("every trial diverged: try smaller learning rates");
  result.seconds = seconds_since(start);
  return result;
}

}  // namespace softreg
