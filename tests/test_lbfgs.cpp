// Full-batch L-BFGS: the objective's gradient against central differences and against the naive path,
// convergence with a monotone objective, and the optimum checked in double precision.
#include <gtest/gtest.h>

#include "softreg/lbfgs.hpp"
#include "softreg/loss.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

// Ten classes that overlap (faint bands in noise), so the optimum is not at infinity even without L2.
Dataset overlapping(std::size_t n, std::uint32_t seed) {
  Dataset d = test::random_dataset(n, 8, 8, 10, seed);
  std::uint8_t* px = d.pixels.mutable_data();
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t p = 6u * d.labels[i]; p < 6u * d.labels[i] + 6; ++p)
      px[i * 64 + p] = static_cast<std::uint8_t>(std::min(255, px[i * 64 + p] + 60));
  return d;
}

// f in double precision (loss.hpp's reference math) at `m` over all rows of `data`.
LossAndGrad<double> reference(const Dataset& data, const SoftmaxModel& m) {
  RowMatrix<double> X(static_cast<Eigen::Index>(data.count), static_cast<Eigen::Index>(data.features()));
  for (std::size_t i = 0; i < data.count; ++i)
    for (std::size_t j = 0; j < data.features(); ++j)
      X(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = data.image(i)[j] / 255.0;
  return loss_and_grad(X, ColMatrix<double>(m.W.cast<double>()), Vector<double>(m.b.cast<double>()),
                       std::span<const Label>(data.labels));
}

TEST(FullBatchObjective, GradientMatchesDoublePrecisionAndBothPathsAgree) {
  const Dataset data = overlapping(700, 1);
  Rng rng(2);
  const SoftmaxModel m = SoftmaxModel::initialized(64, 10, 0.3, rng);
  const double l2 = 0.05;
  ThreadPool pool(2);
  FullBatchObjective fast(data, {}, l2, pool, KernelChoice::kFast);
  FullBatchObjective naive(data, {}, l2, pool, KernelChoice::kNaive);
  const FullBatchValue a = fast(m), b = naive(m);
  const LossAndGrad<double> ref = reference(data, m);
  const double n = 700;
  const double f_ref = ref.loss_sum / n + 0.5 * l2 * m.W.cast<double>().squaredNorm();
  EXPECT_NEAR(a.objective, f_ref, 1e-6 * f_ref);
  EXPECT_NEAR(b.objective, f_ref, 1e-6 * f_ref);
  const ColMatrix<double> dW_ref = ref.dW / n + l2 * m.W.cast<double>();
  EXPECT_LT((a.dW.cast<double>() - dW_ref).cwiseAbs().maxCoeff(), 2e-6);
  EXPECT_LT((b.dW.cast<double>() - dW_ref).cwiseAbs().maxCoeff(), 2e-6);
  EXPECT_LT((a.db.cast<double>() - ref.db / n).cwiseAbs().maxCoeff(), 2e-6);
  EXPECT_EQ(a.correct, ref.correct);
  // Central differences of the double-precision objective confirm the analytic gradient with L2.
  for (Eigen::Index i : {0, 17, 100, 639}) {
    SoftmaxModel plus = m, minus = m;
    const float h = 1e-2f;
    plus.W.data()[i] += h;
    minus.W.data()[i] -= h;
    const double fp = reference(data, plus).loss_sum / n + 0.5 * l2 * plus.W.cast<double>().squaredNorm();
    const double fm = reference(data, minus).loss_sum / n + 0.5 * l2 * minus.W.cast<double>().squaredNorm();
    EXPECT_NEAR((fp - fm) / (2 * h), dW_ref.data()[i], 1e-5) << i;
  }
}

TEST(FullBatchObjective, SameValueBitForBitWhateverTheThreadCount) {
  // Enough rows for several groups of row blocks (and a partial last block), which the threads share.
  const Dataset data = overlapping(5'000, 5);
  Rng rng(6);
  const SoftmaxModel m = SoftmaxModel::initialized(64, 10, 0.3, rng);
  ThreadPool one(1), two(2), three(3);
  FullBatchObjective f1(data, {}, 0.05, one), f2(data, {}, 0.05, two), f3(data, {}, 0.05, three);
  const FullBatchValue v1 = f1(m), v2 = f2(m), v3 = f3(m);
  EXPECT_EQ(v1.dW, v2.dW);
  EXPECT_EQ(v1.dW, v3.dW);
  EXPECT_EQ(v1.db, v3.db);
  EXPECT_EQ(v1.objective, v3.objective);
  EXPECT_EQ(v1.correct, v3.correct);
  // Evaluating again with the buffers reused gives the same value.
  EXPECT_EQ(f3(m).dW, v3.dW);
}

TEST(Lbfgs, ConvergesWithAMonotoneObjectiveToATrueStationaryPoint) {
  const Dataset data = overlapping(1500, 3);
  Rng rng(4);
  for (KernelChoice kernel : {KernelChoice::kFast, KernelChoice::kNaive}) {
    SoftmaxModel m = SoftmaxModel::initialized(64, 10, 0.01, rng);
    ThreadPool pool(2);
    FullBatchObjective f(data, {}, /*l2=*/0.01, pool, kernel);
    const double start = f(m).objective;
    std::vector<LbfgsIteration> seen;
    const LbfgsResult r = lbfgs_minimize(m, f, {.max_iter = 200, .tol = 1e-5, .memory = 10},
                                         [&](const LbfgsIteration& it) { seen.push_back(it); });
    EXPECT_TRUE(r.converged) << r.stop_reason;
    EXPECT_EQ(r.stop_reason, "converged");
    ASSERT_EQ(static_cast<int>(seen.size()), r.iterations);
    EXPECT_LT(r.objective, start);
    // The Wolfe conditions make it decrease (up to the float noise the approximate condition allows).
    for (std::size_t i = 1; i < seen.size(); ++i)
      EXPECT_LE(seen[i].objective, seen[i - 1].objective * (1 + 1e-8)) << i;
    EXPECT_LE(r.grad_inf_norm, 1e-5);
    // The figures it returns are those of the model it returns (no need to evaluate it again).
    const FullBatchValue at = f(m);
    EXPECT_EQ(r.objective, at.objective);
    EXPECT_EQ(r.mean_loss, at.mean_loss);
    EXPECT_EQ(r.correct, at.correct);
    // Checked in double precision: the gradient there is small too (float sums over 1500 rows differ
    // from it by about 1e-6).
    const LossAndGrad<double> ref = reference(data, m);
    const ColMatrix<double> g = ref.dW / 1500.0 + 0.01 * m.W.cast<double>();
    EXPECT_LT(g.cwiseAbs().maxCoeff(), 1e-5 + 2e-6);
    EXPECT_LT((ref.db / 1500.0).cwiseAbs().maxCoeff(), 1e-5 + 2e-6);
  }
}

TEST(Lbfgs, StopsWhenAskedAndAtMaxIter) {
  const Dataset data = overlapping(500, 5);
  Rng rng(6);
  SoftmaxModel m = SoftmaxModel::initialized(64, 10, 0.01, rng);
  ThreadPool pool(1);
  FullBatchObjective f(data, {}, 0.01, pool);
  SoftmaxModel copy = m;
  const LbfgsResult capped = lbfgs_minimize(copy, f, {.max_iter = 3, .tol = 1e-12, .memory = 5});
  EXPECT_EQ(capped.iterations, 3);
  EXPECT_EQ(capped.stop_reason, "max_iter");
  EXPECT_FALSE(capped.converged);
  int calls = 0;
  const LbfgsResult stopped = lbfgs_minimize(m, f, {}, {}, [&] { return ++calls == 2; });
  EXPECT_EQ(stopped.iterations, 2);
  EXPECT_EQ(stopped.stop_reason, "stopped");
  EXPECT_NEAR(f(m).objective, stopped.objective, 1e-12);
}

TEST(Lbfgs, KeepsItsHistoryWithinTheMemoryBound) {
  Rng rng(7);
  {
    const Dataset data = overlapping(300, 8);
    SoftmaxModel m = SoftmaxModel::initialized(64, 10, 0.01, rng);
    ThreadPool pool(1);
    FullBatchObjective f(data, {}, 0.01, pool);
    EXPECT_EQ(lbfgs_minimize(m, f, {.max_iter = 1, .memory = 100}).memory, 100);
  }
  // 2,000 inputs x 100 classes: 200,100 parameters, 3.2 MB a pair, so 256 MiB hold 83 pairs.
  const Dataset wide = test::random_dataset(40, 40, 50, 100, 9);
  SoftmaxModel m = SoftmaxModel::initialized(2'000, 100, 0.01, rng);
  ThreadPool pool(2);
  FullBatchObjective f(wide, {}, 0.01, pool);
  const LbfgsResult r = lbfgs_minimize(m, f, {.max_iter = 1, .memory = 100});
  EXPECT_EQ(r.memory, static_cast<int>(kMaxLbfgsHistoryBytes / (16 * 200'100)));
  EXPECT_EQ(r.memory, 83);
}

}  // namespace
}  // namespace softreg
