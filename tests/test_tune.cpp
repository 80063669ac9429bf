// softreg::tune: the grid, the sweep's order and warm starts, the winner by either criterion, diverged
// trials, stopping, and the refit recipe.
#include <gtest/gtest.h>

#include <cmath>

#include "softreg/error.hpp"
#include "softreg/metrics.hpp"
#include "softreg/train.hpp"
#include "softreg/tune.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

// Learnable but noisy bands: the penalty matters.
Dataset noisy_bands(std::size_t n, std::uint32_t seed) {
  return test::banded_dataset(n, /*side=*/8, /*classes=*/10, /*band=*/6, /*dim=*/1, /*bright=*/200, seed);
}

TEST(Tune, LogGridIsEvenlySpacedInLogScale) {
  const std::vector<double> g = log_grid(1e-7, 1e-1, 13);
  ASSERT_EQ(g.size(), 13u);
  EXPECT_DOUBLE_EQ(g.front(), 1e-7);
  EXPECT_NEAR(g.back(), 1e-1, 1e-15);
  for (std::size_t i = 1; i < g.size(); ++i)
    EXPECT_NEAR(g[i] / g[i - 1], std::sqrt(10.0), 1e-9);
  EXPECT_EQ(log_grid(0.5, 0.5, 1), std::vector<double>{0.5});
  test::expect_error([] { log_grid(0, 1, 3); }, "two positive ends");
}

// A winner at an edge of the grid is said to be there: a value past it may score better.
TEST(Tune, AWinnerAtAnEdgeOfTheGridIsNoted) {
  const auto result = [](std::vector<std::pair<double, double>> l2_lr, std::size_t best) {
    TuneResult r;
    for (const auto& [l2, lr] : l2_lr)
      r.trials.push_back({.l2 = l2, .lr = lr, .status = "trained"});
    r.best = best;
    return r;
  };
  EXPECT_EQ(result({{1e-1, 0.1}, {1e-2, 0.1}, {1e-3, 0.1}}, 1).edge_note(), "");  // inside
  EXPECT_EQ(result({{1e-1, 0.1}, {1e-2, 0.1}, {1e-3, 0.1}}, 2).edge_note(),
            "the chosen l2 0.001 is the smallest penalty tried: smaller ones may score better; widen --grid");
  EXPECT_EQ(result({{1e-1, 0.1}, {1e-2, 0.1}, {1e-3, 0.1}}, 0).edge_note(),
            "the chosen l2 0.1 is the largest penalty tried: larger ones may score better; widen --grid");
  EXPECT_EQ(result({{1e-1, 0.1}, {0, 0.1}}, 1).edge_note(), "");  // nothing is below no penalty
  EXPECT_EQ(result({{1e-3, 0.1}}, 0).edge_note(), "");            // a value tried alone
  EXPECT_EQ(
      result({{1e-2, 0.1}, {1e-3, 0.1}, {1e-2, 1.0}, {1e-3, 1.0}, {1e-2, 3.0}, {1e-3, 3.0}}, 3).edge_note(),
      "the chosen l2 0.001 is the smallest penalty tried: smaller ones may score better; widen --grid");
  EXPECT_EQ(result({{1e-2, 0.1}, {1e-2, 1.0}, {1e-2, 3.0}}, 2).edge_note(),
            "the chosen lr 3 is the largest learning rate tried: larger ones may score better; widen --lrs");
}

TrainConfig lbfgs_recipe() {
  TrainConfig c;
  c.optimizer = "lbfgs";
  c.epochs = 1;
  c.seed = 3;
  c.threads = 2;
  c.max_iter = 200;
  c.tol = 1e-5;
  return c;
}

TEST(Tune, SweepsFromTheLargestPenaltyWithWarmStartsAndPicksByValidationLoss) {
  const Dataset train = noisy_bands(2'000, 1);
  const TuneResult r = tune({.base = lbfgs_recipe(), .lambdas = {1e-4, 1e-1, 1e-2, 1e-3}}, train);
  ASSERT_EQ(r.trials.size(), 4u);
  EXPECT_EQ(r.trials[0].l2, 1e-1);  // largest first
  EXPECT_EQ(r.trials[3].l2, 1e-4);
  EXPECT_EQ(r.val_rows, 200u);
  EXPECT_EQ(r.train_rows, 1'800u);
  std::size_t by_loss = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(r.trials[i].status, "converged") << i;
    EXPECT_GT(r.trials[i].val_acc, 0.1) << i;
    if (r.trials[i].val_loss < r.trials[by_loss].val_loss) by_loss = i;
  }
  EXPECT_EQ(r.best, by_loss);
  // The winner's parameters are those its trial ended with: a fresh fit at its penalty from them takes
  // no iteration.
  const TrainConfig refit = r.best_config(lbfgs_recipe());
  EXPECT_EQ(refit.l2, r.trials[r.best].l2);
  EXPECT_EQ(refit.val_fraction, 0);

  // A warm start saves iterations: the last trial alone, from the seed's weights, needs more.
  const TuneResult cold = tune({.base = lbfgs_recipe(), .lambdas = {1e-4}}, train);
  EXPECT_GT(cold.trials[0].steps, r.trials[3].steps);
  EXPECT_NEAR(cold.trials[0].val_loss, r.trials[3].val_loss, 1e-3);

  // By accuracy, the winner has the best validation accuracy.
  const TuneResult acc = tune({.base = lbfgs_recipe(),
                               .lambdas = {1e-4, 1e-1, 1e-2, 1e-3},
                               .learning_rates = {},
                               .val_fraction = 0.1,
                               .criterion = TuneCriterion::kAccuracy},
                              train);
  for (const TuneTrial& t : acc.trials)
    EXPECT_LE(t.val_acc, acc.trials[acc.best].val_acc);
}

TEST(Tune, AGivenValidationSetScoresTheTrialsOnTheWholeTrainingSet) {
  const Dataset train = noisy_bands(1'000, 4), validation = noisy_bands(300, 5);
  TuneOptions options{.base = lbfgs_recipe(), .lambdas = {1e-1, 1e-3}};
  options.validation = &validation;
  const TuneResult r = tune(options, train);
  EXPECT_EQ(r.train_rows, 1'000U);
  EXPECT_EQ(r.val_rows, 300U);
  // Each trial's score is its model's on that set: the winner's, evaluated afresh, is the same.
  Trainer split(lbfgs_recipe(), train, train);
  const Evaluation best = evaluate(r.best_parameters, validation, split.pool());
  EXPECT_NEAR(r.trials[r.best].val_loss, best.loss, 1e-9);
  EXPECT_DOUBLE_EQ(r.trials[r.best].val_acc, best.accuracy);
  // The minibatch path too.
  TuneOptions sgd;
  sgd.lambdas = {1e-3};
  sgd.base.epochs = 2;
  sgd.base.threads = 2;
  sgd.validation = &validation;
  EXPECT_EQ(tune(sgd, train).val_rows, 300U);
}

TEST(Tune, MinibatchOptimizersSweepTheLearningRateAndSurviveDivergence) {
  const Dataset train = noisy_bands(1'500, 2);
  TrainConfig base;
  base.optimizer = "sgd";
  base.epochs = 2;
  base.batch_size = 50;
  base.seed = 4;
  base.threads = 2;
  std::vector<TuneTrial> seen;
  const TuneResult r = tune({.base = base, .lambdas = {1e-3, 1e-2}, .learning_rates = {0.5, 1e6}}, train,
                            [&](const TuneTrial& t) { seen.push_back(t); });
  ASSERT_EQ(r.trials.size(), 4u);
  EXPECT_EQ(seen.size(), 4u);
  EXPECT_EQ(r.trials[0].lr, 0.5);
  EXPECT_EQ(r.trials[0].l2, 1e-2);
  EXPECT_EQ(r.trials[0].status, "trained");
  EXPECT_EQ(r.trials[0].steps, 2);
  EXPECT_EQ(r.trials[2].status, "diverged");
  EXPECT_FALSE(r.trials[2].scored());
  EXPECT_EQ(r.trials[r.best].lr, 0.5);
  EXPECT_GT(r.trials[r.best].val_acc, 0.5);

  // Every trial diverging is an error, not a winner.
  test::expect_error([&] { tune({.base = base, .lambdas = {1e-3}, .learning_rates = {1e6}}, train); },
                     "every trial diverged");
}

TEST(Tune, StopsWhenAskedAndChecksItsOptions) {
  const Dataset train = noisy_bands(1'000, 3);
  int asked = 0;
  const TuneResult r =
      tune({.base = lbfgs_recipe(), .lambdas = {1e-1, 1e-2, 1e-3}}, train, {}, [&] { return ++asked == 2; });
  EXPECT_EQ(r.trials.size(), 2u);
  test::expect_error([&] { tune({.base = lbfgs_recipe(), .lambdas = {}}, train); }, "at least one");
  test::expect_error([&] { tune({.base = lbfgs_recipe(), .lambdas = {-1}}, train); }, "finite and >= 0");
  test::expect_error(
      [&] {
        tune({.base = lbfgs_recipe(), .lambdas = {1e-3}, .learning_rates = {}, .val_fraction = 1}, train);
      },
      "validation fraction");
}

}  // namespace
}  // namespace softreg
