// --standardize: the statistics, the folded model and gradient against explicitly standardized data,
// training and L-BFGS on folded weights against training on standardized rows, and resuming.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "softreg/lbfgs.hpp"
#include "softreg/loss.hpp"
#include "softreg/model_io.hpp"
#include "softreg/run.hpp"
#include "softreg/standardize.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

// Learnable 8x8 bands, with input 0 constant (always 7) and input 1 constant 0 in every row.
Dataset with_constant_inputs(std::size_t n, std::uint32_t seed) {
  Dataset d = test::banded_dataset(n, 8, 10, 6, 4, 230, seed);
  std::uint8_t* px = d.pixels.mutable_data();
  for (std::size_t i = 0; i < n; ++i) {
    px[i * 64 + 0] = 7;
    px[i * 64 + 1] = 0;
  }
  return d;
}

// float32 features of `data` standardized with `s`: what the model sees with --standardize.
Dataset standardized_rows(const Dataset& data, const Standardization& s) {
  Dataset f = test::as_float_features(data);
  std::uint8_t* raw = f.pixels.mutable_data();
  for (std::size_t i = 0; i < f.count; ++i) {
    for (std::size_t d = 0; d < f.features(); ++d) {
      const float z = (data.value(i, d) - s.mean[d]) / s.std[d];
      std::memcpy(raw + (i * f.features() + d) * sizeof(float), &z, sizeof(float));
    }
  }
  return f;
}

TEST(Standardization, MeanAndDeviationOfTheGivenRowsWhateverTheThreads) {
  const Dataset data = with_constant_inputs(5'000, 1);
  std::vector<std::uint32_t> rows;
  for (std::uint32_t i = 0; i < 5'000; i += 2)
    rows.push_back(i);  // every other row
  ThreadPool one(1), three(3);
  const Standardization s = fit_standardization(data, rows, one);
  ASSERT_EQ(s.mean.size(), 64u);
  for (std::size_t d = 0; d < 64; ++d) {
    double sum = 0, squares = 0;
    for (std::uint32_t r : rows)
      sum += data.image(r)[d] / 255.0;
    const double mean = sum / static_cast<double>(rows.size());
    for (std::uint32_t r : rows)
      squares += (data.image(r)[d] / 255.0 - mean) * (data.image(r)[d] / 255.0 - mean);
    EXPECT_NEAR(s.mean[d], mean, 1e-7) << d;
    if (d >= 2) {
      EXPECT_NEAR(s.std[d], std::sqrt(squares / static_cast<double>(rows.size())), 1e-7) << d;
    }
  }
  EXPECT_FLOAT_EQ(s.mean[0], 7.0f / 255.0f);
  EXPECT_EQ(s.std[0], 1.0f);  // constant: only centered
  EXPECT_EQ(s.mean[1], 0.0f);
  EXPECT_EQ(s.std[1], 1.0f);
  const Standardization again = fit_standardization(data, rows, three);
  EXPECT_EQ(again.mean, s.mean);
  EXPECT_EQ(again.std, s.std);

  // float32 features far from zero (mean about 1e4, deviation about 0.1), as they are stored.
  Dataset offset = test::as_float_features(data);
  float* values = reinterpret_cast<float*>(offset.pixels.mutable_data());
  for (std::size_t i = 0; i < offset.count * 64; ++i)
    values[i] += 1e4f;
  const Standardization far = fit_standardization(offset, rows, three);
  for (std::size_t d = 2; d < 64; ++d) {
    double sum = 0, squares = 0;
    for (std::uint32_t r : rows)
      sum += offset.value(r, d);
    const double mean = sum / static_cast<double>(rows.size());
    for (std::uint32_t r : rows)
      squares += (offset.value(r, d) - mean) * (offset.value(r, d) - mean);
    EXPECT_NEAR(far.std[d], std::sqrt(squares / static_cast<double>(rows.size())), 1e-6 * far.std[d]) << d;
  }
}

TEST(Standardization, TheFoldedModelAndGradientEqualTheModelOnStandardizedRows) {
  const Dataset data = with_constant_inputs(600, 2);
  ThreadPool pool(2);
  const Standardization s = fit_standardization(data, {}, pool);
  const Dataset z = standardized_rows(data, s);
  Rng rng(3);
  const SoftmaxModel m = SoftmaxModel::initialized(64, 10, 0.3, rng);
  const SoftmaxModel folded = fold_standardization(m, s);
  // Logits, loss and gradient on standardized rows (double) against the folded model on raw rows.
  RowMatrix<double> X(600, 64), Z(600, 64);
  for (Eigen::Index i = 0; i < 600; ++i) {
    for (Eigen::Index d = 0; d < 64; ++d) {
      X(i, d) = data.value(static_cast<std::size_t>(i), static_cast<std::size_t>(d));
      Z(i, d) = z.value(static_cast<std::size_t>(i), static_cast<std::size_t>(d));
    }
  }
  const auto labels = std::span<const Label>(data.labels);
  const LossAndGrad<double> on_z =
      loss_and_grad(Z, ColMatrix<double>(m.W.cast<double>()), Vector<double>(m.b.cast<double>()), labels);
  const LossAndGrad<double> on_x = loss_and_grad(X, ColMatrix<double>(folded.W.cast<double>()),
                                                 Vector<double>(folded.b.cast<double>()), labels);
  EXPECT_NEAR(on_x.loss_sum, on_z.loss_sum, 1e-5 * on_z.loss_sum);
  EXPECT_EQ(on_x.correct, on_z.correct);
  WeightMatrix G = on_x.dW.cast<float>();
  standardize_gradient(G, on_x.db.cast<float>(), s);
  EXPECT_LT((G.cast<double>() - on_z.dW).cwiseAbs().maxCoeff(), 1e-3 * on_z.dW.cwiseAbs().maxCoeff());
  EXPECT_LT((on_x.db - on_z.db).cwiseAbs().maxCoeff(), 1e-4);
}

TrainConfig small_recipe() {
  TrainConfig c;
  c.batch_size = 50;
  c.epochs = 3;
  c.lr = 0.05;
  c.seed = 4;
  c.threads = 2;
  c.l2 = 1e-3;
  return c;
}

TEST(Standardization, TrainingWithTheFlagEqualsTrainingOnStandardizedRows) {
  const Dataset train = with_constant_inputs(900, 5), test = with_constant_inputs(200, 6);
  ThreadPool pool(2);
  const Standardization s = fit_standardization(train, {}, pool);
  const Dataset z_train = standardized_rows(train, s), z_test = standardized_rows(test, s);
  for (const char* optimizer : {"sgd", "adam"}) {
    for (KernelChoice kernel : {KernelChoice::kFast, KernelChoice::kNaive}) {
      TrainConfig flagged = small_recipe();
      flagged.optimizer = optimizer;
      flagged.kernel = kernel;
      flagged.standardize = true;
      TrainConfig plain = flagged;
      plain.standardize = false;
      Trainer a(flagged, train, test), b(plain, z_train, z_test);
      ASSERT_TRUE(a.standardization().has_value());
      EXPECT_FALSE(a.uses_fused_sgd());
      EpochMetrics ma, mb;
      for (int e = 0; e < 3; ++e) {
        ma = *a.run_epoch();
        mb = *b.run_epoch();
        EXPECT_NEAR(ma.train_loss, mb.train_loss, 1e-4) << optimizer << e;
        EXPECT_NEAR(ma.test_loss, mb.test_loss, 1e-4) << optimizer << e;
      }
      EXPECT_GT(ma.test_acc, 0.9) << optimizer;
      EXPECT_LT((a.parameters().W - b.model().W).cwiseAbs().maxCoeff(), 1e-3) << optimizer;
      // model() acts on raw rows: it is the folded parameters.
      EXPECT_EQ(a.model().W, fold_standardization(a.parameters(), *a.standardization()).W);
    }
  }
}

TEST(Standardization, FullBatchObjectiveOnFoldedWeightsEqualsItOnStandardizedRows) {
  const Dataset data = with_constant_inputs(3'000, 7);
  ThreadPool pool(2);
  const Standardization s = fit_standardization(data, {}, pool);
  const Dataset z = standardized_rows(data, s);
  Rng rng(8);
  const SoftmaxModel m = SoftmaxModel::initialized(64, 10, 0.3, rng);
  FullBatchObjective on_raw(data, {}, 0.01, pool, KernelChoice::kFast, s);
  FullBatchObjective on_z(z, {}, 0.01, pool);
  const FullBatchValue a = on_raw(m), b = on_z(m);
  EXPECT_NEAR(a.objective, b.objective, 1e-6 * b.objective);
  EXPECT_EQ(a.correct, b.correct);
  EXPECT_LT((a.dW - b.dW).cwiseAbs().maxCoeff(), 1e-5);
  EXPECT_LT((a.db - b.db).cwiseAbs().maxCoeff(), 1e-6);
  // And L-BFGS reaches the same optimum from both.
  SoftmaxModel ma = m, mb = m;
  const LbfgsResult ra = lbfgs_minimize(ma, on_raw, {.max_iter = 500, .tol = 1e-5});
  const LbfgsResult rb = lbfgs_minimize(mb, on_z, {.max_iter = 500, .tol = 1e-5});
  ASSERT_TRUE(ra.converged);
  ASSERT_TRUE(rb.converged);
  EXPECT_NEAR(ra.objective, rb.objective, 1e-6 * rb.objective);
}

TEST(Standardization, ModelFilesActOnRawInputsAndResumeBitForBit) {
  const TrainTestData data{with_constant_inputs(900, 9), with_constant_inputs(200, 10)};
  test::TempDir dir;
  TrainConfig config = small_recipe();
  config.standardize = true;
  config.optimizer = "momentum";
  TrainingRun straight(config, data, {.folder = dir / "straight", .data_folder = "synthetic"});
  ASSERT_EQ(straight.train(), RunStatus::kFinished);
  {
    int asked = 0;
    TrainingRun first(config, data, {.folder = dir / "stopped", .data_folder = "synthetic"});
    ASSERT_EQ(first.train({.on_batch = {}, .on_epoch = {}, .should_stop = [&] { return ++asked == 25; }}),
              RunStatus::kStopped);
  }
  const SavedRun saved = load_saved_run(dir / "stopped");
  EXPECT_TRUE(saved.config.standardize);
  TrainingRun resumed(saved, data);
  ASSERT_EQ(resumed.train(), RunStatus::kFinished);
  EXPECT_EQ(resumed.model().W, straight.model().W);
  EXPECT_EQ(resumed.model().b, straight.model().b);

  // The file's weight and bias are the folded model: evaluating them on raw rows gives the run's test
  // figures, with no knowledge of the standardization.
  const ModelFile file = load_model(dir / "straight" / "model.safetensors");
  EXPECT_EQ(file.model.W, straight.model().W);
  EXPECT_EQ(file.metadata.at("standardize"), "true");
  ASSERT_TRUE(file.extra_tensors.contains(kStandardizeMean));
  ASSERT_TRUE(file.extra_tensors.contains(kStandardizeStd));
  ASSERT_TRUE(file.extra_tensors.contains(kStandardizedWeight));
  Standardization s{file.extra_tensors.at(kStandardizeMean), file.extra_tensors.at(kStandardizeStd)};
  check_standardization(s, 64, "model");
  ThreadPool pool(1);
  const Evaluation e = evaluate(file.model, data.test, pool);
  EXPECT_DOUBLE_EQ(e.accuracy, straight.history().back().test_acc);
  EXPECT_DOUBLE_EQ(e.loss, straight.history().back().test_loss);
  const TrainerState state = trainer_state_from(file, "model");
  EXPECT_EQ(fold_standardization(state.model, s).W, file.model.W);
}

}  // namespace
}  // namespace softreg
