// The gradient and the update apart: the gradient kernel against the double-precision math, the fused
// SGD kernel against the gradient kernel followed by Sgd::step, and the trainer handing every batch's
// gradient to whatever Optimizer it is given, on the fast and the naive path.
#include <gtest/gtest.h>

#include "softreg/kernels.hpp"
#include "softreg/loss.hpp"
#include "softreg/optim.hpp"
#include "softreg/train.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

constexpr int K = kFastClasses;

// SGD with the same arithmetic as Sgd, but not of type Sgd: the trainer cannot fuse it, so it takes the
// general path (gradient kernel, then step()).
class UnfusedSgd final : public Optimizer {
 public:
  explicit UnfusedSgd(double lr) : lr_(lr) {}
  std::string name() const override { return "unfused-sgd"; }
  void step(SoftmaxModel& model, const WeightMatrix& dW, const BiasVector& db, std::size_t n) override {
    sgd_step(model, dW, db, lr_, n);
  }

 private:
  double lr_;
};

// Records what it is given and changes nothing.
class Recorder final : public Optimizer {
 public:
  std::string name() const override { return "recorder"; }
  void step(SoftmaxModel&, const WeightMatrix& dW, const BiasVector& db, std::size_t n) override {
    batch_sizes.push_back(n);
    db_sums.push_back(static_cast<double>(db.sum()));
    last_dW = dW;
  }
  std::vector<std::size_t> batch_sizes;
  std::vector<double> db_sums;
  WeightMatrix last_dW;
};

TEST(GradientKernel, MatchesTheDoublePrecisionGradientAndTheFusedStep) {
  for (const std::string& target : simd_targets_available()) {
    restrict_simd_targets(target);
    for (std::size_t side : {28u, 5u}) {  // D = 784, and D = 25 with vector tails
      const std::size_t n = 53, D = side * side;
      const Dataset data = test::random_dataset(n, side, side, K, /*seed=*/11);
      Rng rng(3);
      const SoftmaxModel model = SoftmaxModel::initialized(static_cast<int>(D), K, 0.05, rng);
      std::vector<const std::uint8_t*> pixels;
      for (std::size_t i = 0; i < n; ++i)
        pixels.push_back(data.image(i));
      std::vector<float> loss(n), dlogits(n * K);
      fast_forward_rows({pixels.data(), data.labels.data(), n, D, model.W.data(), model.b.data(), kPixelScale,
                         loss.data(), nullptr, dlogits.data()});

      // The gradient, in two input ranges as two threads compute it.
      WeightMatrix dW = WeightMatrix::Constant(model.W.rows(), model.W.cols(), -99.0f);
      const std::size_t split = D / 2 / 16 * 16;
      for (auto [d0, d1] : {std::pair<std::size_t, std::size_t>{0, split}, {split, D}})
        fast_gradient_columns({pixels.data(), dlogits.data(), n, D, d0, d1, kPixelScale, dW.data()});

      RowMatrix<double> X(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(D));
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t d = 0; d < D; ++d)
          X(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(d)) = data.image(i)[d] / 255.0;
      const LossAndGrad<double> ref =
          loss_and_grad(X, ColMatrix<double>(model.W.cast<double>()), Vector<double>(model.b.cast<double>()),
                        std::span<const std::uint8_t>(data.labels));
      // Float sums of n products of O(1) terms: absolute error well under 1e-4 for n = 53.
      EXPECT_LT((dW.cast<double>() - ref.dW).cwiseAbs().maxCoeff(), 1e-4) << target << " D=" << D;

      // The fused kernel = the gradient kernel followed by the SGD step, up to the rounding of the
      // separate multiply (one or two float ulps of W).
      SoftmaxModel fused = model, unfused = model;
      const double lr = 0.1;
      fast_update_columns({pixels.data(), dlogits.data(), n, D, 0, D,
                           static_cast<float>(lr / static_cast<double>(n)), kPixelScale, fused.W.data()});
      sgd_step(unfused, dW, BiasVector::Zero(K), lr, n);
      EXPECT_LT((fused.W - unfused.W).cwiseAbs().maxCoeff(), 2e-8f) << target << " D=" << D;
      EXPECT_NE(fused.W, model.W);
    }
  }
  restrict_simd_targets("");
}

// Ten classes a linear model can learn (each label brightens its own band), 8x8 images.
Dataset learnable(std::size_t n, std::uint32_t seed) {
  Dataset d = test::random_dataset(n, 8, 8, K, seed);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint8_t* img = d.pixels.mutable_data() + i * 64;
    for (std::size_t p = 0; p < 64; ++p)
      img[p] = static_cast<std::uint8_t>(img[p] / 4);
    for (std::size_t p = 6u * d.labels[i]; p < 6u * d.labels[i] + 6; ++p)
      img[p] = 230;
  }
  return d;
}

TrainConfig config_for(int threads, KernelChoice kernel) {
  TrainConfig c;
  c.batch_size = 64;  // 1000 = 15 * 64 + 40
  c.seed = 5;
  c.threads = threads;
  c.kernel = kernel;
  return c;
}

TEST(Trainer, FusedSgdIsChosenOnlyForSgdOnTheFastPath) {
  const Dataset train = learnable(1000, 1), test = learnable(100, 2);
  EXPECT_TRUE(Trainer(config_for(1, KernelChoice::kFast), train, test).uses_fused_sgd());
  EXPECT_FALSE(Trainer(config_for(1, KernelChoice::kNaive), train, test).uses_fused_sgd());
  Trainer general(config_for(1, KernelChoice::kFast), train, test, std::make_unique<UnfusedSgd>(0.1));
  EXPECT_TRUE(general.uses_fast_path());
  EXPECT_FALSE(general.uses_fused_sgd());
  EXPECT_EQ(general.optimizer().name(), "unfused-sgd");
  EXPECT_EQ(Trainer(config_for(1, KernelChoice::kFast), train, test).optimizer().name(), "sgd");
}

TEST(Trainer, FusedSgdEqualsTheGradientThenTheStep) {
  const Dataset train = learnable(1000, 3), test = learnable(200, 4);
  Trainer fused(config_for(2, KernelChoice::kFast), train, test);
  Trainer general(config_for(2, KernelChoice::kFast), train, test, std::make_unique<UnfusedSgd>(0.1));
  for (int epoch = 0; epoch < 3; ++epoch) {
    const EpochMetrics a = fused.run_epoch().value(), b = general.run_epoch().value();
    EXPECT_NEAR(a.train_loss, b.train_loss, 1e-6 * a.train_loss) << epoch;
    EXPECT_NEAR(a.test_loss, b.test_loss, 1e-6 * a.test_loss) << epoch;
  }
  // 705 steps, each differing by an ulp or so of rounding: far below the weights' scale (~0.1-1).
  EXPECT_LT((fused.model().W - general.model().W).cwiseAbs().maxCoeff(), 1e-5f);
  EXPECT_LT((fused.model().b - general.model().b).cwiseAbs().maxCoeff(), 1e-5f);
  EXPECT_GT(fused.model().W.cwiseAbs().maxCoeff(), 0.05f);  // it did learn
}

TEST(Trainer, NaivePathWithAnyOptimizerIsTheSeedsSgdBitForBit) {
  const Dataset train = learnable(1000, 5), test = learnable(100, 6);
  Trainer builtin(config_for(2, KernelChoice::kNaive), train, test);
  Trainer given(config_for(2, KernelChoice::kNaive), train, test, std::make_unique<UnfusedSgd>(0.1));
  builtin.run_epoch();
  given.run_epoch();
  EXPECT_EQ(builtin.model().W, given.model().W);
  EXPECT_EQ(builtin.model().b, given.model().b);
}

TEST(Trainer, GeneralPathDoesNotDependOnTheThreadCount) {
  const Dataset train = learnable(1000, 7), test = learnable(100, 8);
  std::vector<SoftmaxModel> models;
  for (int threads : {1, 2, 3}) {
    Trainer trainer(config_for(threads, KernelChoice::kFast), train, test, std::make_unique<UnfusedSgd>(0.1));
    trainer.run_epoch();
    models.push_back(trainer.model());
  }
  for (std::size_t i = 1; i < models.size(); ++i) {
    EXPECT_EQ(models[i].W, models[0].W) << i;
    EXPECT_EQ(models[i].b, models[0].b) << i;
  }
}

TEST(Trainer, EveryBatchGoesToTheOptimizer) {
  const Dataset train = learnable(1000, 9), test = learnable(100, 10);
  for (KernelChoice kernel : {KernelChoice::kFast, KernelChoice::kNaive}) {
    auto recorder = std::make_unique<Recorder>();
    Recorder& seen = *recorder;
    Trainer trainer(config_for(2, kernel), train, test, std::move(recorder));
    const SoftmaxModel before = trainer.model();
    trainer.run_epoch();
    ASSERT_EQ(seen.batch_sizes.size(), 16u);  // 15 batches of 64 and one of 40
    EXPECT_EQ(seen.batch_sizes.front(), 64u);
    EXPECT_EQ(seen.batch_sizes.back(), 40u);
    // db of the summed loss: each row's softmax - onehot sums to zero over the classes.
    for (double s : seen.db_sums)
      EXPECT_NEAR(s, 0.0, 1e-4);
    EXPECT_GT(seen.last_dW.cwiseAbs().maxCoeff(), 0.0f);
    // The optimizer changed nothing, so the weights are the initial ones: no hidden update anywhere.
    EXPECT_EQ(trainer.model().W, before.W);
    EXPECT_EQ(trainer.model().b, before.b);
  }
}

}  // namespace
}  // namespace softreg

namespace softreg {
namespace {

TEST(Trainer, ReportsTheTimeThreadsWaitAtBarriers) {
  const Dataset train = learnable(1000, 11), test = learnable(100, 12);
  for (int threads : {1, 2}) {
    for (KernelChoice kernel : {KernelChoice::kFast, KernelChoice::kNaive}) {
      Trainer trainer(config_for(threads, kernel), train, test);
      const EpochMetrics m = trainer.run_epoch().value();
      EXPECT_GE(m.barrier_wait_seconds, 0.0);
      EXPECT_LE(m.barrier_wait_seconds, m.train_seconds);
      // One thread never waits; the naive path has no barriers of its own.
      if (threads == 1 || kernel == KernelChoice::kNaive) {
        EXPECT_EQ(m.barrier_wait_seconds, 0.0);
      }
    }
  }
  // Two threads meet twice per batch: some waiting is always measured (clock reads alone take time).
  Trainer two(config_for(2, KernelChoice::kFast), train, test);
  EXPECT_GT(two.run_epoch()->barrier_wait_seconds, 0.0);
}

}  // namespace
}  // namespace softreg
