// Choosing the L2 penalty (and, for the minibatch optimizers, the learning rate) on a validation split,
// as scikit-learn's LogisticRegressionCV does with one fold: a seeded, stratified part of the training
// set is held out, every setting trains on the rest and is scored on it, and the test set is never
// looked at. Along the regularization path each fit starts from the previous one's solution (from the
// largest penalty down), which is what makes a sweep cost little more than its hardest fit.
//
//   TuneResult r = tune({.base = config, .lambdas = log_grid(1e-7, 1e-1, 13)}, data.train);
//   TrainConfig best = r.best_config(config);   // then refit on all training rows (TrainingRun)
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "softreg/dataset.hpp"
#include "softreg/model.hpp"
#include "softreg/train.hpp"

namespace softreg {

/// What picks the winner on the validation rows. The mean cross-entropy (deviance, cv.glmnet's default)
/// is a proper score and far less noisy than accuracy on a few thousand rows: on Fashion-MNIST's 6,000
/// validation rows a difference of 0.4% in accuracy is 25 rows, within chance. Accuracy is
/// LogisticRegressionCV's default scoring. Ties go to the larger penalty (the trial that ran first).
enum class TuneCriterion { kLoss, kAccuracy };

struct TuneOptions {
  /// The recipe every trial starts from: optimizer, epochs (minibatch) or max_iter/tol (lbfgs), seed,
  /// threads, standardize, ... Its l2 and (minibatch) lr are what the trials set.
  TrainConfig base;
  /// The L2 penalties to try (any order: they are swept from the largest down).
  std::vector<double> lambdas;
  /// Minibatch optimizers: the learning rates to try, each with its own path over `lambdas`; empty:
  /// base.lr alone. Ignored for lbfgs.
  std::vector<double> learning_rates;
  /// The part of the training set held out to score the trials, in (0, 1).
  double val_fraction = 0.1;
  TuneCriterion criterion = TuneCriterion::kLoss;
  /// A validation set given with the data (it must outlive the call): the trials are scored on it, the
  /// training set is trained on whole, and val_fraction does not apply.
  const Dataset* validation = nullptr;
};

struct TuneTrial {
  double l2 = 0;
  double lr = 0;  // minibatch optimizers
  double val_acc = 0;
  double val_loss = 0;
  double train_loss = 0;  // the objective's cross-entropy on the training rows
  int steps = 0;          // L-BFGS iterations, or epochs
  double seconds = 0;
  /// "converged" or "max_iter" (lbfgs), "trained" (minibatch), "diverged" (the lr was too large: the
  /// trial has no score and the path goes on from the last good solution).
  std::string status;
  bool scored() const { return status != "diverged"; }
};

struct TuneResult {
  std::vector<TuneTrial> trials;  // in the order they ran
  std::size_t best = 0;           // the trial the criterion prefers
  SoftmaxModel best_parameters;   // its parameters (standardized ones with base.standardize)
  std::size_t train_rows = 0;     // rows the trials trained on
  std::size_t val_rows = 0;       // rows they were scored on
  double seconds = 0;

  /// `base` with the winner's l2 (and lr), no validation split: the recipe to refit on all rows.
  TrainConfig best_config(const TrainConfig& base) const;
  /// Where the winner is at an edge of what was tried, a note saying that a value past it may score better
  /// ("the chosen l2 0.001 is the smallest penalty tried: smaller ones may score better; widen --grid");
  /// "" otherwise. A penalty of 0 has nothing below it, and a value tried alone has no edge to speak of.
  std::string edge_note() const;
};

/// `count` values from `from` to `to`, evenly spaced in log scale (from > 0, to > 0, count >= 1).
std::vector<double> log_grid(double from, double to, int count);

/// Runs every trial on `train` (split into training and validation rows by base.seed). `on_trial` is
/// called after each; `should_stop` returning true ends the sweep after the current trial (the result
/// then holds the trials done). Throws Error when no trial could be scored.
TuneResult tune(const TuneOptions& options, const Dataset& train,
                const std::function<void(const TuneTrial&)>& on_trial = {},
                const std::function<bool()>& should_stop = {});

}  // namespace softreg
